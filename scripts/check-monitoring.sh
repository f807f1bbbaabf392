#!/usr/bin/env bash
# Checks deploy/prometheus and deploy/grafana against a real Coop:
#
#   1. promtool check config / check rules / test rules (deploy/prometheus/tests);
#   2. starts, on 127.0.0.1 only, a PostgreSQL primary with one streaming
#      replica (scripts/pg-cluster.sh, a fresh database on it), a private Redis,
#      and a two-instance `coop cluster` with one worker;
#   3. drives traffic through nginx, and the faults whose metrics only appear
#      when they happen: a failing SMTP relay (dead jobs, an open breaker), a
#      table lock that exhausts the pools (waits, timeouts, 5xx), and a Redis
#      outage (cache bypasses);
#   4. starts Prometheus with deploy/prometheus/prometheus.yml (intervals
#      shortened, targets from `coop cluster status --json`), waits for two
#      scrapes of every target, then evaluates every dashboard panel and
#      variable query and every recording and alerting rule through
#      /api/v1/query. It fails, naming the query, on any query that errors
#      or names a metric Prometheus has not seen;
#   5. proves the check can fail (an unknown metric, a syntax error, a broken
#      dashboard copy), then stops everything it started and drops the database.
#
# It expects a built coop binary: COOP_BIN, else target/release/coop, else
# target/debug/coop (it builds nothing). As root it installs the Debian
# packages it lacks (prometheus, nginx-light, redis-server, postgresql-client)
# without letting them start services. COOP_METRICS_TOKEN, when set, is passed
# to the cluster and sent by Prometheus as a bearer token; otherwise a random
# one is, so the check keeps working once /metrics asks for it.
# CHECK_MONITORING_KEEP=1 keeps the work folder (logs, Prometheus data).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$SECONDS

prom_src=deploy/prometheus
dashboard=deploy/grafana/coop-dashboard.json
helper=scripts/check_monitoring.py

say() { printf '\n== %s\n' "$*"; }
die() { echo "check-monitoring: $*" >&2; exit 1; }

# --- the coop binary ---------------------------------------------------------
if [ -z "${COOP_BIN:-}" ]; then
  for candidate in target/release/coop target/debug/coop; do
    if [ -x "$candidate" ]; then COOP_BIN=$candidate; break; fi
  done
fi
if [ -z "${COOP_BIN:-}" ] || [ ! -x "$COOP_BIN" ]; then
  die "no coop binary found (looked at ${COOP_BIN:-target/release/coop and target/debug/coop}).
This script runs a built binary and builds nothing: run 'cargo build' (or
'cargo build --release') first, or set COOP_BIN=/path/to/coop."
fi
COOP_BIN=$(cd "$(dirname "$COOP_BIN")" && pwd)/$(basename "$COOP_BIN")

# --- tools, installed from Debian when missing -------------------------------
policy_saved=""
policy_written=0
restore_policy() {
  if [ "$policy_written" = 1 ]; then
    if [ -n "$policy_saved" ]; then mv -f "$policy_saved" /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi
    policy_written=0
  fi
}
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing: $*. Install these Debian packages (apt-get install $*) or run this script as root."
  fi
  echo "installing Debian packages: $*"
  # Keep the packages from starting system services (a Prometheus on :9090,
  # an nginx on :80, a Redis on :6379) while they install.
  if [ -e /usr/sbin/policy-rc.d ]; then
    policy_saved=$(mktemp)
    cp -p /usr/sbin/policy-rc.d "$policy_saved"
  fi
  policy_written=1
  printf '#!/bin/sh\n# written by check-monitoring.sh while it installs packages\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >&2 || rc=$?
  restore_policy
  [ "$rc" = 0 ] || die "could not install: $*"
}

trap restore_policy EXIT # until the full cleanup below takes over
command -v python3 >/dev/null || die "python3 is needed (Debian package python3)"
packages=()
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || packages+=(prometheus)
{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || packages+=(nginx-light)
{ command -v redis-server >/dev/null && command -v redis-cli >/dev/null; } || packages+=(redis-server)
command -v psql >/dev/null || packages+=(postgresql-client)
command -v curl >/dev/null || packages+=(curl)
[ ${#packages[@]} = 0 ] || apt_install "${packages[@]}"
echo "coop: $COOP_BIN ($("$COOP_BIN" --version))"
echo "$(prometheus --version 2>&1 | head -n1)"

# --- cleanup of everything started below -------------------------------------
work=$(mktemp -d /tmp/coop-check-monitoring.XXXXXX)
chmod 755 "$work" # the PostgreSQL servers run as `postgres` under it
prom_pid="" cluster_pid="" redis_pid="" pg_dir="" pg_port="" members=""
dbname=coop_monitoring_check
stop_pid() { # PID SECONDS: TERM, wait, then KILL
  local pid=$1 wait=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "process $pid did not stop in ${wait}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  restore_policy
  say "stopping what the check started"
  [ -n "$prom_pid" ] && stop_pid "$prom_pid" 10
  if [ -n "$cluster_pid" ]; then
    stop_pid "$cluster_pid" 45
    # Members the cluster could not stop itself (it was killed): by their pids.
    for pid in $members; do stop_pid "$pid" 5; done
  fi
  [ -n "$redis_pid" ] && stop_pid "$redis_pid" 10
  if [ -n "$pg_port" ]; then
    psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
      -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" && echo "dropped database $dbname"
  fi
  [ -n "$pg_dir" ] && "$root/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null
  if [ "${CHECK_MONITORING_KEEP:-0}" = 1 ]; then
    echo "kept $work (logs: $work/*.log, $work/cluster/logs)"
  else
    rm -rf "$work"
  fi
  echo "check-monitoring: took $((SECONDS - started)) s"
  if [ "$rc" = 0 ]; then echo "check-monitoring: PASSED"; else echo "check-monitoring: FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # [N consecutive]: a free loopback port (the first of N free ones)
  python3 - "${1:-1}" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break
else:
    sys.exit("no free port")
PY
}

# --- 1. static checks ----------------------------------------------------------
say "promtool check rules / test rules"
promtool check rules "$prom_src/recording-rules.yml" "$prom_src/alert-rules.yml"
promtool test rules "$prom_src"/tests/*.yml

prom_dir="$work/prometheus"
mkdir -p "$prom_dir/targets"
cp "$prom_src/prometheus.yml" "$prom_src/recording-rules.yml" "$prom_src/alert-rules.yml" "$prom_dir/"
token=${COOP_METRICS_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}
(umask 077 && printf '%s\n' "$token" >"$prom_dir/coop-metrics-token")
say "promtool check config (the example prometheus.yml, as shipped)"
echo '[]' >"$prom_dir/targets/coop-serve.json"
echo '[]' >"$prom_dir/targets/coop-worker.json"
promtool check config "$prom_dir/prometheus.yml"

# --- 2. PostgreSQL with a replica, Redis, coop cluster ---------------------------
say "starting PostgreSQL (primary + 1 streaming replica), Redis and coop cluster on 127.0.0.1"
pg_port=$(free_port 2)
pg_dir="$work/pg"
"$root/scripts/pg-cluster.sh" start "$pg_dir" 1 "$pg_port" >"$work/pg-urls.txt" ||
  { pg_dir=""; pg_port=""; die "scripts/pg-cluster.sh could not start PostgreSQL"; }
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE $dbname"
primary_url="postgres://postgres@127.0.0.1:$pg_port/$dbname"
replica_url="postgres://postgres@127.0.0.1:$((pg_port + 1))/$dbname"
echo "primary $primary_url, replica $replica_url"

redis_port=$(free_port)
start_redis() {
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$work" --logfile "$work/redis.log" &
  redis_pid=$!
  for _ in $(seq 50); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  die "Redis did not start on 127.0.0.1:$redis_port (see $work/redis.log)"
}
start_redis
echo "redis redis://127.0.0.1:$redis_port"

listen_port=$(free_port)
control_port=$(free_port)
smtp_port=$(free_port) # nothing listens there: every email fails
control="127.0.0.1:$control_port"
# Only the settings below reach the cluster (it passes every COOP_* variable
# on to its instances and workers), plus COOP_NGINX if the caller set it.
cluster_env=(env)
for var in $(compgen -e | grep '^COOP_' || true); do
  case $var in COOP_NGINX | COOP_METRICS_TOKEN) ;; *) cluster_env+=(-u "$var") ;; esac
done
cluster_env+=(
  COOP_DATABASE_URL="$primary_url"
  COOP_REPLICA_URLS="$replica_url"
  COOP_REDIS_URL="redis://127.0.0.1:$redis_port"
  COOP_METRICS_TOKEN="$token"
  COOP_CLUSTER_LISTEN="127.0.0.1:$listen_port"
  COOP_CLUSTER_CONTROL="$control"
  COOP_CLUSTER_DIR="$work/cluster"
  COOP_CLUSTER_INSTANCES=2 COOP_INSTANCES_MIN=2 COOP_INSTANCES_MAX=2
  COOP_CLUSTER_WORKERS=1 COOP_WORKERS_MIN=1 COOP_WORKERS_MAX=1
  COOP_CLUSTER_NGINX_WORKERS=1
  COOP_SCALE_INTERVAL=2s
  # Faults whose metrics exist only once they happen:
  COOP_SMTP_URL="smtp://127.0.0.1:$smtp_port" # emails fail: dead jobs, breaker opens
  COOP_JOB_MAX_ATTEMPTS=1
  COOP_BREAKER_MIN_CALLS=2
  COOP_BREAKER_OPEN_FOR=1s
  COOP_DB_POOL_SIZE=4 # a locked table fills the pools: waits, timeouts
  COOP_DB_ACQUIRE_TIMEOUT=500ms
)
"${cluster_env[@]}" "$COOP_BIN" cluster >"$work/cluster.log" 2>&1 &
cluster_pid=$!

status_json="$work/status.json"
cluster_ready=0
for _ in $(seq 240); do
  kill -0 "$cluster_pid" 2>/dev/null || { tail -n 30 "$work/cluster.log" >&2; cluster_pid=""; die "coop cluster exited"; }
  if "$COOP_BIN" cluster status --control "$control" --state-dir "$work/cluster" --json >"$status_json" 2>/dev/null &&
    python3 - "$status_json" <<'PY'; then
import json, sys
s = json.load(open(sys.argv[1]))
ok = lambda ms, n: len([m for m in ms if m["state"] == "running" and m["healthy"]]) >= n
sys.exit(0 if ok(s["instances"], 2) and ok(s["workers"], 1) else 1)
PY
    cluster_ready=1
    break
  fi
  sleep 0.25
done
[ "$cluster_ready" = 1 ] || { tail -n 30 "$work/cluster.log" >&2; die "coop cluster did not get 2 instances and 1 worker running in 60 s"; }
members=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(" ".join(str(m["pid"]) for m in s["instances"] + s["workers"]) + " " + str(s.get("nginx_pid") or ""))' "$status_json")
python3 - "$status_json" "$prom_dir/targets" <<'PY'
import json, sys
s, out = json.load(open(sys.argv[1])), sys.argv[2]
for role, key in (("serve", "instances"), ("worker", "workers")):
    addrs = [m["address"] for m in s[key]]
    json.dump([{"targets": addrs}], open(f"{out}/coop-{role}.json", "w"))
    print(f"coop {role}: {', '.join(addrs)}")
PY
echo "nginx on 127.0.0.1:$listen_port, control API on $control"

# --- 3. Prometheus -----------------------------------------------------------
say "starting Prometheus with deploy/prometheus/prometheus.yml (2 s intervals, these targets)"
prom_port=$(free_port)
prom="http://127.0.0.1:$prom_port"
cfg="$prom_dir/prometheus.yml"
for edit in 's/^  scrape_interval: 15s$/  scrape_interval: 2s/' \
  's/^  scrape_timeout: 10s$/  scrape_timeout: 2s/' \
  's/^  evaluation_interval: 15s$/  evaluation_interval: 2s/' \
  "s/\"127\\.0\\.0\\.1:8090\"/\"$control\"/"; do
  before=$(md5sum <"$cfg")
  sed -i "$edit" "$cfg"
  [ "$before" != "$(md5sum <"$cfg")" ] ||
    die "deploy/prometheus/prometheus.yml no longer has what '$edit' rewrites for the check; update check-monitoring.sh with it"
done
promtool check config "$cfg" >/dev/null
prometheus --config.file="$cfg" --storage.tsdb.path="$prom_dir/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 100); do
  curl -fs "$prom/-/ready" >/dev/null 2>&1 && break
  kill -0 "$prom_pid" 2>/dev/null || { cat "$work/prometheus.log" >&2; prom_pid=""; die "Prometheus exited"; }
  sleep 0.2
done
curl -fs "$prom/-/ready" >/dev/null || die "Prometheus did not become ready on $prom"
echo "Prometheus on $prom"

# --- 4. traffic and faults ---------------------------------------------------------
base="http://127.0.0.1:$listen_port"
state="$work/traffic.json"
say "traffic through nginx"
python3 "$helper" traffic setup --base "$base" --state "$state"

say "fault: a table lock on the primary for 2 s during a burst (pool waits and timeouts)"
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d "$dbname" \
  -c "BEGIN; LOCK TABLE families IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;" >/dev/null &
lock_pid=$!
sleep 0.3
python3 "$helper" traffic burst --base "$base" --state "$state" --requests 120 --concurrency 40
wait "$lock_pid"
# nginx counts an instance's 503 as a failure (max_fails=3, fail_timeout=2s with
# several instances): after the burst it may answer 503 itself for a moment.
# Wait that out.
back=0
for _ in $(seq 40); do
  if curl -fs "$base/health" >/dev/null 2>&1; then back=1; break; fi
  sleep 0.25
done
[ "$back" = 1 ] || die "nginx did not route requests again within 10 s of the burst"

say "fault: Redis stopped for a few seconds (cache bypasses, lost subscription)"
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=""
sleep 1.5 # the instances notice within a ping (500 ms)
python3 "$helper" traffic reads --base "$base" --state "$state" --rounds 2
start_redis
echo "Redis is back"
# Until every instance is subscribed again.
for _ in $(seq 60); do
  resubscribed=1
  for addr in $(python3 -c 'import json,sys; print(" ".join(m["address"] for m in json.load(open(sys.argv[1]))["instances"]))' "$status_json"); do
    curl -fs -H "Authorization: Bearer $token" "http://$addr/metrics" | grep -qx 'cache_subscribed 1' || resubscribed=0
  done
  [ "$resubscribed" = 1 ] && break
  sleep 0.25
done
[ "$resubscribed" = 1 ] && echo "every instance is subscribed to invalidations again" ||
  echo "warning: not every instance re-subscribed within 15 s" >&2
python3 "$helper" traffic reads --base "$base" --state "$state" --rounds 1

# --- 5. the check ----------------------------------------------------------------
say "waiting for two scrapes of every target"
python3 "$helper" wait-scrapes --prometheus "$prom" --scrapes 2 --timeout 60

say "evaluating every dashboard query and every rule through Prometheus"
python3 "$helper" check --prometheus "$prom" --dashboard "$dashboard" \
  --rule-file "$prom_src/recording-rules.yml" --rule-file "$prom_src/alert-rules.yml"

say "self-test: the check must fail on an unknown metric, a syntax error and a broken dashboard"
python3 "$helper" selftest --prometheus "$prom" --dashboard "$dashboard" --scratch "$work/broken-dashboard.json"

say "alerts firing or pending in this run (the faults above; for information)"
python3 "$helper" alerts --prometheus "$prom"
