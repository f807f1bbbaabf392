#!/usr/bin/env bash
# A PostgreSQL primary with N streaming replicas on local ports, in a folder of
# its own: for tests, benchmarks and local development of the replica tier.
#
#   scripts/pg-cluster.sh start [DIR] [REPLICAS] [BASE_PORT]   # prints the URLs
#   scripts/pg-cluster.sh stop  [DIR]                          # stops and removes
#   scripts/pg-cluster.sh node  DIR NAME start|stop            # one node (primary, replica1, ...)
#
# Uses the PostgreSQL binaries on the machine (installing Debian's package when
# missing). PostgreSQL refuses to run as root, so the servers run as `postgres`.
set -euo pipefail

command_name=${1:-}
dir=${2:-/tmp/coop-pg-cluster}
replicas=${3:-2}
base_port=${4:-55432}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg-cluster: PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || {
      echo "pg-cluster: could not install the Debian package 'postgresql' (initdb, pg_ctl, pg_basebackup)" >&2
      exit 1
    }
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  echo "$bin"
}

node_ctl() { # DIR NAME start|stop
  local bin; bin=$(find_bin)
  case "$3" in
    start) as_postgres "$bin/pg_ctl" -D "$1/$2" -l "$1/$2.log" -w -t 60 start >/dev/null ;;
    stop) as_postgres "$bin/pg_ctl" -D "$1/$2" -m immediate -w stop >/dev/null 2>&1 || true ;;
    *) echo "pg-cluster: node action must be start or stop" >&2; exit 2 ;;
  esac
}

start() {
  local bin; bin=$(find_bin)
  if [ -e "$dir" ]; then
    echo "pg-cluster: $dir exists; stop it first (scripts/pg-cluster.sh stop $dir)" >&2
    exit 1
  fi
  mkdir -p "$dir" && chown postgres: "$dir" 2>/dev/null || true
  as_postgres "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
  cat >>"$dir/primary/postgresql.conf" <<CONF
port = $base_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 10
wal_keep_size = '512MB'
hot_standby = on
hot_standby_feedback = on
max_connections = 200
# Test and benchmark clusters trade crash safety for speed.
fsync = off
full_page_writes = off
CONF
  node_ctl "$dir" primary start
  local urls=()
  for i in $(seq 1 "$replicas"); do
    local port=$((base_port + i))
    as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$base_port" -U postgres \
      -D "$dir/replica$i" -R -X stream -c fast >/dev/null
    cat >>"$dir/replica$i/postgresql.conf" <<CONF
port = $port
CONF
    node_ctl "$dir" "replica$i" start
    urls+=("postgres://postgres@127.0.0.1:$port/postgres")
  done
  echo "PRIMARY_URL=postgres://postgres@127.0.0.1:$base_port/postgres"
  (IFS=,; echo "REPLICA_URLS=${urls[*]}")
}

stop() {
  [ -d "$dir" ] || return 0
  for node in "$dir"/replica* "$dir/primary"; do
    [ -d "$node" ] && node_ctl "$dir" "$(basename "$node")" stop
  done
  rm -rf "$dir"
}

case "$command_name" in
  start) start ;;
  stop) stop ;;
  node) node_ctl "$dir" "$3" "$4" ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
