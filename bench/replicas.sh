#!/usr/bin/env bash
# Coop read-replica benchmark, with the cache off (COOP_CACHE=off), so the
# database is what is measured. A PostgreSQL primary with two streaming
# replicas of its own (scripts/pg-cluster.sh) on free loopback ports, one Coop
# instance at a time. Results: a section of bench/RESULTS.md (the other
# sections are kept).
#
#   bench/replicas.sh
#
# One run:
#   1. build (cargo build --release --features test-knobs --bin coop: the sticky
#      variant is read only by such a build), start the cluster (primary +
#      2 replicas, for the whole run), create the database coop_bench, seed
#      FAMILIES families through a Coop on the primary (bench/seed.py),
#      VACUUM ANALYZE, and wait until both replicas have replayed it all;
#   2. read throughput: GET /api/v1/families/{id} with random seeded ids
#      (bench/get_family.lua, the coordinator's session cookie), WARMUP not
#      counted, then DURATION measured, with Coop reading from 0 replicas (no
#      COOP_REPLICA_URLS: everything on the primary), 1 replica, 2 replicas; a
#      fresh Coop per phase. /metrics before and after (db_reads_total by
#      endpoint) and the CPU time of the primary's and the replicas' PostgreSQL
#      processes (postmaster + children, /proc/PID/stat utime+stime+cutime+cstime),
#      of Coop and of wrk over the measured run;
#   3. read-your-writes with 2 replicas: bench/ryw_driver.py, RYW_THREADS
#      threads each owning one family, looping PUT a new name, then RYW_READS
#      GETs sending the write's `Coop-Read-After` token back (each checked for
#      the name just written), then RYW_PAUSE s of sleep; once with
#      COOP_READ_YOUR_WRITES=lsn, once with sticky, and (CONTROL=1) once in lsn
#      mode without sending the token, to show that the check does catch stale
#      reads when nothing prevents them; Coop's on-demand replay checks
#      (db_replay_checks_total by outcome) are counted for each;
#   4. the section goes into bench/RESULTS.md; the cluster is stopped and removed.
#
# Environment (all optional):
#   DURATION=15s        measured wrk run per read phase (a bare number means seconds)
#   WARMUP=3s           wrk load before each measured read run, not counted
#   CONNECTIONS=64      wrk connections (wrk -t2)
#   FAMILIES=10000      families seeded
#   SEED_THREADS=8      parallel keep-alive connections used for seeding
#   RYW_THREADS=16 RYW_DURATION=20 RYW_READS=5 RYW_PAUSE=0.05 RYW_WARMUP=2
#                       read-your-writes driver settings (seconds)
#   CONTROL=1           also run the no-token control (0: skip it)
#   BASE_PORT=57432     the cluster's first port (primary; replicas +1, +2); the
#                       next free block of three ports from there is used
#   CARGO_TARGET_DIR    where `cargo build --release` puts the binary
#   SKIP_BUILD=1        use the existing release binary instead of building
#   BENCH_RESULTS=FILE  write the results there instead of bench/RESULTS.md
#   BENCH_REDIS_URL=redis://127.0.0.1:6379   Redis passed as COOP_REDIS_URL
#   COOP_*              other Coop settings pass through to every instance and are
#                       listed in the results (the ones this script sets are not)
#   QUIET_PCT=25        before each phase, wait until other processes use less than
#                       this % of one CPU; a phase they disturbed that much is repeated
#   QUIET_WAIT=600      most seconds spent waiting for quiet, over the whole script
#   BUSY_RETRIES=2      most repeats of a disturbed phase (the last one is reported)
#   OTHER_BENCH_WAIT=1800  most seconds to wait, before building and before each
#                       phase, for bench/cache.sh or bench/run.sh to finish
#
# Needs root (PostgreSQL runs as the postgres user; wrk is installed if missing),
# python3 (stdlib only), curl, psql, redis-cli, and Redis. Exits non-zero if a
# phase failed or saw errors (socket errors, non-2xx responses, a Coop crash) or
# if a read-your-writes run with the token saw a stale read.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/replicas"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
LUA="$BENCH_DIR/get_family.lua"
DRIVER="$BENCH_DIR/ryw_driver.py"
PG_CLUSTER="$REPO_DIR/scripts/pg-cluster.sh"

DURATION="${DURATION:-15s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
WARMUP="${WARMUP:-3s}"
[[ "$WARMUP" =~ ^[0-9]+$ ]] && WARMUP="${WARMUP}s"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS=2
FAMILIES="${FAMILIES:-10000}"
SEED_THREADS="${SEED_THREADS:-8}"
RYW_THREADS="${RYW_THREADS:-16}"
RYW_DURATION="${RYW_DURATION:-20}"
RYW_READS="${RYW_READS:-5}"
RYW_PAUSE="${RYW_PAUSE:-0.05}"
RYW_WARMUP="${RYW_WARMUP:-2}"
CONTROL="${CONTROL:-1}"
BASE_PORT="${BASE_PORT:-57432}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
BUSY_RETRIES="${BUSY_RETRIES:-2}"
OTHER_BENCH_WAIT="${OTHER_BENCH_WAIT:-1800}"
DB=coop_bench

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

for f in log die stop_pid free_port wait_http to_ms wait_quiet snapshot snapshot_all delta \
         delta_except children_secs tree_pids db_pids source_rev ensure_tools results_put_section \
         forget_pid secs group calc max2 bench_field wrk_summary; do
    declare -F "$f" >/dev/null || { echo "bench/replicas.sh: bench/lib.sh has no function $f" >&2; exit 1; }
done

# ---------------------------------------------------------------- cleanup ----
CLUSTER_DIR=""
SESSION_KEY=""

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n "$CLUSTER_DIR" ]]; then
        timeout 120 "$PG_CLUSTER" stop "$CLUSTER_DIR" >/dev/null 2>&1 \
            && log "stopped and removed the cluster in $CLUSTER_DIR" \
            || log "WARNING: could not stop the cluster in $CLUSTER_DIR ($PG_CLUSTER stop $CLUSTER_DIR)"
    fi
    # The bench session Coop kept in Redis (it would also expire on its own).
    if [[ -n "$SESSION_KEY" ]]; then
        timeout 30 redis-cli -u "$BENCH_REDIS_URL" --scan --pattern "*$SESSION_KEY*" 2>/dev/null \
            | timeout 30 xargs -r -n 500 redis-cli -u "$BENCH_REDIS_URL" DEL >/dev/null 2>&1
    fi
    local d
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers ----

# wait_other_bench LABEL: until neither bench/cache.sh nor bench/run.sh runs
# (they would disturb us, and we them); OTHER_BENCH_WAIT seconds at most overall.
OTHER_SPENT=0
wait_other_bench() {
    local label=$1 start waited=0
    start=$(date +%s)
    while pgrep -f 'bench/cache[.]sh|bench/run[.]sh' >/dev/null; do
        waited=$(( $(date +%s) - start ))
        if ((OTHER_SPENT + waited >= OTHER_BENCH_WAIT)); then
            log "$label: another benchmark still runs and the ${OTHER_BENCH_WAIT}s budget is spent; going on"
            break
        fi
        ((waited % 60 < 5)) && log "$label: waiting for the other benchmark (bench/cache.sh or bench/run.sh) to finish"
        sleep 5
    done
    OTHER_SPENT=$((OTHER_SPENT + $(date +%s) - start))
}

# port_block_free PORT: PORT, PORT+1 and PORT+2 are all free on 127.0.0.1.
port_block_free() {
    python3 - "$1" <<'PY'
import socket, sys
base = int(sys.argv[1])
for p in range(base, base + 3):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}

pq() { # PORT DB SQL: one psql query, bounded
    PGCONNECT_TIMEOUT=5 timeout "${PG_TIMEOUT:-60}" psql -h 127.0.0.1 -p "$1" -U postgres -d "$2" \
        -qAt -v ON_ERROR_STOP=1 -c "$3"
}

# pg_node_jiffies NODE: CPU jiffies of one PostgreSQL server of the cluster: its
# postmaster (utime+stime, plus cutime+cstime of the children it has reaped, so
# backends that exited still count) and every live child (all four fields).
pg_node_jiffies() {
    local pm kid
    pm=$(head -n1 "$CLUSTER_DIR/$1/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    {
        sed 's/^.*) //' "/proc/$pm/stat" 2>/dev/null
        for kid in $(pgrep -P "$pm" || true); do
            sed 's/^.*) //' "/proc/$kid/stat" 2>/dev/null || true
        done
    } | awk '{s += $12 + $13 + $14 + $15} END {print s + 0}'
}
# node_pids NODE: the postmaster and its children (to leave them out of "other").
node_pids() {
    local pm
    pm=$(head -n1 "$CLUSTER_DIR/$1/postmaster.pid" 2>/dev/null) || return 0
    tree_pids "$pm"
}
NODES=(primary replica1 replica2)
pg_snapshot() { local n; for n in "${NODES[@]}"; do echo "$n $(pg_node_jiffies "$n")"; done; }
# pg_delta BEFORE AFTER NODE...: jiffies of those nodes in between.
pg_delta() {
    local a=$1 b=$2
    shift 2
    awk -v want=" $* " 'NR == FNR {x[$1] = $2; next} index(want, " " $1 " ") {s += $2 - x[$1]} END {print s + 0}' "$a" "$b"
}

# metric FILE SERIES: the value of one series of a /metrics scrape ("" if absent).
metric() { awk -v k="$2" '$1 == k {v = $2} END {print v}' "$1"; }
# mdelta BEFORE AFTER SERIES: its change (a series missing before counts from 0;
# prints "" if it is missing after as well).
mdelta() {
    local a b
    a=$(metric "$1" "$3"); b=$(metric "$2" "$3")
    [[ -z "$b" ]] && { echo ""; return; }
    calc '%.0f' "${b} - ${a:-0}"
}

# ------------------------------------------------------------------- coop ----
COOP_PID=""
COOP_URL=""

# start_coop LOGFILE ENV...: `coop serve` on the primary (cache off) with ENV;
# waits for GET /ready = 200 (60 s at most).
start_coop() {
    local logfile=$1 port pid
    shift
    port=$(free_port)
    env -u COOP_CACHE -u COOP_DATA_DIR -u COOP_LISTEN -u COOP_INSTANCE_ID -u COOP_REPLICA_URLS \
        -u COOP_READ_YOUR_WRITES -u COOP_DATABASE_URL -u COOP_REDIS_URL \
        "$@" COOP_CACHE=off COOP_LISTEN="127.0.0.1:$port" COOP_DATABASE_URL="$PRIMARY_URL" \
        COOP_REDIS_URL="$BENCH_REDIS_URL" COOP_LOG=json RUST_LOG=warn COOP_INSTANCE_ID=replicas-bench \
        "$COOP_BIN" serve >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    COOP_PID=$pid
    COOP_URL="http://127.0.0.1:$port"
    wait_http "$COOP_URL/ready" "$pid" "$logfile"
}

# stop_coop: false if it had already exited.
stop_coop() {
    local ok=0
    [[ -n "$COOP_PID" ]] || return 0
    if ! kill -0 "$COOP_PID" 2>/dev/null; then
        log "coop (pid $COOP_PID) had exited before it was stopped"
        ok=1
    fi
    stop_pid "$COOP_PID"
    forget_pid "$COOP_PID"
    COOP_PID=""
    return "$ok"
}

scrape() { # FILE
    metrics_curl -sf --max-time 5 -o "$1" "$COOP_URL/metrics" || {
        log "could not read $COOP_URL/metrics"
        return 1
    }
}

# wait_replicas_healthy N: until Coop's /metrics shows N replicas with
# db_replica_healthy 1 (30 s at most).
wait_replicas_healthy() {
    local want=$1 i n=0
    ((want > 0)) || return 0
    for i in $(seq 1 150); do
        n=$(metrics_curl -sf --max-time 2 "$COOP_URL/metrics" | awk '/^db_replica_healthy\{/ && $2 == 1 {n++} END {print n + 0}' || echo 0)
        ((n >= want)) && return 0
        sleep 0.2
    done
    log "Coop reports $n of $want replicas healthy after 30 s"
    return 1
}

# replicas_caught_up: both replicas have replayed the primary's current WAL position.
replicas_caught_up() {
    local lsn i p ok
    lsn=$(pq "$PRIMARY_PORT" postgres 'SELECT pg_current_wal_lsn()') || return 1
    for i in $(seq 1 300); do
        ok=1
        for p in "${REPLICA_PORTS[@]}"; do
            [[ "$(pq "$p" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null)" == t ]] || ok=0
        done
        ((ok)) && return 0
        sleep 0.2
    done
    log "replicas did not replay up to $lsn within 60 s"
    return 1
}

# ------------------------------------------------------------- CPU window ----
# cpu_begin / cpu_end LABEL LOAD_SECONDS_FILE: CPU of wrk (or the driver: this
# shell's children), Coop, the primary, the replicas and every other process
# between the two calls. cpu_begin must run right before the load and in this
# shell (it calls `times`).
declare -A C_WRK C_COOP C_PRIM C_REPL C_OTHER J_PRIM J_REPL J_COOP
cpu_begin() {
    # shellcheck disable=SC2046
    snapshot $(tree_pids "$COOP_PID") >"$SCRATCH/coop0"
    pg_snapshot >"$SCRATCH/pg0"
    snapshot_all >"$SCRATCH/all0"
    T0=$(now_secs)
    times >"$SCRATCH/times0"
}
cpu_end() {
    local label=$1 t1 c0 c1 n
    times >"$SCRATCH/times1"
    t1=$(now_secs)
    snapshot_all >"$SCRATCH/all1"
    pg_snapshot >"$SCRATCH/pg1"
    local coop_pids
    coop_pids=$(tree_pids "$COOP_PID")
    # shellcheck disable=SC2086
    snapshot $coop_pids >"$SCRATCH/coop1"
    {
        printf '%s\n' $coop_pids
        for n in "${NODES[@]}"; do node_pids "$n"; done
        db_pids
    } >"$SCRATCH/ours"
    c0=$(children_secs "$SCRATCH/times0"); c1=$(children_secs "$SCRATCH/times1")
    J_PRIM[$label]=$(pg_delta "$SCRATCH/pg0" "$SCRATCH/pg1" primary)
    J_REPL[$label]=$(pg_delta "$SCRATCH/pg0" "$SCRATCH/pg1" replica1 replica2)
    J_COOP[$label]=$(delta "$SCRATCH/coop0" "$SCRATCH/coop1")
    local wall cw cc cp cr co
    wall=$(calc '%.3f' "$t1 - $T0")
    read -r cw cc cp cr co < <(awk \
        -v wall="$wall" -v hz="$CLK_TCK" -v wrk="$(calc '%.3f' "$c1 - $c0")" \
        -v coop="${J_COOP[$label]}" -v prim="${J_PRIM[$label]}" -v repl="${J_REPL[$label]}" \
        -v other="$(delta_except "$SCRATCH/ours" "$SCRATCH/all0" "$SCRATCH/all1")" 'BEGIN {
            printf "%.0f %.0f %.0f %.0f %.0f\n", 100 * wrk / wall, 100 * coop / hz / wall,
                100 * prim / hz / wall, 100 * repl / hz / wall, 100 * other / hz / wall }')
    C_WRK[$label]=$cw; C_COOP[$label]=$cc; C_PRIM[$label]=$cp; C_REPL[$label]=$cr; C_OTHER[$label]=$co
    log "$label: CPU (100% = one CPU): load generator ${C_WRK[$label]}%, Coop ${C_COOP[$label]}%, primary ${C_PRIM[$label]}%, replicas ${C_REPL[$label]}%, other processes ${C_OTHER[$label]}%"
}
# per_req_us JIFFIES REQUESTS: CPU microseconds per request.
per_req_us() {
    ((${2:-0} > 0)) || { printf 'n/a'; return; }
    calc '%.0f' "$1 / $CLK_TCK * 1000000 / $2"
}

# -------------------------------------------------------------------- wrk ----
# wrk_run OUTFILE DURATION: the read load against COOP_URL.
wrk_run() {
    local out=$1 dur=$2
    if ! timeout "$(($(secs "$dur") + 60))" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$dur" --latency \
            -s "$LUA" "$COOP_URL" -- "$IDS" "$COOKIE" >"$out" 2>&1; then
        log "wrk failed; output:"
        cat "$out" >&2
        return 1
    fi
}
# parse_wrk FILE: "rps p50_ms p99_ms socket_errors non2xx requests"
parse_wrk() {
    local out=$1 summary
    if ! summary=$(wrk_summary "$out"); then
        log "could not parse wrk output $out"
        return 1
    fi
    printf '%s %s\n' "$summary" "$(bench_field "$out" requests)"
}

# ---------------------------------------------------------------- phases ----
declare -A R_RPS R_P50 R_P99 R_ERR R_REQ R_WERR R_PRIOR_ERR R_ATTEMPTS R_CRASH R_LOGERR R_LOGWARN R_NOTE
declare -A R_RREP R_RPRI R_FALLBACK R_LAG R_HEALTHY
# On-demand replay checks by outcome (db_replay_checks_total).
declare -A K_CAUGHT K_SHARED K_BEHIND K_FAILED
declare -A Y_LAGMAX Y_UNHEALTHY Y_SAMPLES
declare -A Y_READS Y_WRITES Y_RPS Y_WPS Y_STALE Y_ERR Y_GP50 Y_GP99 Y_GMAX Y_PP50 Y_PP99 Y_JSON

# replica_urls N: the first N replicas' URLs, comma-separated.
replica_urls() {
    local n=$1 i out=()
    for ((i = 0; i < n; i++)); do out+=("${REPLICA_URLS[$i]}"); done
    (IFS=,; echo "${out[*]}")
}

# coop_env N [MODE]: the environment for a Coop reading from N replicas.
coop_env() {
    local n=$1 mode=${2:-}
    ((n > 0)) && echo "COOP_REPLICA_URLS=$(replica_urls "$n")"
    [[ -n "$mode" ]] && echo "COOP_READ_YOUR_WRITES=$mode"
    return 0
}

# after_phase LABEL SLUG: stop Coop, note a crash and logged errors.
after_phase() {
    local label=$1 slug=$2 log_file="$OUT_DIR/coop-$2.log"
    R_CRASH[$label]=0
    stop_coop || R_CRASH[$label]=1
    R_LOGERR[$label]=$(grep -c '"level":"ERROR"' "$log_file" || true)
    # "replica read set changed" at start-up is expected; count the rest.
    R_LOGWARN[$label]=$(grep '"level":"WARN"' "$log_file" | grep -vc 'replica read set changed","replica":"[^"]*","healthy":true' || true)
    if ((R_LOGERR[$label] > 0)); then
        log "$label: Coop logged errors:"
        grep '"level":"ERROR"' "$log_file" | head -n 5 >&2
    fi
}

# disturbed LABEL FILE...: true (and keeps the outputs as .attemptN) when the
# attempt should be repeated because other processes were busy.
disturbed() {
    local label=$1 attempt=${R_ATTEMPTS[$1]} f
    shift
    [[ "${C_OTHER[$label]}" -lt "$QUIET_PCT" ]] && return 1
    ((attempt <= BUSY_RETRIES)) || return 1
    log "$label: other processes used ${C_OTHER[$label]}% of one CPU during the run; repeating the phase"
    R_PRIOR_ERR[$label]=$(( ${R_PRIOR_ERR[$label]:-0} + ${R_ERR[$label]:-0} + ${R_WERR[$label]:-0} ))
    for f in "$@"; do
        [[ -e "$f" ]] && mv "$f" "$f.attempt$attempt"
    done
    return 0
}

# read_phase LABEL SLUG N: the wrk read load, Coop reading from N replicas.
read_phase() {
    local label=$1 slug=$2 n=$3 attempt
    local env_lines
    mapfile -t env_lines < <(coop_env "$n")
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        R_ATTEMPTS[$label]=$attempt
        wait_other_bench "$label"
        log "$label: starting Coop${env_lines[*]:+ with ${env_lines[*]}}"
        start_coop "$OUT_DIR/coop-$slug.log" "${env_lines[@]}" || { stop_coop || true; return 1; }
        wait_replicas_healthy "$n" || { stop_coop || true; return 1; }
        wait_quiet "$label"
        log "$label: warm-up, $WARMUP (not counted)"
        wrk_run "$OUT_DIR/wrk-$slug-warmup.txt" "$WARMUP" || { stop_coop || true; return 1; }
        local w
        w=($(parse_wrk "$OUT_DIR/wrk-$slug-warmup.txt")) || { stop_coop || true; return 1; }
        R_WERR[$label]=$((w[3] + w[4]))
        scrape "$OUT_DIR/metrics-$slug-before.txt" || { stop_coop || true; return 1; }
        log "$label: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency against $COOP_URL"
        cpu_begin
        wrk_run "$OUT_DIR/wrk-$slug.txt" "$DURATION" || { stop_coop || true; return 1; }
        cpu_end "$label"
        scrape "$OUT_DIR/metrics-$slug-after.txt" || { stop_coop || true; return 1; }
        after_phase "$label" "$slug"
        cat "$OUT_DIR/wrk-$slug.txt" >&2
        local r
        r=($(parse_wrk "$OUT_DIR/wrk-$slug.txt")) || return 1
        R_RPS[$label]=${r[0]}; R_P50[$label]=${r[1]}; R_P99[$label]=${r[2]}
        R_ERR[$label]=$((r[3] + r[4])); R_REQ[$label]=${r[5]}
        R_NOTE[$label]=""
        ((R_ERR[$label] > 0)) && R_NOTE[$label]="socket errors ${r[3]}, non-2xx ${r[4]}"
        phase_metrics "$label" "$slug"
        log "$label: ${R_RPS[$label]} requests/s, p50 ${R_P50[$label]} ms, p99 ${R_P99[$label]} ms, errors ${R_ERR[$label]}; reads on replicas ${R_RREP[$label]:-—} of $(( ${R_RREP[$label]:-0} + ${R_RPRI[$label]:-0} ))"
        disturbed "$label" "$OUT_DIR"/wrk-"$slug"*.txt "$OUT_DIR"/metrics-"$slug"-*.txt "$OUT_DIR/coop-$slug.log" || break
    done
}

# phase_metrics LABEL SLUG: db_reads_total deltas, fallbacks, lag and health at the end.
phase_metrics() {
    local label=$1 slug=$2 a="$OUT_DIR/metrics-$2-before.txt" b="$OUT_DIR/metrics-$2-after.txt"
    R_RREP[$label]=$(mdelta "$a" "$b" 'db_reads_total{endpoint="replica"}')
    R_RPRI[$label]=$(mdelta "$a" "$b" 'db_reads_total{endpoint="primary"}')
    R_FALLBACK[$label]=$(mdelta "$a" "$b" 'db_read_your_writes_fallbacks_total')
    # Coop only exports a counter once it has counted something.
    if [[ -z "${R_FALLBACK[$label]}" && -n "${R_RREP[$label]}${R_RPRI[$label]}" ]]; then
        R_FALLBACK[$label]=0
    fi
    # Like the fallbacks, a check outcome that never happened has no series.
    local k
    k=$(mdelta "$a" "$b" 'db_replay_checks_total{outcome="caught_up"}'); K_CAUGHT[$label]=${k:-0}
    k=$(mdelta "$a" "$b" 'db_replay_checks_total{outcome="shared"}'); K_SHARED[$label]=${k:-0}
    k=$(mdelta "$a" "$b" 'db_replay_checks_total{outcome="behind"}'); K_BEHIND[$label]=${k:-0}
    k=$(mdelta "$a" "$b" 'db_replay_checks_total{outcome="failed"}'); K_FAILED[$label]=${k:-0}
    R_LAG[$label]=$(awk '/^db_replica_lag_seconds\{/ {if ($2 + 0 > m) m = $2 + 0; f = 1} END {if (f) printf "%.3f", m}' "$b")
    R_HEALTHY[$label]=$(awk '/^db_replica_healthy\{/ {t++; if ($2 == 1) h++} END {if (t) printf "%d of %d", h, t}' "$b")
}

# lag_sampler FILE: every 0.5 s until killed, "unix_time max_lag_seconds
# healthy_replicas replicas" from Coop's /metrics.
lag_sampler() {
    trap 'exit 0' TERM
    while :; do
        metrics_curl -sf --max-time 1 "$COOP_URL/metrics" 2>/dev/null | awk -v t="$(date +%s.%N)" '
            /^db_replica_lag_seconds\{/ {if ($2 + 0 > m) m = $2 + 0}
            /^db_replica_healthy\{/ {r++; if ($2 == 1) h++}
            END {if (r) printf "%s %.3f %d %d\n", t, m, h, r}' >>"$1" || true
        sleep 0.5
    done
}

# json_get FILE KEY: one field of the driver's JSON output.
json_get() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else (json.dumps(v) if isinstance(v,(dict,list)) else v))' "$1" "$2"; }

# ryw_phase LABEL SLUG MODE TOKEN(1|0): the read-your-writes driver, 2 replicas.
ryw_phase() {
    local label=$1 slug=$2 mode=$3 token=$4 attempt
    local env_lines extra=()
    mapfile -t env_lines < <(coop_env 2 "$mode")
    ((token)) || extra=(--no-token)
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        R_ATTEMPTS[$label]=$attempt
        wait_other_bench "$label"
        log "$label: starting Coop with ${env_lines[*]}"
        start_coop "$OUT_DIR/coop-$slug.log" "${env_lines[@]}" || { stop_coop || true; return 1; }
        wait_replicas_healthy 2 || { stop_coop || true; return 1; }
        wait_quiet "$label"
        log "$label: warm-up, ${RYW_WARMUP}s of the driver (not counted)"
        timeout $((RYW_WARMUP + 150)) python3 "$DRIVER" --base "$COOP_URL" --ids "$IDS" --cookie-file "$COOKIE_FILE" \
            --threads "$RYW_THREADS" --duration "$RYW_WARMUP" --reads "$RYW_READS" --pause "$RYW_PAUSE" \
            "${extra[@]}" >"$OUT_DIR/ryw-$slug-warmup.json" || { log "$label: the driver failed"; stop_coop || true; return 1; }
        R_WERR[$label]=$(json_get "$OUT_DIR/ryw-$slug-warmup.json" errors)
        if ((token)); then
            R_WERR[$label]=$(( R_WERR[$label] + $(json_get "$OUT_DIR/ryw-$slug-warmup.json" stale) ))
        fi
        scrape "$OUT_DIR/metrics-$slug-before.txt" || { stop_coop || true; return 1; }
        log "$label: ryw_driver.py, $RYW_THREADS threads, ${RYW_DURATION}s, PUT + $RYW_READS GETs + ${RYW_PAUSE}s sleep${extra[*]:+ (${extra[*]})}"
        lag_sampler "$OUT_DIR/lag-$slug.txt" &
        local sampler=$!
        PIDS+=("$sampler")
        cpu_begin
        timeout $((RYW_DURATION + 150)) python3 "$DRIVER" --base "$COOP_URL" --ids "$IDS" --cookie-file "$COOKIE_FILE" \
            --threads "$RYW_THREADS" --duration "$RYW_DURATION" --reads "$RYW_READS" --pause "$RYW_PAUSE" \
            "${extra[@]}" >"$OUT_DIR/ryw-$slug.json" || {
            log "$label: the driver failed"; stop_pid "$sampler"; stop_coop || true; return 1; }
        cpu_end "$label"
        stop_pid "$sampler"; forget_pid "$sampler"
        scrape "$OUT_DIR/metrics-$slug-after.txt" || { stop_coop || true; return 1; }
        after_phase "$label" "$slug"
        local lagmax unhealthy samples
        read -r lagmax unhealthy samples < <(awk '
            {n++; if ($2 + 0 > m) m = $2 + 0; if ($3 + 0 < $4 + 0) u++}
            END {printf "%.3f %d %d\n", m, u, n}' "$OUT_DIR/lag-$slug.txt" 2>/dev/null || echo "? ? 0")
        Y_LAGMAX[$label]=$lagmax; Y_UNHEALTHY[$label]=$unhealthy; Y_SAMPLES[$label]=$samples
        local j="$OUT_DIR/ryw-$slug.json"
        cat "$j" >&2
        Y_READS[$label]=$(json_get "$j" reads); Y_WRITES[$label]=$(json_get "$j" writes)
        Y_RPS[$label]=$(json_get "$j" reads_per_s); Y_WPS[$label]=$(json_get "$j" writes_per_s)
        Y_STALE[$label]=$(json_get "$j" stale); Y_ERR[$label]=$(json_get "$j" errors)
        Y_GP50[$label]=$(json_get "$j" get_p50_ms); Y_GP99[$label]=$(json_get "$j" get_p99_ms)
        Y_GMAX[$label]=$(json_get "$j" get_max_ms)
        Y_PP50[$label]=$(json_get "$j" put_p50_ms); Y_PP99[$label]=$(json_get "$j" put_p99_ms)
        R_ERR[$label]=${Y_ERR[$label]}
        R_REQ[$label]=$(( Y_READS[$label] + Y_WRITES[$label] ))
        R_NOTE[$label]=""
        ((Y_ERR[$label] > 0)) && R_NOTE[$label]="driver errors: $(json_get "$j" errors_by_kind) e.g. $(json_get "$j" error_examples)"
        [[ "$(json_get "$j" tokens_missing)" != 0 ]] && R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }$(json_get "$j" tokens_missing) PUT responses without a Coop-Read-After header"
        if ((Y_STALE[$label] > 0)); then
            local example
            example=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stale_examples"][0])' "$j")
            if ((token)); then
                R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }**stale reads with the token**, e.g. $example (more in bench/out/replicas/ryw-$slug.json)"
            else
                R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }${Y_STALE[$label]} stale reads without the token (expected), e.g. $example"
            fi
        fi
        phase_metrics "$label" "$slug"
        log "$label: ${Y_RPS[$label]} reads/s, ${Y_WPS[$label]} writes/s, stale ${Y_STALE[$label]}, errors ${Y_ERR[$label]}, reads on replicas ${R_RREP[$label]:-?} of $(( ${R_RREP[$label]:-0} + ${R_RPRI[$label]:-0} )), fallbacks ${R_FALLBACK[$label]:-?}; replay checks: caught up ${K_CAUGHT[$label]}, shared ${K_SHARED[$label]}, behind ${K_BEHIND[$label]}, failed ${K_FAILED[$label]}"
        disturbed "$label" "$OUT_DIR"/ryw-"$slug"*.json "$OUT_DIR"/metrics-"$slug"-*.txt "$OUT_DIR/coop-$slug.log" || break
    done
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (PostgreSQL runs as the postgres user; wrk may need installing)"
[[ -x "$PG_CLUSTER" ]] || die "missing $PG_CLUSTER"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.txt "$OUT_DIR"/*.log "$OUT_DIR"/*.json "$OUT_DIR"/*.attempt*
SCRATCH=$(mktemp -d /tmp/coop-replicas-bench-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
ensure_tools redis-cli
[[ "$(timeout 10 redis-cli -u "$BENCH_REDIS_URL" PING 2>/dev/null)" == PONG ]] \
    || die "Redis is not reachable at $BENCH_REDIS_URL"

rev=$(source_rev "$REPO_DIR")
extra_env=$(env | grep '^COOP_' | grep -Ev '^COOP_(LISTEN|LOG|DATA_DIR|DATABASE_URL|REDIS_URL|INSTANCE_ID|CACHE|REPLICA_URLS|READ_YOUR_WRITES|METRICS_TOKEN)=' \
    | sort | tr '\n' ' ' | sed 's/ $//' || true)

wait_other_bench "build"
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN as is"
    rev="$rev (SKIP_BUILD=1: the binary may be older than this source)"
else
    log "cargo build --release --features test-knobs --bin coop (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && timeout 3600 cargo build --release --features test-knobs --bin coop) || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"

# The cluster: a block of three free ports from BASE_PORT on.
port=$BASE_PORT
until port_block_free "$port"; do
    port=$((port + 10))
    ((port < BASE_PORT + 1000)) || die "no three free ports from $BASE_PORT on"
done
CLUSTER_DIR="/tmp/coop-replicas-bench.$$"
[[ -e "$CLUSTER_DIR" ]] && die "$CLUSTER_DIR exists"
log "starting a PostgreSQL primary on $port and 2 streaming replicas ($((port + 1)), $((port + 2))) in $CLUSTER_DIR"
cluster_out=$(timeout 300 "$PG_CLUSTER" start "$CLUSTER_DIR" 2 "$port") || die "scripts/pg-cluster.sh start failed"
grep -q '^PRIMARY_URL=' <<<"$cluster_out" || die "scripts/pg-cluster.sh printed no PRIMARY_URL: $cluster_out"
PRIMARY_PORT=$port
REPLICA_PORTS=($((port + 1)) $((port + 2)))
# Its URLs name the database `postgres`; Coop gets coop_bench.
PRIMARY_URL="$(sed -n 's/^PRIMARY_URL=//p' <<<"$cluster_out" | sed 's#/postgres$#/'"$DB"'#')"
IFS=, read -r -a REPLICA_URLS < <(sed -n 's/^REPLICA_URLS=//p' <<<"$cluster_out" | sed 's#/postgres\(,\|$\)#/'"$DB"'\1#g')
((${#REPLICA_URLS[@]} == 2)) || die "expected 2 replica URLs from scripts/pg-cluster.sh, got: $cluster_out"
pq "$PRIMARY_PORT" postgres "CREATE DATABASE $DB" >/dev/null || die "could not create $DB on the primary"
for p in "${REPLICA_PORTS[@]}"; do
    for i in $(seq 1 150); do
        pq "$p" "$DB" 'SELECT 1' >/dev/null 2>&1 && break
        ((i == 150)) && die "database $DB did not appear on the replica on port $p within 30 s"
        sleep 0.2
    done
done
log "database $DB exists on the primary and both replicas"

# Seed through a Coop on the primary alone.
IDS="$OUT_DIR/ids.txt"
COOKIE_FILE="$OUT_DIR/cookie.txt"
log "seeding $(group "$FAMILIES") families through a Coop on the primary"
start_coop "$OUT_DIR/coop-seed.log" || die "Coop did not start (see bench/out/replicas/coop-seed.log)"
seed_started=$(date +%s)
timeout 900 python3 "$BENCH_DIR/seed.py" --base "$COOP_URL" --families "$FAMILIES" \
    --threads "$SEED_THREADS" --ids-out "$IDS" --cookie-out "$COOKIE_FILE" \
    --coop-id-out "$OUT_DIR/coop-id.txt" >&2 || die "seeding failed (log: bench/out/replicas/coop-seed.log)"
SEED_SECS=$(($(date +%s) - seed_started))
COOKIE=$(<"$COOKIE_FILE")
SESSION_KEY=$(printf '%s' "${COOKIE#coop_session=}" | sha256sum | cut -d' ' -f1)
stop_coop || die "Coop exited during seeding (log: bench/out/replicas/coop-seed.log)"
[[ "$(wc -l <"$IDS")" -eq "$FAMILIES" ]] || die "expected $FAMILIES ids in $IDS"
((FAMILIES >= RYW_THREADS)) || die "FAMILIES must be at least RYW_THREADS"
log "VACUUM ANALYZE, then wait until the replicas have replayed everything"
PG_TIMEOUT=600 pq "$PRIMARY_PORT" "$DB" 'VACUUM ANALYZE' >/dev/null || die "VACUUM ANALYZE failed"
pq "$PRIMARY_PORT" "$DB" 'CHECKPOINT' >/dev/null || die "CHECKPOINT failed"
replicas_caught_up || die "the replicas did not catch up"

R0="0 replicas (all reads on the primary)"
R1="1 replica"
R2="2 replicas"
READ_LABELS=("$R0" "$R1" "$R2")
YL="lsn (\`COOP_READ_YOUR_WRITES=lsn\`, the default)"
YS="sticky (\`COOP_READ_YOUR_WRITES=sticky\`)"
YC="control: lsn, token not sent"
RYW_LABELS=("$YL" "$YS")
((CONTROL)) && RYW_LABELS+=("$YC")
FAILED=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

read_phase "$R0" read-0 0 || FAILED+=("$R0")
read_phase "$R1" read-1 1 || FAILED+=("$R1")
read_phase "$R2" read-2 2 || FAILED+=("$R2")
ryw_phase "$YL" ryw-lsn lsn 1 || FAILED+=("$YL")
ryw_phase "$YS" ryw-sticky sticky 1 || FAILED+=("$YS")
if ((CONTROL)); then
    ryw_phase "$YC" ryw-control lsn 0 || FAILED+=("$YC")
fi

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
wrk_version=$(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true)
pg_version=$(pq "$PRIMARY_PORT" postgres 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)
py_version=$(python3 -c 'import platform; print(platform.python_version())')
measured=$(date -u '+%Y-%m-%d %H:%M UTC')
fam=$(group "$FAMILIES")

done_read() { [[ -n "${R_RPS[$1]:-}" ]]; }
done_ryw() { [[ -n "${Y_RPS[$1]:-}" ]]; }
reads_total() { echo $(( ${R_RREP[$1]:-0} + ${R_RPRI[$1]:-0} )); }
replica_share() { # LABEL
    local t; t=$(reads_total "$1")
    if [[ -z "${R_RREP[$1]:-}" && -z "${R_RPRI[$1]:-}" ]]; then printf '0 %% (no replicas configured)'; return; fi
    ((t > 0)) && calc '%.1f %%' "100 * ${R_RREP[$1]:-0} / $t" || printf 'n/a'
}
reads_per_req() { # LABEL
    local t; t=$(reads_total "$1")
    [[ -z "${R_RREP[$1]:-}" && -z "${R_RPRI[$1]:-}" ]] && { printf '—'; return; }
    ((${R_REQ[$1]:-0} > 0)) && calc '%.2f' "$t / ${R_REQ[$1]}" || printf 'n/a'
}
errors_of() { printf '%d' $(( ${R_ERR[$1]:-0} + ${R_WERR[$1]:-0} + ${R_PRIOR_ERR[$1]:-0} )); }

read_row() {
    local l=$1
    if ! done_read "$l"; then
        printf '| %s | failed | — | — | — | — | — | — | — | — |\n' "$l"
        return
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | **%s** | %s | %s |\n' "$l" "${R_RPS[$l]}" "${R_P50[$l]}" \
        "${R_P99[$l]}" "$(errors_of "$l")" "$(replica_share "$l")" "$(reads_per_req "$l")" \
        "$(per_req_us "${J_PRIM[$l]}" "${R_REQ[$l]}")" "$(per_req_us "${J_REPL[$l]}" "${R_REQ[$l]}")" \
        "$(per_req_us "${J_COOP[$l]}" "${R_REQ[$l]}")"
}
ryw_row() {
    local l=$1 fb
    if ! done_ryw "$l"; then
        printf '| %s | failed | — | — | — | — | — | — | — | — | — |\n' "$l"
        return
    fi
    fb=$(reads_total "$l")
    if [[ -n "${R_FALLBACK[$l]:-}" && "$fb" -gt 0 ]]; then
        fb="${R_FALLBACK[$l]} ($(calc '%.1f %%' "100 * ${R_FALLBACK[$l]} / $fb"))"
    else
        fb="${R_FALLBACK[$l]:-missing}"
    fi
    printf '| %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s / %s | %s |\n' "$l" "${Y_RPS[$l]}" "${Y_WPS[$l]}" \
        "${Y_STALE[$l]}" "$(errors_of "$l")" "$(replica_share "$l")" "$fb" "${Y_GP50[$l]}" "${Y_GP99[$l]}" \
        "${Y_PP50[$l]}" "${Y_PP99[$l]}" "$(per_req_us "${J_PRIM[$l]}" "${R_REQ[$l]}")"
}

# token_share LABEL: share of the GETs' database reads (which carry the token)
# served by replicas, assuming every PUT's one session read went to a replica.
token_share() {
    local l=$1 t
    t=$(( 2 * ${Y_READS[$l]:-0} ))
    ((t > 0)) && [[ -n "${R_RREP[$l]:-}" ]] || { printf 'n/a'; return; }
    calc '%.1f %%' "100 * (${R_RREP[$l]} - ${Y_WRITES[$l]}) / $t"
}

checks_total() { echo $(( ${K_CAUGHT[$1]:-0} + ${K_SHARED[$1]:-0} + ${K_BEHIND[$1]:-0} + ${K_FAILED[$1]:-0} )); }
# check_row LABEL: the on-demand replay checks of a read-your-writes run.
check_row() {
    local l=$1 n t
    done_ryw "$l" || { printf '| %s | failed | — | — | — | — | — | — |\n' "$l"; return; }
    n=$(checks_total "$l")
    t=$(( 2 * ${Y_READS[$l]:-0} ))
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$l" "$n" "${K_CAUGHT[$l]}" "${K_SHARED[$l]}" \
        "${K_BEHIND[$l]}" "${K_FAILED[$l]}" "$( ((${Y_WRITES[$l]:-0} > 0)) && calc '%.2f' "$n / ${Y_WRITES[$l]}" || printf 'n/a')" \
        "$( ((t > 0)) && calc '%.2f' "$n / $t" || printf 'n/a')"
}

# The interpretation, from the numbers.
interpretation() {
    if done_read "$R0" && done_read "$R2"; then
        local g p0 p2
        g=$(calc '%+.0f' "100 * (${R_RPS[$R2]} / ${R_RPS[$R0]} - 1)")
        p0=$(per_req_us "${J_PRIM[$R0]}" "${R_REQ[$R0]}"); p2=$(per_req_us "${J_PRIM[$R2]}" "${R_REQ[$R2]}")
        local verdict
        verdict=$(awk -v g="$g" 'BEGIN { print (g > -10 && g < 10) ? "no real change: within the run-to-run noise of up to ~10 %" : (g >= 10) ? "more, even on this machine" : "fewer" }')
        echo "- Throughput: ${R_RPS[$R0]} requests/s with every read on the primary, ${R_RPS[$R2]} with two"
        echo "  replicas (${g} %, $verdict)$(done_read "$R1" && echo "; ${R_RPS[$R1]} with one")."
        echo "  On $NCPU CPUs the replicas are not extra hardware: wrk, Coop and all three PostgreSQL servers"
        echo "  share the same cores, so moving reads to a replica moves the work rather than adding capacity."
        echo "  The CPU table shows where it went: Coop ${C_COOP[$R0]}% → ${C_COOP[$R2]}%, primary"
        echo "  ${C_PRIM[$R0]}% → ${C_PRIM[$R2]}%, replicas ${C_REPL[$R0]}% → ${C_REPL[$R2]}%, wrk ${C_WRK[$R0]}% → ${C_WRK[$R2]}%"
        echo "  (of the $((NCPU * 100))% there is). Coop itself, at about $(per_req_us "${J_COOP[$R0]}" "${R_REQ[$R0]}") µs of CPU per request, is the"
        local r2us moves
        r2us=$(per_req_us "${J_REPL[$R2]}" "${R_REQ[$R2]}")
        moves=$(awk -v r="$r2us" -v p="$p0" 'BEGIN { print (p + 0 > 0 && r + 0 >= 0.8 * p) ? "; the cost of a read moves, it does not shrink" : "" }')
        echo "  largest consumer. The two replicas together spent $r2us µs of CPU per request, where the primary"
        echo "  alone spent $p0 µs without replicas$moves."
        if done_read "$R1"; then
            local r1us
            r1us=$(per_req_us "${J_REPL[$R1]}" "${R_REQ[$R1]}")
            if awk -v a="$r2us" -v b="$r1us" 'BEGIN { exit !(b + 0 > 0 && a + 0 > 1.1 * b) }'; then
                echo "  With one replica it spent $r1us µs per request: splitting the reads over two servers gives"
                echo "  each its own backends (Coop keeps a pool per replica) and its own buffer cache to keep warm, on the"
                echo "  same two cores, so on one machine a second replica can cost more than it brings."
            else
                echo "  With one replica it spent $r1us µs per request."
            fi
        fi
        echo "- Primary CPU per request: $p0 µs with no replicas, $p2 µs with two"
        if [[ "$p0" != n/a && "$p2" != n/a && "$p0" -gt 0 ]]; then
            echo "  ($(calc '%.0f' "100 * (1 - $p2 / $p0)") % less): that is the capacity the primary gets back for writes,"
            echo "  and what would turn into throughput on machines where the replicas have their own CPUs."
            echo "  What the primary still spends with two replicas is its WAL senders, background processes and"
            echo "  Coop's replica monitor (pg_current_wal_lsn() every 75 ms), not reads ($(replica_share "$R2") of"
            echo "  the reads went to the replicas)."
        fi
    fi
    if done_ryw "$YL" && done_ryw "$YS"; then
        echo "- Read-your-writes: $(( ${Y_STALE[$YL]} + ${Y_STALE[$YS]} )) stale reads with the token in either mode"
        if ((CONTROL)) && done_ryw "$YC"; then
            echo "  (the control run without the token saw ${Y_STALE[$YC]} stale reads out of ${Y_READS[$YC]}, so the check"
            echo "  does catch stale reads when nothing prevents them)."
        else
            echo "  (no control run)."
        fi
        echo "  With \`lsn\`, $(replica_share "$YL") of the reads went to replicas, against $(replica_share "$YS") with \`sticky\`."
        echo "  Counting only the reads that carried a token (2 per GET: session and family; assuming each PUT's"
        echo "  one session read, which carries no token, went to a replica), replicas served $(token_share "$YL") of them"
        echo "  with \`lsn\` and $(token_share "$YS") with \`sticky\`."
        echo "  A GET right after a PUT nearly always comes before Coop's monitor (polling every 75 ms) has seen a"
        echo "  replica replay the write; with \`lsn\` Coop then asks one replica how far it has replayed"
        echo "  ($(checks_total "$YL") checks: ${K_CAUGHT[$YL]} caught up, ${K_SHARED[$YL]} answered by a concurrent check of the"
        echo "  same replica, ${K_BEHIND[$YL]} behind, ${K_FAILED[$YL]} with no answer within 25 ms), and only a check that is behind"
        echo "  or fails sends the read to the primary. \`sticky\` sends every read with a token younger than"
        echo "  COOP_MAX_REPLICA_LAG (5 s) to the primary, so here every read with a token is a fallback; reads"
        echo "  still on replicas in that mode are the PUTs' own session lookups, which carry no token."
        echo "  GET p50/p99: ${Y_GP50[$YL]} / ${Y_GP99[$YL]} ms (lsn) vs ${Y_GP50[$YS]} / ${Y_GP99[$YS]} ms (sticky);"
        echo "  the Python driver itself (one process, GIL) limits the request rate and adds to the latency."
    fi
}

section="$SCRATCH/section.md"
{
    echo "## Read replicas (cache off)"
    echo
    echo "Measured $measured with \`bench/replicas.sh\`, commit $rev."
    echo
    echo "### Read throughput by number of replicas Coop reads from"
    echo
    echo "| Coop reads from | requests/s | p50 ms | p99 ms | errors | reads on replicas | database reads per request | primary CPU µs / request | replicas CPU µs / request | Coop CPU µs / request |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${READ_LABELS[@]}"; do read_row "$l"; done
    echo
    echo "One Coop (\`COOP_CACHE=off\`), \`wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/get_family.lua\` after"
    echo "$WARMUP of warm-up: \`GET /api/v1/families/{id}\` with the coordinator's session cookie and a random id"
    echo "out of $fam, so each request reads the session and the family. The cluster has a primary and two"
    echo "streaming replicas throughout; the rows differ in \`COOP_REPLICA_URLS\` (none, the first, both) and"
    echo "Coop is restarted between them. Errors: socket errors plus non-2xx (measured run and warm-up)."
    echo "Reads on replicas: \`db_reads_total{endpoint=\"replica\"}\` / all \`db_reads_total\` over the"
    echo "measured run (session and family reads both count; without replicas Coop has no such counter and"
    echo "every read is on the primary). CPU per request: user + system CPU time of the server's"
    echo "postmaster and all its children (backends, WAL senders/receivers, background processes;"
    echo "/proc/PID/stat utime+stime+cutime+cstime) over the measured run, divided by wrk's requests."
    echo
    echo "CPU during each measured run, in % of one CPU ($NCPU CPUs = $((NCPU * 100))%); the load generator is wrk"
    echo "for the read runs and bench/ryw_driver.py for the read-your-writes runs below; \"other\" is every"
    echo "other user-space process and should be near 0:"
    echo
    echo "| Run | load generator | Coop | primary | replicas (both) | other |"
    echo "|---|---:|---:|---:|---:|---:|"
    for l in "${READ_LABELS[@]}" "${RYW_LABELS[@]}"; do
        [[ -n "${C_WRK[$l]:-}" ]] || continue
        printf '| %s | %s%% | %s%% | %s%% | %s%% | %s%% |\n' "$l" "${C_WRK[$l]}" "${C_COOP[$l]}" \
            "${C_PRIM[$l]}" "${C_REPL[$l]}" "${C_OTHER[$l]}"
    done
    echo
    echo "### Read-your-writes: WAL position (lsn) vs sticky primary, 2 replicas"
    echo
    echo "| Mode | reads/s | writes/s | stale reads | errors | reads on replicas | read-your-writes fallbacks (% of reads) | GET p50 ms | GET p99 ms | PUT p50 / p99 ms | primary CPU µs / request |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${RYW_LABELS[@]}"; do ryw_row "$l"; done
    echo
    echo "\`bench/ryw_driver.py\` ($RYW_THREADS threads, one keep-alive connection each, ${RYW_DURATION} s after ${RYW_WARMUP} s of warm-up):"
    echo "each thread owns one family and loops: \`PUT /api/v1/families/{id}\` with a new name, then"
    echo "$RYW_READS \`GET\`s of it sending the PUT's \`Coop-Read-After\` token back as a header (with the session"
    echo "cookie), each checked for the name just written (stale reads), then ${RYW_PAUSE} s of sleep. Reads on"
    echo "replicas and fallbacks (\`db_read_your_writes_fallbacks_total\`) are Coop's counters over the"
    echo "measured run; they count database reads, i.e. the session and the family of each GET and the"
    echo "session of each PUT. Latencies are the driver's, per request. CPU per request: per HTTP"
    echo "request (reads + writes)."
    echo "On-demand replay checks (\`db_replay_checks_total\` by outcome, over the measured run): a read"
    echo "whose token no healthy replica is known to have replayed, by the monitor's last poll, asks one of them"
    echo "(round robin) for \`pg_last_wal_replay_lsn()\`, 25 ms at most; concurrent checks of one replica"
    echo "wait for each other, and one that, when its turn comes, finds a position far enough already stored"
    echo "by another counts as shared (no query of its own). Reads with a token: 2 per GET (session and family)."
    echo
    echo "| Mode | checks | caught up | shared | behind | failed (no answer in 25 ms) | checks per write | checks per read with a token |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${RYW_LABELS[@]}"; do check_row "$l"; done
    echo
    echo "Replica lag as Coop saw it (\`db_replica_lag_seconds\`, max over both replicas, sampled every 0.5 s"
    echo "during the measured run):"
    echo
    for l in "${RYW_LABELS[@]}"; do
        [[ -n "${Y_SAMPLES[$l]:-}" ]] || continue
        echo "$l: max ${Y_LAGMAX[$l]} s over ${Y_SAMPLES[$l]} samples; samples with a replica out of the read set: ${Y_UNHEALTHY[$l]}."
    done | sed 's/^/- /'
    echo
    echo "### What it shows"
    echo
    interpretation
    notes=()
    for l in "${READ_LABELS[@]}" "${RYW_LABELS[@]}"; do
        [[ -n "${R_NOTE[$l]:-}" ]] && notes+=("- $l: ${R_NOTE[$l]}")
        [[ "${R_WERR[$l]:-0}" -gt 0 ]] && notes+=("- $l: ${R_WERR[$l]} errors or stale reads during the warm-up")
        [[ "${R_PRIOR_ERR[$l]:-0}" -gt 0 ]] && notes+=("- $l: ${R_PRIOR_ERR[$l]} errors in earlier, repeated attempts (bench/out/replicas/*.attempt*)")
        [[ "${C_WAITED[$l]:-0}" -gt 0 ]] && notes+=("- $l: waited ${C_WAITED[$l]} s for other processes to go quiet")
        [[ "${R_ATTEMPTS[$l]:-1}" -gt 1 ]] && notes+=("- $l: attempt ${R_ATTEMPTS[$l]}; earlier attempts were repeated because other processes were busy")
        [[ -n "${C_OTHER[$l]:-}" && "${C_OTHER[$l]}" -ge "$QUIET_PCT" ]] \
            && notes+=("- $l: other processes used ${C_OTHER[$l]}% of one CPU during the run, so it is understated")
        [[ "${R_CRASH[$l]:-0}" == 1 ]] && notes+=("- $l: Coop exited during the phase")
        [[ "${R_LOGERR[$l]:-0}" -gt 0 ]] && notes+=("- $l: Coop logged ${R_LOGERR[$l]} ERROR lines (bench/out/replicas/)")
        [[ "${R_LOGWARN[$l]:-0}" -gt 0 ]] && notes+=("- $l: Coop logged ${R_LOGWARN[$l]} WARN lines besides the replicas joining the read set (bench/out/replicas/)")
        if [[ "$l" != "$R0" ]] && { done_read "$l" || done_ryw "$l"; } && [[ -z "${R_RREP[$l]:-}${R_RPRI[$l]:-}" ]]; then
            notes+=("- $l: \`db_reads_total\` missing from /metrics")
        fi
        if [[ "$l" != "$R0" ]] && { done_read "$l" || done_ryw "$l"; } && [[ -z "${R_LAG[$l]:-}" ]]; then
            notes+=("- $l: \`db_replica_lag_seconds\` missing from /metrics")
        fi
    done
    ((${#FAILED[@]})) && notes+=("- Failed to run: ${FAILED[*]} (see bench/out/replicas/).")
    if ((${#notes[@]})); then
        echo
        echo "Notes:"
        echo
        printf '%s\n' "${notes[@]}"
    fi
    echo
    echo "Settings:"
    echo
    echo "- Command: \`bench/replicas.sh\` (DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS FAMILIES=$FAMILIES"
    echo "  RYW_THREADS=$RYW_THREADS RYW_DURATION=$RYW_DURATION RYW_READS=$RYW_READS RYW_PAUSE=$RYW_PAUSE)"
    echo "- Cluster: \`scripts/pg-cluster.sh start DIR 2 $PRIMARY_PORT\`, PostgreSQL ${pg_version:-?} (fsync off, streaming"
    echo "  replication, hot_standby_feedback on), database \`$DB\` seeded with $fam families through Coop"
    echo "  (bench/seed.py, $SEED_THREADS connections, ${SEED_SECS}s), then \`VACUUM ANALYZE\` and \`CHECKPOINT\`"
    echo "- Coop: release build of $rev; \`coop serve\` with \`COOP_CACHE=off\`, \`COOP_DATABASE_URL\` (primary),"
    echo "  \`COOP_REPLICA_URLS\` per row, \`COOP_REDIS_URL=$BENCH_REDIS_URL COOP_LOG=json RUST_LOG=warn\`${extra_env:+ $extra_env}, other settings at their defaults"
    echo "- Machine: $NCPU CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r); the load generator,"
    echo "  Coop and the three PostgreSQL servers share these CPUs; load average before the phases: $LOAD_BEFORE"
    echo "- wrk ${wrk_version:-?}, Python $py_version"
} >"$section"

results_put_section "$RESULTS" bench/replicas.sh "$section"
echo
cat "$section"
echo

status=0
for l in "${READ_LABELS[@]}" "${RYW_LABELS[@]}"; do
    if ! done_read "$l" && ! done_ryw "$l"; then
        log "FAIL: $l did not complete"
        status=1
        continue
    fi
    if [[ "$(errors_of "$l")" -gt 0 ]]; then
        log "FAIL: $l had $(errors_of "$l") errors (measured, warm-up and repeated attempts)"
        status=1
    fi
    if [[ "${R_CRASH[$l]:-0}" == 1 ]]; then
        log "FAIL: $l: Coop exited during the phase"
        status=1
    fi
    if [[ "$l" != "$YC" ]] && done_ryw "$l" && ((Y_STALE[$l] > 0)); then
        log "FAIL: $l: ${Y_STALE[$l]} stale reads"
        status=1
    fi
done
exit "$status"
