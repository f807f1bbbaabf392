#!/usr/bin/env bash
# Coop with many users at once (issue 19): N users, each with its own session
# and its own keep-alive connection, each sending about one request a second
# (exponential think time, mean THINK_MS), open loop: every request has an
# intended send time drawn in advance, and its latency runs from that time, so
# queueing (in the kernel's accept queue, in Coop, in the load generator)
# always shows. The mix: family home page, class catalog, the family's record
# and enrollments, now and then an enrollment or a drop (WRITE_SHARE), and 1 in
# 100 users a coordinator listing the families (bench/loadgen/src/users.rs).
# Everything runs on 127.0.0.1. Results: the "Many users at once" section of
# bench/RESULTS.md (the other sections are kept).
#
#   bench/users.sh
#
# One run:
#   1. build `cargo build --release --features test-knobs --bin coop` and
#      `cargo build --release -p coop-loadgen` (unless SKIP_BUILD=1);
#   2. raise the open-file limit (ulimit -n) and check the local port range:
#      10,000 users are 10,000 sockets in the load generator and as many in
#      the server (and in nginx, where it is in front);
#   3. seed twice through the HTTP API with `coop-loadgen seed` (as
#      bench/enrollment-day.sh does: every family accepts its own invite, so
#      each has a real session): once into an embedded (SQLite) data dir, once
#      into PostgreSQL; every run starts from a copy;
#   4. idle connections: one `coop serve` (embedded), its RSS with no client,
#      with IDLE_CONNECTIONS connections open that never sent a byte, and with
#      as many that made one request each (`coop-loadgen idle`); once as built
#      and once with COOP_KEEP_IDLE_BUFFERS=on (hyper's buffers kept on idle
#      connections, as before issue 19);
#   5. ROUNDS rounds, each: for every USERS_LIST count, nginx serving a static
#      file (the ceiling: the same requests, no sessions, no writes), the
#      embedded tier (`coop serve`, SQLite), PostgreSQL + Redis with one
#      instance (`coop serve` + `coop worker`), and INSTANCES instances behind
#      nginx (`coop cluster`); plus, with BACKLOG_COMPARE=1, the embedded tier
#      at the largest count with COOP_LISTEN_BACKLOG=1024 (tokio's default, what
#      Coop used before issue 19). Per run: the latency figures, errors, the
#      most connections open at once, the server's peak RSS, CPU by process
#      group, the kernel's listen-queue overflows (nstat) and the deepest
#      accept queue seen (ss, sampled every 0.2 s);
#   6. medians of the rounds go into bench/RESULTS.md.
#
# Environment (all optional):
#   USERS_LIST="1000 10000"  DURATION=20 (seconds of arrivals)  THINK_MS=1000
#   WRITE_SHARE=0.05  ROUNDS=1  INSTANCES=3  SETUPS="nginx embedded pg1 pgN"
#   BACKLOG_COMPARE=1  IDLE_CONNECTIONS=10000  LOADGEN_THREADS=1
#   CLASSES=250 CAPACITY=30   (seeded; one child per family)
#   SKIP_BUILD=1  SKIP_IDLE=1  CARGO_TARGET_DIR  BENCH_RESULTS=FILE
#   REUSE_SEED=1   keep the seeded templates and start from them next time
#   QUIET_PCT=25 QUIET_WAIT=300   wait for a quiet machine before each run
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_NICE=N   run Coop, nginx, Redis and the load generator under `nice -n N`
#
# Needs root (nginx; `ulimit -n` above the hard limit; installs nginx-light if
# missing), python3, curl, psql, redis-server, redis-cli, nstat and ss
# (iproute2). Exits non-zero if a step fails or a run had failed requests.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/users"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
QUIET_WAIT="${QUIET_WAIT:-300}"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

USERS_LIST="${USERS_LIST:-1000 10000}"
DURATION="${DURATION:-20}"
THINK_MS="${THINK_MS:-1000}"
WRITE_SHARE="${WRITE_SHARE:-0.05}"
ROUNDS="${ROUNDS:-1}"
INSTANCES="${INSTANCES:-3}"
SETUPS="${SETUPS:-nginx embedded pg1 pg$INSTANCES}"
BACKLOG_COMPARE="${BACKLOG_COMPARE:-1}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
CLASSES="${CLASSES:-250}"
CAPACITY="${CAPACITY:-30}"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
LOADGEN="$TARGET_DIR/release/coop-loadgen"
NICE=()
[[ -n "${BENCH_NICE:-}" ]] && NICE=(nice -n "$BENCH_NICE")
MAX_USERS=$(tr ' ' '\n' <<<"$USERS_LIST" | sort -n | tail -n 1)
# Every family's seeded session, plus one coordinator per 100 users.
FAMILIES=$((MAX_USERS - MAX_USERS / 100))
# As in bench/enrollment-day.sh: every user signs in from 127.0.0.1, which the
# per-address sign-in limits would refuse.
export COOP_RATE_LIMITS=off
# Room for every user, the probes and the instances' own connections: at the
# default of 10,000, the 10,000th user would wait in the backlog.
export COOP_MAX_CONNECTIONS=16384
# nginx (static and `coop cluster`): one worker must hold every user.
export NGINX_WORKER_CONNECTIONS=16384

# ---------------------------------------------------------------- cleanup ----
trap_cleanup

# ---------------------------------------------------------------- limits ----
# File descriptors: the load generator holds one socket per user, the server
# (or nginx) as many again. Raised here, inherited by everything started below.
raise_limits() {
    local need=$((MAX_USERS * 2 + 4096)) lo hi
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    NOFILE=$(ulimit -n)
    ((NOFILE >= MAX_USERS + 2048)) \
        || die "ulimit -n is $NOFILE; $MAX_USERS users need at least $((MAX_USERS + 2048)) (run as root, or raise the hard limit)"
    ((NOFILE >= need)) || log "WARNING: ulimit -n $NOFILE is under $need: enough for one side per process"
    # Client ports: one per user towards each address it connects to.
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    if ((hi - lo + 1 < MAX_USERS + 2048)); then
        sysctl -qw net.ipv4.ip_local_port_range="15000 64000" \
            || die "net.ipv4.ip_local_port_range ($lo-$hi) is too narrow for $MAX_USERS users and cannot be widened"
        read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    fi
    PORT_RANGE="$lo-$hi"
    SOMAXCONN=$(cat /proc/sys/net/core/somaxconn)
    SYN_BACKLOG=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog)
    SYNCOOKIES=$(cat /proc/sys/net/ipv4/tcp_syncookies)
}

# listen_drops: "OVERFLOWS DROPS" — the kernel's counters of connections
# refused because an accept queue was full (the whole network namespace).
listen_drops() {
    nstat -az TcpExtListenOverflows TcpExtListenDrops 2>/dev/null \
        | awk '$1 == "TcpExtListenOverflows" {o = $2} $1 == "TcpExtListenDrops" {d = $2} END {printf "%d %d\n", o, d}'
}

# watch_accept_queue PORT FILE: until killed, the deepest accept queue of the
# socket listening on PORT (ss's Recv-Q; Send-Q is its backlog), every 0.2 s.
watch_accept_queue() {
    local port=$1 file=$2 max=0 backlog=0 q b
    while :; do
        read -r q b < <(ss -ltnH "sport = :$port" 2>/dev/null | awk 'NR == 1 {print $2, $3}') || true
        if [[ -n "${q:-}" ]]; then
            ((q > max)) && max=$q
            backlog=$b
        fi
        echo "$max $backlog" >"$file"
        sleep 0.2
    done
}

# rss_kb PID...: the sum of VmRSS; hwm_kb PID...: the largest VmHWM (peak RSS).
rss_kb() { local p s=0 v; for p in "$@"; do v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); s=$((s + ${v:-0})); done; echo "$s"; }
hwm_kb() { local p m=0 v; for p in "$@"; do v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); ((${v:-0} > m)) && m=${v:-0}; done; echo "$m"; }

# ---------------------------------------------------------------- servers ----
# coop serve, Redis and databases: bench/lib.sh (as for bench/enrollment-day.sh).
BENCH_DB_PREFIX=coop_users
OWN_ENV=(-u COOP_LISTEN -u COOP_DATA_DIR -u COOP_DATABASE_URL -u COOP_REDIS_URL -u COOP_SMTP_URL
    -u COOP_RUN_JOBS -u COOP_INSTANCE_ID -u COOP_LISTEN_BACKLOG -u COOP_KEEP_IDLE_BUFFERS)

# start_worker LOGFILE ENV...: one `coop worker`; sets WORKER_PID.
start_worker() {
    local logfile=$1
    shift
    "${NICE[@]}" env "${OWN_ENV[@]}" "$@" COOP_WORKER_LISTEN="127.0.0.1:$(free_port)" COOP_LOG=json RUST_LOG=warn \
        "$COOP_BIN" worker >"$logfile" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
}

# start_cluster N DB_URL REDIS_URL LOGFILE STATE_DIR: `coop cluster` (nginx with
# one worker in front of N instances, one job worker); sets CLUSTER_PID,
# SRV_URL, SRV_PORT, INSTANCE_PIDS.
start_cluster() {
    local n=$1 db_url=$2 redis_url=$3 logfile=$4 state_dir=$5 control
    SRV_PORT=$(free_port)
    control="127.0.0.1:$(free_port)"
    rm -rf -- "$state_dir"
    mkdir -p "$state_dir"
    "${NICE[@]}" env "${OWN_ENV[@]}" COOP_LOG=json RUST_LOG=warn "$COOP_BIN" cluster --no-autoscale \
        --instances "$n" --workers 1 --instances-max 16 --nginx-workers 1 \
        --listen "127.0.0.1:$SRV_PORT" --control "$control" --state-dir "$state_dir" \
        --database-url "$db_url" --redis-url "$redis_url" >"$logfile" 2>&1 &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    SRV_URL="http://127.0.0.1:$SRV_PORT"
    wait_cluster_ready "$CLUSTER_PID" "$state_dir" "$control" "$n" "$logfile" "$SCRATCH/status.json" "$SRV_URL" || return 1
    # The instances: `coop serve` processes under the cluster.
    mapfile -t INSTANCE_PIDS < <(for p in $(desc_pids "$CLUSTER_PID"); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q ' serve' && echo "$p"; done)
}

# --------------------------------------------------------------- seeding ----
# seed_into LABEL LOGFILE STATE ENV...: start `coop serve` with ENV, seed it, stop it.
seed_into() {
    local label=$1 logfile=$2 state=$3 smtp_port
    shift 3
    smtp_port=$(free_port)
    start_serve "$logfile" "$@" COOP_SMTP_URL="smtp://127.0.0.1:$smtp_port" COOP_RUN_JOBS=on || return 1
    log "$label: seeding $FAMILIES families (one child each, each signed in), $CLASSES classes × $CAPACITY seats"
    if ! timeout 3000 "$LOADGEN" seed --base "$SRV_URL" --smtp-listen "127.0.0.1:$smtp_port" \
            --families "$FAMILIES" --children "$FAMILIES" --classes "$CLASSES" \
            --capacity "$CAPACITY" --out "$state" 2>&1 | tee "$OUT_DIR/seed-$label.txt" >&2; then
        stop_serve
        return 1
    fi
    [[ -s "$state" ]] || { stop_serve; return 1; }
    stop_serve
}

# ------------------------------------------------------ idle connections ----
# idle_rss LABEL ENV...: a fresh embedded `coop serve` with ENV; its RSS with no
# client, with IDLE_CONNECTIONS connections that sent nothing, and with as
# many that made one request each. Writes $OUT_DIR/idle-LABEL.json.
idle_rss() {
    local label=$1 data_dir base none=0 silent=0 used=0 mode out pid fifo closed
    shift
    data_dir=$(mktemp -d /tmp/coop-users-idle.XXXXXX)
    TMP_DIRS+=("$data_dir")
    start_serve "$OUT_DIR/idle-$label.log" COOP_DATA_DIR="$data_dir" "$@" || return 1
    sleep 2
    base=$(rss_kb "$SRV_PID")
    for mode in silent used; do
        out="$OUT_DIR/idle-$label-$mode.txt"
        fifo="$SCRATCH/idle-stdin-$mode"
        rm -f "$fifo"; mkfifo "$fifo"
        local args=(idle --base "$SRV_URL" --connections "$IDLE_CONNECTIONS" --hold 300)
        [[ "$mode" == used ]] && args+=(--request /health)
        "$LOADGEN" "${args[@]}" <"$fifo" >"$out" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        exec 9>"$fifo"
        for _ in $(seq 1 600); do
            grep -q '^ready' "$out" 2>/dev/null && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        grep -q "^ready $IDLE_CONNECTIONS\$" "$out" || { exec 9>&-; log "idle $label $mode: $(cat "$out")"; stop_serve; return 1; }
        sleep 3 # past the parking delay, and let the allocator settle
        local rss
        rss=$(rss_kb "$SRV_PID")
        exec 9>&- # closes the generator's stdin: it checks, prints and exits
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        closed=$(awk '/^closed_by_server/ {print $2}' "$out")
        [[ "$mode" == silent ]] && silent=$rss || used=$rss
        log "idle $label: $mode: RSS ${rss} kB with $IDLE_CONNECTIONS connections (no client: ${base} kB; closed by the server meanwhile: ${closed:-?})"
        sleep 3 # the server sees the connections close
    done
    stop_serve
    python3 - "$OUT_DIR/idle-$label.json" "$base" "$silent" "$used" "$IDLE_CONNECTIONS" <<'PY'
import json, sys
path, base, silent, used, n = sys.argv[1], *map(int, sys.argv[2:])
json.dump({"base_kb": base, "silent_kb": silent, "used_kb": used, "connections": n,
           "per_silent_b": (silent - base) * 1024 / n, "per_used_b": (used - base) * 1024 / n},
          open(path, "w"))
PY
}

# ------------------------------------------------------------- one run ----
# run_users SETUP USERS SLUG [ENV...]: start SETUP (nginx | embedded | pg1 |
# pgN) fresh, drive it with USERS users for DURATION s, stop it. Writes
# $OUT_DIR/SLUG.summary.json (the generator's summary plus the run's facts).
run_users() {
    local setup=$1 users=$2 slug=$3
    shift 3
    local extra=("$@") state base db="" data_dir="" rc=0 server_pids=() tree_root
    local loadgen_args=(--write-share "$WRITE_SHARE")
    rm -f "$OUT_DIR/$slug".*
    case "$setup" in
        nginx)
            start_nginx "$OUT_DIR/$slug.log" || return 1
            SRV_URL="http://127.0.0.1:$NGINX_PORT"
            SRV_PORT=$NGINX_PORT
            server_pids=($(desc_pids "$NGINX_PID"))
            tree_root=$NGINX_PID
            state="$OUT_DIR/state-embedded.json"
            # A static file answers GETs only, and has no sessions to sign in.
            loadgen_args=(--static-target)
            ;;
        embedded)
            data_dir=$(mktemp -d /tmp/coop-users-data.XXXXXX)
            TMP_DIRS+=("$data_dir")
            cp -a "$EMB_TEMPLATE/." "$data_dir/"
            start_serve "$OUT_DIR/$slug.log" COOP_DATA_DIR="$data_dir" "${extra[@]}" || return 1
            server_pids=("$SRV_PID")
            tree_root=$SRV_PID
            state="$OUT_DIR/state-embedded.json"
            ;;
        pg1)
            db=$(fresh_pg "$PG_TEMPLATE") || return 1
            start_redis --maxclients 20000
            local url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
            start_serve "$OUT_DIR/$slug.log" COOP_DATABASE_URL="$url" COOP_REDIS_URL="$REDIS_URL" "${extra[@]}" \
                || { stop_redis; return 1; }
            start_worker "$OUT_DIR/$slug.worker.log" COOP_DATABASE_URL="$url" COOP_REDIS_URL="$REDIS_URL"
            server_pids=("$SRV_PID")
            tree_root=$SRV_PID
            state="$OUT_DIR/state-postgres.json"
            ;;
        pg*)
            local n=${setup#pg}
            db=$(fresh_pg "$PG_TEMPLATE") || return 1
            start_redis --maxclients 20000
            start_cluster "$n" "postgres://$PGUSER@$PGHOST:$PGPORT/$db" "$REDIS_URL" \
                "$OUT_DIR/$slug.log" "$OUT_DIR/$slug.cluster" || { stop_redis; return 1; }
            server_pids=("${INSTANCE_PIDS[@]}")
            tree_root=$CLUSTER_PID
            state="$OUT_DIR/state-postgres.json"
            ;;
    esac
    base=$SRV_URL
    wait_quiet "$slug"
    local load_before drops_before drops_after t0 t1 b0 b1 watcher rustc
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    rustc=$(pgrep -c rustc || true)
    drops_before=$(listen_drops)
    watch_accept_queue "$SRV_PORT" "$SCRATCH/queue" &
    watcher=$!
    PIDS+=("$watcher")
    tree_snapshot "$tree_root" >"$SCRATCH/srv0"
    db_snapshot >"$SCRATCH/db0"
    b0=$(busy_jiffies)
    t0=$(now_secs)
    log "$slug: $setup, $users users for ${DURATION}s (loadgen --base $base)"
    timeout $((${DURATION%.*} + 180)) "${NICE[@]}" "$LOADGEN" users --base "$base" --state "$state" \
        --users "$users" --duration "$DURATION" --think-ms "$THINK_MS" \
        --threads "$LOADGEN_THREADS" "${loadgen_args[@]}" --out "$OUT_DIR/$slug.summary.json" \
        >"$OUT_DIR/$slug.loadgen.txt" 2>&1 || rc=$?
    t1=$(now_secs)
    b1=$(busy_jiffies)
    tree_snapshot "$tree_root" >"$SCRATCH/srv1"
    db_snapshot >"$SCRATCH/db1"
    drops_after=$(listen_drops)
    stop_pid "$watcher"
    forget_pid "$watcher"
    local peak alive=1
    peak=$(hwm_kb "${server_pids[@]}")
    kill -0 "$tree_root" 2>/dev/null || alive=0
    # Coop's own counters of the run (cache tiers, lease waits, pool waits):
    # what a slow figure is made of. One instance's; kept beside the summary.
    case "$setup" in
        embedded | pg1) metrics_curl -fsS --max-time 5 "$SRV_URL/metrics" >"$OUT_DIR/$slug.metrics" 2>/dev/null || true ;;
    esac
    case "$setup" in
        nginx) stop_pid "$NGINX_PID"; forget_pid "$NGINX_PID" ;;
        embedded) stop_serve ;;
        pg1) stop_serve; stop_pid "$WORKER_PID"; forget_pid "$WORKER_PID"; stop_redis ;;
        pg*) stop_cluster; stop_redis ;;
    esac
    [[ -n "$db" ]] && drop_pg "$db"
    [[ -n "$data_dir" ]] && rm -rf -- "$data_dir"
    if ((rc != 0 && rc != 3)) || [[ ! -s "$OUT_DIR/$slug.summary.json" ]]; then
        log "$slug: the load generator failed (exit $rc):"
        tail -n 20 "$OUT_DIR/$slug.loadgen.txt" >&2
        return 1
    fi
    python3 - "$OUT_DIR/$slug.summary.json" "$t0" "$t1" "$b0" "$b1" \
        "$(delta "$SCRATCH/srv0" "$SCRATCH/srv1")" "$(delta "$SCRATCH/db0" "$SCRATCH/db1")" "$CLK_TCK" \
        "$alive" "$peak" "$drops_before" "$drops_after" "$(cat "$SCRATCH/queue" 2>/dev/null || echo '0 0')" \
        "$load_before" "$rustc" "$setup" <<'PY'
import json, sys
(p, t0, t1, b0, b1, srv_j, db_j, hz, alive, peak, drops0, drops1, queue, load, rustc, setup) = sys.argv[1:]
d = json.load(open(p))
wall = float(t1) - float(t0); hz = float(hz)
busy = (int(b1) - int(b0)) / hz / wall * 100
srv = int(srv_j) / hz / wall * 100
db = int(db_j) / hz / wall * 100
gen = d.get("loadgen_cpu_pct", 0)
o0, r0 = map(int, drops0.split()); o1, r1 = map(int, drops1.split())
q, backlog = (queue.split() + ["0", "0"])[:2]
d["setup"] = setup
d["cpu"] = {"server": round(srv), "db": round(db), "loadgen": round(gen), "busy_total": round(busy),
            "other": round(max(0.0, busy - srv - db - gen))}
d["server_alive"] = alive == "1"
d["server_peak_rss_mib"] = round(int(peak) / 1024, 1)
d["listen_overflows"] = o1 - o0
d["listen_drops"] = r1 - r0
d["accept_queue_max"] = int(q)
d["listen_backlog"] = int(backlog)
d["load_before"] = load
d["rustc_running"] = int(rustc or 0)
json.dump(d, open(p, "w"), indent=1)
PY
    log "$slug: $(jf "$OUT_DIR/$slug.summary.json" "'%.0f req/s, p50/p99/p99.9/max %s/%s/%s/%s ms, errors %s, open %s, RSS %s MiB, overflows %s, accept queue max %s of %s, cpu %s' % (d['requests_per_sec'], d['all']['p50_ms'], d['all']['p99_ms'], d['all']['p999_ms'], d['all']['max_ms'], d['all']['errors'], d['max_open_connections'], d['server_peak_rss_mib'], d['listen_overflows'], d['accept_queue_max'], d['listen_backlog'], d['cpu'])")"
    RUN_OK=$((rc == 0 && alive == 1))
    return 0
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (nginx, ulimit -n, the port range)"
for t in python3 curl psql redis-server redis-cli timeout nstat ss; do
    command -v "$t" >/dev/null || die "'$t' is required but not on PATH (nstat and ss: Debian package iproute2)"
done
if ! find_nginx; then
    apt_install nginx-light nginx && find_nginx || die "could not install nginx-light or nginx"
fi
mkdir -p "$OUT_DIR"
SCRATCH=$(mktemp -d /tmp/coop-users-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
raise_limits
rev=$(source_rev "$REPO_DIR")
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN and $LOADGEN as they are"
    rev="$rev (SKIP_BUILD=1: the coop binary may be older than this source)"
else
    log "cargo build --release --features test-knobs --bin coop; cargo build --release -p coop-loadgen"
    (cd "$REPO_DIR" && cargo build --release --features test-knobs --bin coop) >&2 || die "cargo build --release failed"
    (cd "$REPO_DIR" && cargo build --release -p coop-loadgen) >&2 || die "building coop-loadgen failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"
[[ -x "$LOADGEN" ]] || die "no binary at $LOADGEN"
psql -d postgres -qAt -c 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL is not reachable as $PGUSER@$PGHOST:$PGPORT"
STARTED=$(date +%s)
log "limits: ulimit -n $NOFILE, ports $PORT_RANGE, somaxconn $SOMAXCONN, tcp_max_syn_backlog $SYN_BACKLOG, syncookies $SYNCOOKIES"

if [[ "${SKIP_IDLE:-0}" != 1 ]]; then
    idle_rss parked || die "the idle-connection measurement failed"
    idle_rss kept COOP_KEEP_IDLE_BUFFERS=on || die "the idle-connection measurement failed"
fi

need_pg=0; need_emb=0
for s in $SETUPS; do case $s in pg*) need_pg=1 ;; *) need_emb=1 ;; esac; done
# With REUSE_SEED=1 the seeded templates stay (a data dir under bench/out/users,
# a database named after the family count) and later runs start from them.
if [[ "${REUSE_SEED:-0}" == 1 ]]; then
    EMB_TEMPLATE="$OUT_DIR/template-embedded-$FAMILIES"
    PG_TEMPLATE="coop_users_tmpl_$FAMILIES"
else
    EMB_TEMPLATE=$(mktemp -d /tmp/coop-users-template.XXXXXX)
    TMP_DIRS+=("$EMB_TEMPLATE")
    PG_TEMPLATE="coop_users_tmpl_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
fi
if ((need_emb)); then
    if [[ "${REUSE_SEED:-0}" == 1 && -s "$EMB_TEMPLATE/coop.sqlite3" && -s "$OUT_DIR/state-embedded.json" ]]; then
        log "embedded: reusing the seeded $EMB_TEMPLATE"
    else
        rm -rf -- "$EMB_TEMPLATE"; mkdir -p "$EMB_TEMPLATE"
        seed_into embedded "$OUT_DIR/seed-embedded.log" "$OUT_DIR/state-embedded.json" COOP_DATA_DIR="$EMB_TEMPLATE" \
            || die "seeding the embedded tier failed (see $OUT_DIR/seed-embedded.*)"
    fi
fi
if ((need_pg)); then
    if [[ "${REUSE_SEED:-0}" == 1 && -s "$OUT_DIR/state-postgres.json" ]] \
        && [[ "$(psql -d postgres -qAt -c "SELECT 1 FROM pg_database WHERE datname = '$PG_TEMPLATE'")" == 1 ]]; then
        log "postgres: reusing the seeded database $PG_TEMPLATE"
    else
        psql -d postgres -qAt -c "DROP DATABASE IF EXISTS \"$PG_TEMPLATE\"" >/dev/null
        psql -d postgres -qAt -c "CREATE DATABASE \"$PG_TEMPLATE\"" >/dev/null || die "CREATE DATABASE failed"
        [[ "${REUSE_SEED:-0}" == 1 ]] || PG_DBS+=("$PG_TEMPLATE")
        start_redis --maxclients 20000
        seed_into postgres "$OUT_DIR/seed-postgres.log" "$OUT_DIR/state-postgres.json" \
            COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_TEMPLATE" COOP_REDIS_URL="$REDIS_URL" \
            || die "seeding PostgreSQL failed (see $OUT_DIR/seed-postgres.*)"
        stop_redis
    fi
fi

FAILED=()
STATUS=0
for round in $(seq 1 "$ROUNDS"); do
    for users in $USERS_LIST; do
        for setup in $SETUPS; do
            slug="$setup-$users-r$round"
            if ! run_users "$setup" "$users" "$slug"; then FAILED+=("$slug"); STATUS=1; continue; fi
            ((RUN_OK)) || { log "$slug: had failed requests"; STATUS=1; }
        done
    done
    if ((BACKLOG_COMPARE)) && [[ " $SETUPS " == *" embedded "* ]]; then
        slug="embedded-backlog1024-$MAX_USERS-r$round"
        run_users embedded "$MAX_USERS" "$slug" COOP_LISTEN_BACKLOG=1024 || { FAILED+=("$slug"); STATUS=1; }
    fi
done
ELAPSED=$(( $(date +%s) - STARTED ))

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
measured=$(date -u '+%Y-%m-%d %H:%M UTC')
section="$SCRATCH/section.md"
python3 - "$OUT_DIR" "$ROUNDS" "$USERS_LIST" "$SETUPS" "$MAX_USERS" "$BACKLOG_COMPARE" "${SKIP_IDLE:-0}" \
    >"$SCRATCH/tables.md" <<'PY'
import json, os, statistics, sys
out, rounds, users_list, setups, max_users, compare, skip_idle = sys.argv[1:]
rounds = int(rounds)
labels = {"nginx": "nginx, static file (the ceiling)", "embedded": "Coop embedded (SQLite), 1 instance",
          "pg1": "Coop PostgreSQL + Redis, 1 instance"}
def label(s):
    return labels.get(s) or f"Coop PostgreSQL + Redis, {s[2:]} instances behind nginx"
def load(slug):
    try:
        return json.load(open(f"{out}/{slug}.summary.json"))
    except (OSError, ValueError):
        return None
med = lambda xs: statistics.median(xs) if xs else None
def fmt(v, p=1):
    if v is None: return "—"
    return f"{v:,.{p}f}"
def row(name, users, runs):
    if not runs:
        return f"| {name} | {users} | failed | | | | | | | | | | |"
    A = [r["all"] for r in runs]
    q = lambda k: med([a[k] for a in A if a[k] is not None])
    errs = sum(a["errors"] for a in A); sent = sum(r["sent"] for r in runs)
    return (f"| {name} | {int(users):,} | {fmt(med([r['requests_per_sec'] for r in runs]), 0)} "
            f"| {fmt(q('p50_ms'), 2)} | {fmt(q('p95_ms'), 2)} | {fmt(q('p99_ms'), 2)} | {fmt(q('p999_ms'), 1)} | {fmt(q('max_ms'), 0)} "
            f"| {errs:,} / {sent:,} | {fmt(med([r['max_open_connections'] for r in runs]), 0)} "
            f"| {fmt(med([r['server_peak_rss_mib'] for r in runs]))} "
            f"| {fmt(med([r['listen_overflows'] for r in runs]), 0)} / {fmt(med([r['accept_queue_max'] for r in runs]), 0)} "
            f"| {fmt(med([r['cpu']['server'] for r in runs]), 0)}% / {fmt(med([r['cpu']['db'] for r in runs]), 0)}% / {fmt(med([r['cpu']['loadgen'] for r in runs]), 0)}% / {fmt(med([r['cpu']['other'] for r in runs]), 0)}% |")
print("| Target | users | requests/s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | failed / sent | connections open at once | server peak RSS MiB | listen overflows / deepest accept queue | CPU: server / databases / load generator / other |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for users in users_list.split():
    for s in setups.split():
        runs = [r for r in (load(f"{s}-{users}-r{i}") for i in range(1, rounds + 1)) if r]
        print(row(label(s), users, runs))
if compare == "1":
    runs = [r for r in (load(f"embedded-backlog1024-{max_users}-r{i}") for i in range(1, rounds + 1)) if r]
    print(row("Coop embedded, COOP_LISTEN_BACKLOG=1024 (before issue 19)", max_users, runs))
print()
# Per kind, at the largest count, Coop's tiers.
print(f"By request, {int(max_users):,} users (p50 / p99 ms, failed):")
print()
kinds = ["home", "catalog", "family", "enrollments", "enroll", "drop", "family_list"]
print("| Target | " + " | ".join(kinds) + " |")
print("|---|" + "---:|" * len(kinds))
for s in setups.split():
    runs = [r for r in (load(f"{s}-{max_users}-r{i}") for i in range(1, rounds + 1)) if r]
    if not runs: continue
    cells = []
    for k in kinds:
        K = [r["kinds"][k] for r in runs if k in r["kinds"]]
        if not K: cells.append("—"); continue
        cells.append(f"{fmt(med([x['p50_ms'] for x in K if x['p50_ms'] is not None]), 2)} / {fmt(med([x['p99_ms'] for x in K if x['p99_ms'] is not None]), 1)}, {sum(x['errors'] for x in K)}")
    print(f"| {label(s)} | " + " | ".join(cells) + " |")
if skip_idle != "1":
    print()
    print("Idle connections, one embedded `coop serve` (RSS; per connection = (RSS with them − RSS without) / count):")
    print()
    print("| Coop | no client | connections | never sent a byte: RSS, per connection | after one request each: RSS, per connection |")
    print("|---|---:|---:|---:|---:|")
    for key, name in [("parked", "as built (idle connections parked)"), ("kept", "COOP_KEEP_IDLE_BUFFERS=on (hyper keeps its buffers, as before)")]:
        try:
            d = json.load(open(f"{out}/idle-{key}.json"))
        except (OSError, ValueError):
            print(f"| {name} | failed | | | |"); continue
        print(f"| {name} | {d['base_kb']/1024:.1f} MiB | {d['connections']:,} | {d['silent_kb']/1024:.1f} MiB, {d['per_silent_b']/1024:.1f} KB | {d['used_kb']/1024:.1f} MiB, {d['per_used_b']/1024:.1f} KB |")
PY
{
    echo "## Many users at once"
    echo
    echo "Measured $measured with \`bench/users.sh\`, commit $rev; ${ELAPSED}s in all."
    echo
    echo "N users, each with its own session (seeded families that accepted their own invites; 1 in 100"
    echo "users a coordinator signed in for a session of its own) and its own keep-alive connection,"
    echo "opened at its first request. Each user sends a request, thinks (exponential, mean $THINK_MS ms),"
    echo "sends the next: about N requests/s in all, for ${DURATION} s. Open loop: send times are drawn in"
    echo "advance and latencies run from them (a request due while its user's previous one still runs"
    echo "waits, and that wait counts). Families: home page 25 %, catalog 35 % (half of them one weekday),"
    echo "their record 20 %, their enrollments 20 %; of all their requests $WRITE_SHARE enroll a child or drop"
    echo "it. Coordinators: the family list 70 %, a family 30 %. nginx answers every GET with a"
    echo "${NGINX_FILE_BYTES:-~270}-byte file (the same users and paths; no sign-in, no writes). Medians of $ROUNDS round(s)."
    echo
    cat "$SCRATCH/tables.md"
    echo
    echo "- connections open at once: counted by the load generator (connections it opened and still had)."
    echo "- listen overflows: the kernel's TcpExtListenOverflows over the run (nstat; the whole machine):"
    echo "  connections refused because an accept queue was full, each retried by its client after 1 s."
    echo "  Deepest accept queue: ss's Recv-Q of the listening socket, sampled every 0.2 s."
    echo "- CPU in % of one CPU ($NCPU CPUs = $((NCPU * 100))%): the server's process tree (with nginx for"
    echo "  \`coop cluster\`), PostgreSQL + Redis, the load generator (its own /proc figure), and"
    echo "  everything else that ran meanwhile (\"other\": builds, tests)."
    if ((${#FAILED[@]})); then echo "- Runs that failed to complete: ${FAILED[*]} (see bench/out/users/)."; fi
    for key in "${!C_WAITED[@]}"; do
        [[ "${C_WAITED[$key]:-0}" -gt 0 ]] && echo "- $key: waited ${C_WAITED[$key]} s for other processes to go quiet"
    done
    echo
    echo "Settings:"
    echo
    echo "- Command: \`bench/users.sh\` (USERS_LIST=\"$USERS_LIST\" DURATION=$DURATION THINK_MS=$THINK_MS"
    echo "  WRITE_SHARE=$WRITE_SHARE ROUNDS=$ROUNDS SETUPS=\"$SETUPS\" LOADGEN_THREADS=$LOADGEN_THREADS)"
    echo "- Limits set by the script: ulimit -n $NOFILE, local ports $PORT_RANGE; COOP_MAX_CONNECTIONS=16384;"
    echo "  nginx worker_connections 16384. Kernel: somaxconn $SOMAXCONN, tcp_max_syn_backlog $SYN_BACKLOG,"
    echo "  syncookies $SYNCOOKIES."
    echo "- Embedded: \`coop serve\` with \`COOP_DATA_DIR\` (a copy of the seeded data dir), jobs in-process."
    echo "  PostgreSQL + Redis, 1 instance: \`coop serve\` and \`coop worker\`, no nginx. $INSTANCES instances:"
    echo "  \`coop cluster --no-autoscale --instances $INSTANCES --workers 1 --nginx-workers 1\`. A fresh database"
    echo "  (template copy) and Redis per run. \`COOP_LOG=json RUST_LOG=warn COOP_RATE_LIMITS=off\`. Release"
    echo "  build with \`test-knobs\`."
    echo "- Load generator: \`coop-loadgen users\` (hyper HTTP/1.1 client connections, one per user,"
    echo "  $LOADGEN_THREADS runtime thread(s)), on the same machine."
    [[ -n "${BENCH_NICE:-}" ]] && echo "- Coop, nginx, Redis and the load generator ran under \`nice -n $BENCH_NICE\`."
    echo "- Machine: $NCPU CPUs ($cpu_model), Linux $(uname -r); everything shares these CPUs."
} >"$section"
results_put_section "$RESULTS" bench/users.sh "$section"
echo
cat "$section"
((${#FAILED[@]})) && log "FAIL: runs that did not complete: ${FAILED[*]}"
exit "$STATUS"
