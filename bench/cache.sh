#!/usr/bin/env bash
# Coop cache benchmark: two Coop instances on one PostgreSQL database and one
# Redis, read with GET /api/v1/families/{id} where the ids follow a Zipf
# distribution, with the two-tier read cache on, then off, next to nginx serving
# a static file (the ceiling). Everything runs on 127.0.0.1. Results: a section
# of bench/RESULTS.md (the other sections are kept).
#
#   bench/cache.sh
#
# One run:
#   1. build (cargo build --release --bin coop), create a fresh PostgreSQL
#      database coop_cache_bench_<random>;
#   2. start instances a and b (`coop serve`), seed FAMILIES families through
#      instance a (bench/seed.py), stop them, VACUUM ANALYZE;
#   3. phases, each with the Redis keys coop:cache:* deleted first (SCAN + DEL)
#      and freshly started instances, so every cache starts cold:
#        (a) cache on (the default), (b) COOP_CACHE=off on both instances,
#        (c) nginx serving a static JSON file, the same two-wrk load;
#      each phase: WARMUP of the load (not counted), then the measured run with
#      two wrk processes at the same time (one per instance, CONNS_PER_WRK
#      connections each, bench/zipf_family.lua); /metrics of both instances and
#      pg_stat_database.xact_commit are read before and after it (the latter
#      PG_STATS_WAIT seconds after the load stopped, see below);
#   4. the results table goes into bench/RESULTS.md; the database is dropped.
#
# Environment (all optional):
#   DURATION=15s        measured wrk run per phase (a bare number means seconds)
#   WARMUP=3s           load before each measured run, not counted
#   PREWARM=1           before a Coop phase's warm-up, read every id once through
#                       each instance (steady state); 0: start from cold caches
#   PREWARM_FOR=20s     how long that sweep runs per instance
#   CONNS_PER_WRK=32    connections of each of the two wrk processes
#   FAMILIES=100000     families seeded
#   ZIPF_S=1.0          Zipf exponent: the id on line k of the id file is asked
#                       for with probability proportional to 1/k^ZIPF_S
#   SEED_THREADS=8      parallel keep-alive connections used for seeding
#   CARGO_TARGET_DIR    where `cargo build --release` puts the binary
#   SKIP_BUILD=1        use the existing release binary instead of building
#   BENCH_RESULTS=FILE  write the results there instead of bench/RESULTS.md
#   COOP_*              other Coop settings pass through to every instance and are
#                       listed in the results (COOP_CACHE is set by the phases)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_REDIS_URL=redis://127.0.0.1:6379         local Redis
#   QUIET_PCT=25        before each phase, wait until other processes use less
#                       than this % of one CPU; a phase they disturbed that much
#                       is repeated from the start (cold caches again)
#   QUIET_WAIT=600      most seconds spent waiting for quiet, over the whole script
#   BUSY_RETRIES=2      most repeats of a disturbed phase (the last one is reported)
#   PG_STATS_WAIT=11    seconds of idleness before each pg_stat_database reading:
#                       PostgreSQL 15 backends report their counters at most once
#                       a second while busy, and the rest only after 10 s idle
#                       (PGSTAT_IDLE_INTERVAL), so a shorter wait would move up to
#                       a second of warm-up transactions into the measured run
#                       and leave the last second of it out
#
# Needs root (installs the Debian packages wrk and nginx-light/nginx if missing),
# python3 (stdlib only), curl, psql, redis-cli and a running PostgreSQL and Redis.
# Note: deleting coop:cache:* affects every Coop that uses this Redis (it only
# costs them cache misses); the keys of the last phase are left to expire (L2
# TTL) rather than deleted at the end, for the same reason. Exits non-zero if any phase failed or saw errors
# (socket errors, non-2xx responses, a non-200 counted by Coop, a crash).

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/cache"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
LUA="$BENCH_DIR/zipf_family.lua"
STATS="$BENCH_DIR/cache_stats.py"

DURATION="${DURATION:-15s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
WARMUP="${WARMUP:-3s}"
PREWARM="${PREWARM:-1}"
PREWARM_FOR="${PREWARM_FOR:-20s}"
[[ "$WARMUP" =~ ^[0-9]+$ ]] && WARMUP="${WARMUP}s"
CONNS_PER_WRK="${CONNS_PER_WRK:-32}"
FAMILIES="${FAMILIES:-100000}"
ZIPF_S="${ZIPF_S:-1.0}"
SEED_THREADS="${SEED_THREADS:-8}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
CACHE_PATTERN='coop:cache:*'
BUSY_RETRIES="${BUSY_RETRIES:-2}"
PG_STATS_WAIT="${PG_STATS_WAIT:-11}"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- cleanup ----
PG_DB=""

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n "$PG_DB" ]]; then
        PGCONNECT_TIMEOUT=5 timeout 60 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 \
            && log "dropped database $PG_DB" \
            || log "WARNING: could not drop database $PG_DB"
    fi
    local d
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers ----

pg() { # psql against the maintenance database, bounded
    PGCONNECT_TIMEOUT=5 timeout "${PG_TIMEOUT:-60}" psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" \
        -d postgres -qAt -v ON_ERROR_STOP=1 "$@"
}

redis() { timeout 60 redis-cli -u "$BENCH_REDIS_URL" "$@"; }

# flush_cache_keys: delete every key matching coop:cache:* (SCAN, then DEL in
# batches; never FLUSHALL); prints how many there were.
flush_cache_keys() {
    local keys="$SCRATCH/cache-keys"
    redis --scan --pattern "$CACHE_PATTERN" >"$keys" || return 1
    if [[ -s "$keys" ]]; then
        timeout 120 xargs -r -d '\n' -n 500 redis-cli -u "$BENCH_REDIS_URL" DEL <"$keys" >/dev/null || return 1
    fi
    wc -l <"$keys"
}

pg_xact() { pg -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$PG_DB'"; }

# ------------------------------------------------------------------- coop ----
declare -A COOP_PID COOP_URL
INSTANCES=(a b)

# start_coop NAME LOGFILE ENV...: start `coop serve` as instance NAME; waits for
# GET /ready = 200 (60 s at most).
start_coop() {
    local name=$1 logfile=$2 port pid
    shift 2
    port=$(free_port)
    # shellcheck disable=SC2046
    env -u COOP_CACHE -u COOP_DATA_DIR -u COOP_LISTEN -u COOP_INSTANCE_ID \
        "$@" COOP_LISTEN="127.0.0.1:$port" \
        COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_DB" \
        COOP_REDIS_URL="$BENCH_REDIS_URL" COOP_LOG=json RUST_LOG=warn COOP_INSTANCE_ID="$name" \
        "$COOP_BIN" serve >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    COOP_PID[$name]=$pid
    COOP_URL[$name]="http://127.0.0.1:$port"
    wait_http "http://127.0.0.1:$port/ready" "$pid" "$logfile"
}

# start_coops SLUG ENV...: instances a then b (one after the other, so only
# one of them applies migrations to a fresh database).
start_coops() {
    local slug=$1 name
    shift
    for name in "${INSTANCES[@]}"; do
        log "starting instance $name (log: ${OUT_DIR#"$REPO_DIR"/}/coop-$slug-$name.log)${*:+ with $*}"
        start_coop "$name" "$OUT_DIR/coop-$slug-$name.log" "$@" || return 1
    done
}

# stop_coops: stop both instances; false if one had already exited.
stop_coops() {
    local name pid ok=0
    for name in "${INSTANCES[@]}"; do
        pid=${COOP_PID[$name]:-}
        [[ -n "$pid" ]] || continue
        if ! kill -0 "$pid" 2>/dev/null; then
            log "instance $name (pid $pid) had exited before it was stopped"
            ok=1
        fi
        stop_pid "$pid"
        forget_pid "$pid"
        COOP_PID[$name]=""
    done
    return "$ok"
}

scrape() { # NAME FILE
    metrics_curl -sf --max-time 5 -o "$2" "${COOP_URL[$1]}/metrics" || {
        log "could not read ${COOP_URL[$1]}/metrics"
        return 1
    }
}

# ------------------------------------------------------------------- load ----
# run_pair PREFIX DURATION SEED URL_A URL_B IDS COOKIE: two wrk processes at the
# same time, one per URL; outputs PREFIX-1.txt and PREFIX-2.txt.
run_pair() {
    local prefix=$1 dur=$2 seed=$3 url_a=$4 url_b=$5 ids=$6 cookie=$7
    local limit pa pb ra=0 rb=0
    limit=$(($(secs "$dur") + 30))
    timeout "$limit" wrk -t1 -c"$CONNS_PER_WRK" -d"$dur" --latency -s "$LUA" "$url_a" \
        -- "$ids" "$cookie" "$seed" "$ZIPF_S" >"$prefix-1.txt" 2>&1 &
    pa=$!
    PIDS+=("$pa")
    timeout "$limit" wrk -t1 -c"$CONNS_PER_WRK" -d"$dur" --latency -s "$LUA" "$url_b" \
        -- "$ids" "$cookie" "$((seed + 1))" "$ZIPF_S" >"$prefix-2.txt" 2>&1 &
    pb=$!
    PIDS+=("$pb")
    wait "$pa" || ra=$?
    wait "$pb" || rb=$?
    forget_pid "$pa"
    forget_pid "$pb"
    if ((ra || rb)); then
        log "wrk failed (exit $ra / $rb); output:"
        cat "$prefix-1.txt" "$prefix-2.txt" >&2
        return 1
    fi
}

# prewarm URL IDS COOKIE: wrk walks the id list in order for PREWARM_FOR.
prewarm() {
    local url=$1 ids=$2 cookie=$3
    timeout $(($(secs "$PREWARM_FOR") + 30)) wrk -t1 -c8 -d"$PREWARM_FOR" \
        -s "$BENCH_DIR/sweep_family.lua" "$url" -- "$ids" "$cookie" >>"$OUT_DIR/wrk-prewarm.txt" 2>&1 \
        || { log "pre-warm of $url failed"; return 1; }
}

# parse_wrk FILE: "rps p50_ms p99_ms socket_errors non2xx requests distinct rank1 p999_ms max_ms"
parse_wrk() {
    local out=$1 summary p999 max
    if ! summary=$(wrk_summary "$out"); then
        log "could not parse wrk output $out"
        return 1
    fi
    p999=$(calc '%.2f' "$(bench_field "$out" p999_us) / 1000")
    max=$(calc '%.1f' "$(bench_field "$out" max_us) / 1000")
    printf '%s %s %s %s %s %s %s\n' "$summary" "$(bench_field "$out" requests)" \
        "$(bench_field "$out" distinct_ranks)" "$(bench_field "$out" rank1)" "$p999" "$max"
}

# Results per phase label.
declare -A R_RPS R_P50A R_P50B R_P99A R_P99B R_ERR R_REQ R_NOTE R_WREQ R_WERR R_PRIOR_ERR R_XACT
declare -A R_DISTINCT R_RANK1 R_ATTEMPTS R_LOGERR R_LOGWARN R_CRASH R_P999 R_MAX
declare -A C_WRK C_SRV C_DB C_OTHER
declare -A M # "LABEL|key" -> metric delta (cache_stats.py delta)

# measure LABEL SLUG URL_A URL_B IDS COOKIE COOP(0|1) SERVER_PID...: quiet
# wait, warm-up, then the measured run with CPU accounting; Coop metrics and
# PostgreSQL's counter before and after when COOP=1.
measure() {
    local label=$1 slug=$2 url_a=$3 url_b=$4 ids=$5 cookie=$6 coop=$7
    shift 7
    local server_roots=("$@") srv_pids db p
    wait_quiet "$label"
    if ((coop && PREWARM)); then
        # Steady state: every family read once through each instance, so the
        # measured run sees a warm cache rather than compulsory first misses.
        log "$label: pre-warm, every id through each instance ($PREWARM_FOR each, not counted)"
        prewarm "$url_a" "$ids" "$cookie" || return 1
        prewarm "$url_b" "$ids" "$cookie" || return 1
    fi
    log "$label: warm-up, $WARMUP (not counted)"
    run_pair "$OUT_DIR/wrk-$slug-warmup" "$WARMUP" 101 "$url_a" "$url_b" "$ids" "$cookie" || return 1
    local w1 w2
    w1=($(parse_wrk "$OUT_DIR/wrk-$slug-warmup-1.txt")) || return 1
    w2=($(parse_wrk "$OUT_DIR/wrk-$slug-warmup-2.txt")) || return 1
    R_WREQ[$label]=$((w1[5] + w2[5]))
    R_WERR[$label]=$((w1[3] + w1[4] + w2[3] + w2[4]))
    local x0=0 x1=0
    if ((coop)); then
        log "$label: ${PG_STATS_WAIT}s idle, so PostgreSQL's counters include the whole warm-up"
        sleep "$PG_STATS_WAIT"
        scrape a "$OUT_DIR/metrics-$slug-a-before.txt" || return 1
        scrape b "$OUT_DIR/metrics-$slug-b-before.txt" || return 1
        x0=$(pg_xact) || return 1
    fi

    log "$label: two wrk -t1 -c$CONNS_PER_WRK -d$DURATION --latency, against $url_a and $url_b"
    srv_pids=$(for p in "${server_roots[@]}"; do tree_pids "$p"; done)
    db=$(db_pids)
    # shellcheck disable=SC2086
    snapshot $srv_pids >"$SCRATCH/srv0"
    # shellcheck disable=SC2086
    snapshot $db >"$SCRATCH/db0"
    local t0 t1 c0 c1
    times >"$SCRATCH/times0"
    snapshot_all >"$SCRATCH/all0"
    t0=$(now_secs)
    run_pair "$OUT_DIR/wrk-$slug" "$DURATION" 1 "$url_a" "$url_b" "$ids" "$cookie" || return 1
    t1=$(now_secs)
    snapshot_all >"$SCRATCH/all1"
    times >"$SCRATCH/times1"
    c0=$(children_secs "$SCRATCH/times0"); c1=$(children_secs "$SCRATCH/times1")
    srv_pids=$(for p in "${server_roots[@]}"; do tree_pids "$p"; done)
    db=$(db_pids)
    # shellcheck disable=SC2086
    snapshot $srv_pids >"$SCRATCH/srv1"
    # shellcheck disable=SC2086
    snapshot $db >"$SCRATCH/db1"
    # shellcheck disable=SC2086
    printf '%s\n' $srv_pids $db >"$SCRATCH/ours"
    local cw cs cd co
    read -r cw cs cd co < <(awk \
        -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v hz="$CLK_TCK" \
        -v wrk="$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" \
        -v srv="$(delta "$SCRATCH/srv0" "$SCRATCH/srv1")" -v db="$(delta "$SCRATCH/db0" "$SCRATCH/db1")" \
        -v other="$(delta_except "$SCRATCH/ours" "$SCRATCH/all0" "$SCRATCH/all1")" 'BEGIN {
            printf "%.0f %.0f %.0f %.0f\n", 100 * wrk / wall, 100 * srv / hz / wall,
                100 * db / hz / wall, 100 * other / hz / wall }')
    C_WRK[$label]=$cw; C_SRV[$label]=$cs; C_DB[$label]=$cd; C_OTHER[$label]=$co
    log "$label: CPU (100% = one CPU): wrk $cw%, servers $cs%, PostgreSQL+Redis $cd%, other processes $co%"

    if ((coop)); then
        scrape a "$OUT_DIR/metrics-$slug-a-after.txt" || return 1
        scrape b "$OUT_DIR/metrics-$slug-b-after.txt" || return 1
        log "$label: ${PG_STATS_WAIT}s idle, so PostgreSQL's counters include the whole run"
        sleep "$PG_STATS_WAIT"
        x1=$(pg_xact) || return 1
        R_XACT[$label]=$((x1 - x0))
        local line
        while IFS= read -r line; do
            # Split at the last "=": series names in the keys may hold "=".
            M["$label|${line%=*}"]=${line##*=}
        done < <(python3 "$STATS" delta \
            "$OUT_DIR/metrics-$slug-a-before.txt" "$OUT_DIR/metrics-$slug-a-after.txt" \
            "$OUT_DIR/metrics-$slug-b-before.txt" "$OUT_DIR/metrics-$slug-b-after.txt")
    fi

    local r1 r2
    cat "$OUT_DIR/wrk-$slug-1.txt" "$OUT_DIR/wrk-$slug-2.txt" >&2
    r1=($(parse_wrk "$OUT_DIR/wrk-$slug-1.txt")) || return 1
    r2=($(parse_wrk "$OUT_DIR/wrk-$slug-2.txt")) || return 1
    R_RPS[$label]=$((r1[0] + r2[0]))
    R_P50A[$label]=${r1[1]}; R_P50B[$label]=${r2[1]}
    R_P99A[$label]=${r1[2]}; R_P99B[$label]=${r2[2]}
    R_ERR[$label]=$((r1[3] + r1[4] + r2[3] + r2[4]))
    R_REQ[$label]=$((r1[5] + r2[5]))
    R_DISTINCT[$label]="${r1[6]} / ${r2[6]}"
    R_RANK1[$label]=$((r1[7] + r2[7]))
    R_P999[$label]="${r1[8]} / ${r2[8]}"
    R_MAX[$label]="${r1[9]} / ${r2[9]}"
    R_NOTE[$label]=""
    if ((R_ERR[$label] > 0)); then
        R_NOTE[$label]="socket errors ${r1[3]} + ${r2[3]}, non-2xx ${r1[4]} + ${r2[4]} (wrk 1 + wrk 2)"
    fi
    log "$label: ${R_RPS[$label]} requests/s; p99 ${r1[2]} / ${r2[2]} ms; errors ${R_ERR[$label]}"
}

# attempt_done LABEL OUTPUT_GLOB...: true when the attempt stands (quiet enough
# or out of retries); otherwise keeps its outputs as .attemptN and its errors.
attempt_done() {
    local label=$1 attempt=${R_ATTEMPTS[$1]} f
    shift
    [[ "${C_OTHER[$label]}" -lt "$QUIET_PCT" ]] && return 0
    ((attempt <= BUSY_RETRIES)) || return 0
    log "$label: other processes used ${C_OTHER[$label]}% of one CPU during the run; repeating the phase"
    R_PRIOR_ERR[$label]=$(( ${R_PRIOR_ERR[$label]:-0} + R_ERR[$label] + R_WERR[$label] ))
    for f in "$@"; do
        [[ -e "$f" ]] && mv "$f" "$f.attempt$attempt"
    done
    return 1
}

# run_coop_phase LABEL SLUG ENV...: cold caches, both instances, measure.
run_coop_phase() {
    local label=$1 slug=$2 attempt n
    shift 2
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        R_ATTEMPTS[$label]=$attempt
        n=$(flush_cache_keys) || { log "$label: could not delete $CACHE_PATTERN"; return 1; }
        log "$label: deleted $n Redis keys matching $CACHE_PATTERN"
        if ! start_coops "$slug" "$@"; then
            stop_coops || true
            return 1
        fi
        if ! measure "$label" "$slug" "${COOP_URL[a]}" "${COOP_URL[b]}" "$IDS" "$COOKIE" 1 \
                "${COOP_PID[a]}" "${COOP_PID[b]}"; then
            stop_coops || true
            return 1
        fi
        R_CRASH[$label]=0
        stop_coops || R_CRASH[$label]=1
        R_LOGERR[$label]=$(cat "$OUT_DIR"/coop-"$slug"-?.log | grep -c '"level":"ERROR"' || true)
        R_LOGWARN[$label]=$(cat "$OUT_DIR"/coop-"$slug"-?.log | grep -c '"level":"WARN"' || true)
        if ((R_LOGERR[$label] > 0)); then
            log "$label: Coop logged errors:"
            grep -h '"level":"ERROR"' "$OUT_DIR"/coop-"$slug"-?.log | head -n 5 >&2
        fi
        attempt_done "$label" "$OUT_DIR"/wrk-"$slug"*.txt "$OUT_DIR"/metrics-"$slug"-*.txt \
            "$OUT_DIR"/coop-"$slug"-?.log && break
    done
}

run_nginx_phase() {
    local label=$1 slug=nginx attempt
    start_nginx "$OUT_DIR/nginx.log" || return 1
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        R_ATTEMPTS[$label]=$attempt
        if ! measure "$label" "$slug" "http://127.0.0.1:$NGINX_PORT" "http://127.0.0.1:$NGINX_PORT" \
                "$IDS" "$COOKIE" 0 "$NGINX_PID"; then
            stop_pid "$NGINX_PID"; forget_pid "$NGINX_PID"
            return 1
        fi
        attempt_done "$label" "$OUT_DIR"/wrk-"$slug"*.txt && break
    done
    stop_pid "$NGINX_PID"
    forget_pid "$NGINX_PID"
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (installs packages and starts nginx)"
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.txt "$OUT_DIR"/*.log "$OUT_DIR"/*.attempt*
SCRATCH=$(mktemp -d /tmp/coop-cache-bench-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
ensure_tools redis-cli

rev=$(source_rev "$REPO_DIR")
extra_env=$(env | grep '^COOP_' | grep -Ev '^COOP_(LISTEN|LOG|DATA_DIR|DATABASE_URL|REDIS_URL|INSTANCE_ID|CACHE|METRICS_TOKEN)=' \
    | sort | tr '\n' ' ' | sed 's/ $//' || true)

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN as is"
    rev="$rev (SKIP_BUILD=1: the binary may be older than this source)"
else
    log "cargo build --release --bin coop (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && timeout 3600 cargo build --release --bin coop) || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"

pg -c 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL is not reachable as $PGUSER@$PGHOST:$PGPORT (psql -h $PGHOST -U $PGUSER)"
[[ "$(redis PING 2>/dev/null)" == PONG ]] || die "Redis is not reachable at $BENCH_REDIS_URL"

PG_DB="coop_cache_bench_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
pg -c "CREATE DATABASE \"$PG_DB\"" >/dev/null || { PG_DB=""; die "could not create a PostgreSQL database"; }
log "created database $PG_DB"

# Seed through instance a, with both instances up (as in a deployment).
IDS="$OUT_DIR/ids.txt"
n=$(flush_cache_keys) || die "could not delete $CACHE_PATTERN keys in Redis"
log "deleted $n Redis keys matching $CACHE_PATTERN"
start_coops seed || die "Coop did not start (see bench/out/cache/coop-seed-*.log)"
log "seeding $(group "$FAMILIES") families through instance a (${COOP_URL[a]})"
seed_started=$(date +%s)
timeout 1200 python3 "$BENCH_DIR/seed.py" --base "${COOP_URL[a]}" --families "$FAMILIES" \
    --threads "$SEED_THREADS" --ids-out "$IDS" --cookie-out "$OUT_DIR/cookie.txt" \
    --coop-id-out "$OUT_DIR/coop-id.txt" >&2 || die "seeding failed (logs: bench/out/cache/coop-seed-*.log)"
SEED_SECS=$(($(date +%s) - seed_started))
stop_coops || die "a Coop instance exited during seeding (logs: bench/out/cache/coop-seed-*.log)"
COOKIE=$(<"$OUT_DIR/cookie.txt")
[[ "$(wc -l <"$IDS")" -eq "$FAMILIES" ]] || die "expected $FAMILIES ids in $IDS"
log "VACUUM ANALYZE (so autovacuum does not start during a measured run)"
PG_TIMEOUT=600 PGCONNECT_TIMEOUT=5 timeout 600 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d "$PG_DB" \
    -qAt -v ON_ERROR_STOP=1 -c 'VACUUM ANALYZE' >/dev/null || die "VACUUM ANALYZE failed"

ON_LABEL="(a) cache on"
OFF_LABEL="(b) cache off (\`COOP_CACHE=off\`)"
NGINX_LABEL="(c) nginx static file (ceiling)"
LABELS=("$ON_LABEL" "$OFF_LABEL" "$NGINX_LABEL")
FAILED=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

run_coop_phase "$ON_LABEL" on || FAILED+=("$ON_LABEL")
run_coop_phase "$OFF_LABEL" off COOP_CACHE=off || FAILED+=("$OFF_LABEL")
run_nginx_phase "$NGINX_LABEL" || FAILED+=("$NGINX_LABEL")

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
wrk_version=$(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true)
nginx_version=$("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///' || true)
pg_version=$(pg -c 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)
redis_version=$(redis INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p' || true)
measured=$(date -u '+%Y-%m-%d %H:%M UTC')
fam=$(group "$FAMILIES")

m() { printf '%s' "${M["$1|$2"]:-0}"; } # LABEL KEY
done_ok() { [[ -n "${R_RPS[$1]:-}" ]]; }
nginx_rps=${R_RPS[$NGINX_LABEL]:-}

reads_per_100() { # LABEL
    local req; req=$(m "$1" requests)
    ((req > 0)) && calc '%.2f' "100 * $(m "$1" db_reads) / $req" || printf 'n/a'
}
hit_rate() { # LABEL [KIND]
    local lookups reads
    if [[ "${2:-}" == family ]]; then
        lookups=$(($(m "$1" l1_hit_family) + $(m "$1" l1_miss_family))); reads=$(m "$1" db_reads_family)
    else
        lookups=$(($(m "$1" l1_hit) + $(m "$1" l1_miss))); reads=$(m "$1" db_reads)
    fi
    ((lookups > 0)) && calc '%.2f%%' "100 * (1 - $reads / $lookups)" || printf 'n/a'
}
xact_per_100() {
    local req; req=$(m "$1" requests)
    ((req > 0)) && [[ -n "${R_XACT[$1]:-}" ]] && calc '%.2f' "100 * ${R_XACT[$1]} / $req" || printf 'n/a'
}
pct_nginx() {
    [[ -n "$nginx_rps" && "$nginx_rps" != 0 ]] && calc '%.1f%%' "100 * ${R_RPS[$1]} / $nginx_rps" || printf '—'
}
errors_of() { # all errors of a phase: measured, warm-up, earlier attempts
    printf '%d' $(( ${R_ERR[$1]:-0} + ${R_WERR[$1]:-0} + ${R_PRIOR_ERR[$1]:-0} ))
}

row() { # LABEL COOP(0|1)
    local label=$1 coop=$2 p50max p99max
    if ! done_ok "$label"; then
        printf '| %s | failed | — | — | — | — | — | — | — |\n' "$label"
        return
    fi
    p50max=$(max2 "${R_P50A[$label]}" "${R_P50B[$label]}")
    p99max=$(max2 "${R_P99A[$label]}" "${R_P99B[$label]}")
    local reads hit xact
    if ((coop)); then
        reads=$(reads_per_100 "$label"); xact=$(xact_per_100 "$label"); hit=$(hit_rate "$label")
    else
        reads="—"; xact="—"; hit="—"
    fi
    printf '| %s | %s | %s / %s / **%s** | %s / %s / **%s** | %s | %s | %s | %s | %s |\n' "$label" \
        "${R_RPS[$label]}" "${R_P50A[$label]}" "${R_P50B[$label]}" "$p50max" \
        "${R_P99A[$label]}" "${R_P99B[$label]}" "$p99max" "${R_ERR[$label]}" \
        "$reads" "$hit" "$xact" "$(pct_nginx "$label")"
}

target() { # DESCRIPTION MET(0|1|"") FIGURE
    local verdict
    case "$2" in
        1) verdict="**met**" ;;
        0) verdict="**not met**" ;;
        *) verdict="not measured" ;;
    esac
    printf -- '- %s: %s (measured: %s)\n' "$1" "$verdict" "$3"
}

# What a perfect shared cache that starts empty would have to read in phase (a).
ideal_reads=""; ideal_per_100=""; ideal_hit=""; rank1_share=""
if done_ok "$ON_LABEL"; then
    ideal=$(python3 "$STATS" ideal "$FAMILIES" "$ZIPF_S" "${R_WREQ[$ON_LABEL]}" "${R_REQ[$ON_LABEL]}")
    ideal_reads=$(sed -n 's/^reads=//p' <<<"$ideal")
    ideal_per_100=$(sed -n 's/^reads_per_100=//p' <<<"$ideal")
    rank1_share=$(sed -n 's/^rank1_share=//p' <<<"$ideal")
    lookups=$(($(m "$ON_LABEL" l1_hit) + $(m "$ON_LABEL" l1_miss)))
    ((lookups > 0)) && ideal_hit=$(calc '%.2f%%' "100 * (1 - $ideal_reads / $lookups)")
fi

section="$SCRATCH/section.md"
{
    echo "## Cache: two instances, Zipf($ZIPF_S) over $fam families"
    echo
    echo "Measured $measured with \`bench/cache.sh\`, commit $rev."
    echo
    echo "| Phase | requests/s | p50 ms (a / b / max) | p99 ms (a / b / max) | errors | database reads per 100 requests | hit rate | PostgreSQL transactions per 100 requests | % of nginx rps |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    row "$ON_LABEL" 1
    row "$OFF_LABEL" 1
    row "$NGINX_LABEL" 0
    echo
    echo "Two wrk processes at the same time, one per Coop instance (a and b), $CONNS_PER_WRK connections"
    echo "each; requests/s is their sum, p50/p99 are each wrk's and the larger. Every request is"
    echo "\`GET /api/v1/families/{id}\` with the coordinator's session cookie (so it reads the session"
    echo "and one family), the id drawn from Zipf($ZIPF_S) over the $fam seeded ids (bench/zipf_family.lua)."
    echo "For nginx both wrk processes drive the one nginx with the same script; the path is ignored."
    echo "Errors: socket errors plus non-2xx responses seen by wrk (measured run)."
    echo "Database reads: Coop's \`cache_db_reads_total\` (all kinds) over both instances, per 100"
    echo "\`http_requests_total{route=\"/api/v1/families/{id}\",status=\"200\"}\`; hit rate ="
    echo "1 − database reads / (L1 hits + L1 misses), both the session and the family lookup of each"
    echo "request counted; with the cache off every lookup is a database read and there is no hit rate."
    echo "PostgreSQL transactions: the database's \`pg_stat_database.xact_commit\` over the measured run,"
    echo "each reading taken after ${PG_STATS_WAIT} s without load (PostgreSQL reports the last second of a"
    echo "busy connection's counters only once it has been idle for 10 s)."
    echo
    echo "Targets (cache on):"
    echo
    if done_ok "$ON_LABEL"; then
        on_hit=$(hit_rate "$ON_LABEL"); on_reads=$(reads_per_100 "$ON_LABEL")
        on_p99=$(max2 "${R_P99A[$ON_LABEL]}" "${R_P99B[$ON_LABEL]}")
        target "hit rate ≥ 99 %" "$(awk -v h="${on_hit%\%}" 'BEGIN {print (h != "n/a" && h + 0 >= 99) ? 1 : 0}')" \
            "$on_hit$( ((PREWARM)) || echo "; a perfect cache starting empty: ${ideal_hit:-?}, see below")"
        target "database reads ≤ 1 per 100 requests" "$(awk -v r="$on_reads" 'BEGIN {print (r != "n/a" && r + 0 <= 1) ? 1 : 0}')" \
            "$on_reads$( ((PREWARM)) || echo "; a perfect cache starting empty: ${ideal_per_100:-?}, see below")"
        if [[ -n "$nginx_rps" ]]; then
            target "requests/s ≥ 50 % of nginx" "$(awk -v a="${R_RPS[$ON_LABEL]}" -v b="$nginx_rps" 'BEGIN {print (a >= b / 2) ? 1 : 0}')" \
                "$(pct_nginx "$ON_LABEL") (${R_RPS[$ON_LABEL]} vs $nginx_rps)"
        else
            target "requests/s ≥ 50 % of nginx" "" "the nginx phase failed"
        fi
        target "p99 < 10 ms" "$(awk -v p="$on_p99" 'BEGIN {print (p + 0 < 10) ? 1 : 0}')" "$on_p99 ms, the larger of the two instances"
    else
        echo "- not measured: the cache-on phase failed"
    fi
    echo
    echo "Cache counters over the measured run (deltas of \`/metrics\`, both instances summed;"
    echo "L1 and L2 count the session and the family lookups):"
    echo
    echo "| Phase | wrk requests | Coop 200s (a + b) | L1 hit | L1 miss | L2 hit | L2 miss | database reads (family + session) | family hit rate | PostgreSQL transactions |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for label in "$ON_LABEL" "$OFF_LABEL"; do
        done_ok "$label" || continue
        printf '| %s | %s | %s (%s + %s) | %s | %s | %s | %s | %s (%s + %s) | %s | %s |\n' "$label" \
            "${R_REQ[$label]}" "$(m "$label" requests)" "$(m "$label" inst0_requests)" "$(m "$label" inst1_requests)" \
            "$(m "$label" l1_hit)" "$(m "$label" l1_miss)" "$(m "$label" l2_hit)" "$(m "$label" l2_miss)" \
            "$(m "$label" db_reads)" "$(m "$label" db_reads_family)" "$(m "$label" db_reads_session)" \
            "$(hit_rate "$label" family)" "${R_XACT[$label]:-?}"
    done
    if done_ok "$ON_LABEL" && ((PREWARM)); then
        echo
        echo "Steady state: before each Coop phase's warm-up, every one of the $fam ids was read once through"
        echo "each instance (bench/sweep_family.lua, $PREWARM_FOR per instance), as a long-running deployment's"
        echo "caches would hold them; the measured run's database reads are then what the cache does not"
        echo "absorb (expiry, eviction, invalidation), not first requests. \`PREWARM=0\` measures from"
        echo "cold caches instead, where under Zipf($ZIPF_S) even a perfect cache reads every id asked for the first time."
        echo "Sampler check: rank 1 got $(calc '%.2f%%' "100 * ${R_RANK1[$ON_LABEL]} / ${R_REQ[$ON_LABEL]}") of the requests (expected $(calc '%.2f%%' "100 * $rank1_share"));"
        echo "each wrk asked for ${R_DISTINCT[$ON_LABEL]} distinct ids in the measured run."
    elif done_ok "$ON_LABEL"; then
        echo
        echo "For scale: the caches start empty, and under Zipf($ZIPF_S) over $fam ids many ids are asked for"
        echo "for the first time during the run. After the ${R_WREQ[$ON_LABEL]} warm-up requests, the ${R_REQ[$ON_LABEL]} measured requests"
        echo "are expected to ask for $ideal_reads ids never asked for before (computed from the distribution),"
        echo "so even a perfect shared cache that starts empty and never evicts reads the database"
        echo "$ideal_reads times, $ideal_per_100 per 100 requests; Coop read $(m "$ON_LABEL" db_reads_family) families."
        echo "Sampler check: rank 1 got $(calc '%.2f%%' "100 * ${R_RANK1[$ON_LABEL]} / ${R_REQ[$ON_LABEL]}") of the requests (expected $(calc '%.2f%%' "100 * $rank1_share"));"
        echo "each wrk asked for ${R_DISTINCT[$ON_LABEL]} distinct ids in the measured run."
    fi
    echo
    echo "Latency detail: wrk's p99.9 and maximum (each wrk), and the responses Coop itself timed"
    echo "(\`http_request_duration_seconds\`, from routing to response, both instances) above 100 ms and 250 ms:"
    echo
    echo "| Phase | p99.9 ms (a / b) | max ms (a / b) | Coop: over 100 ms | Coop: over 250 ms |"
    echo "|---|---:|---:|---:|---:|"
    for label in "${LABELS[@]}"; do
        done_ok "$label" || continue
        if [[ -n "${M["$label|requests"]:-}" ]]; then
            printf '| %s | %s | %s | %s | %s |\n' "$label" "${R_P999[$label]}" "${R_MAX[$label]}" \
                "$(m "$label" over_100ms)" "$(m "$label" over_250ms)"
        else
            printf '| %s | %s | %s | — | — |\n' "$label" "${R_P999[$label]}" "${R_MAX[$label]}"
        fi
    done
    echo
    echo "CPU during each measured run, in % of one CPU ($NCPU CPUs = $((NCPU * 100))%); \"other\" is every"
    echo "other user-space process and should be near 0:"
    echo
    echo "| Phase | both wrk | server(s) | PostgreSQL + Redis | other |"
    echo "|---|---:|---:|---:|---:|"
    for label in "${LABELS[@]}"; do
        [[ -n "${C_WRK[$label]:-}" ]] || continue
        printf '| %s | %s%% | %s%% | %s%% | %s%% |\n' "$label" "${C_WRK[$label]}" "${C_SRV[$label]}" \
            "${C_DB[$label]}" "${C_OTHER[$label]}"
    done
    notes=()
    for label in "${LABELS[@]}"; do
        [[ -n "${R_NOTE[$label]:-}" ]] && notes+=("- $label: ${R_NOTE[$label]}")
        [[ "${R_WERR[$label]:-0}" -gt 0 ]] && notes+=("- $label: ${R_WERR[$label]} errors during the warm-up")
        [[ "${R_PRIOR_ERR[$label]:-0}" -gt 0 ]] && notes+=("- $label: ${R_PRIOR_ERR[$label]} errors in earlier, repeated attempts (bench/out/cache/*.attempt*)")
        [[ "${C_WAITED[$label]:-0}" -gt 0 ]] && notes+=("- $label: waited ${C_WAITED[$label]} s for other processes to go quiet")
        [[ "${R_ATTEMPTS[$label]:-1}" -gt 1 ]] && notes+=("- $label: attempt ${R_ATTEMPTS[$label]}; earlier attempts were repeated because other processes were busy")
        [[ -n "${C_OTHER[$label]:-}" && "${C_OTHER[$label]}" -ge "$QUIET_PCT" ]] \
            && notes+=("- $label: other processes used ${C_OTHER[$label]}% of one CPU during the run, so it is understated")
        if [[ -n "${M["$label|requests"]:-}" ]]; then
            [[ "$(m "$label" non200)" != 0 ]] && notes+=("- $label: Coop counted non-200 responses on the family route: $(m "$label" non200_detail)")
            missing=$(m "$label" missing)
            # With the cache off there are no lookups, so no cache_requests_total series.
            [[ "$label" == "$OFF_LABEL" ]] && missing=$(sed 's/\bcache_requests_total\b//; s/^ *//; s/ *$//; s/^$/none/' <<<"$missing")
            [[ "$missing" != none ]] && notes+=("- $label: metrics not found in /metrics: $missing")
            [[ "$(m "$label" other_routes)" != none ]] && notes+=("- $label: requests on other routes: $(m "$label" other_routes)")
            extras=""
            for key in "${!M[@]}"; do
                [[ "$key" == "$label|extra."* ]] && extras+="${extras:+, }\`${key#"$label|extra."}\` ${M[$key]}"
            done
            [[ -n "$extras" ]] && notes+=("- $label: other cache counters: $extras")
        fi
        [[ "${R_CRASH[$label]:-0}" == 1 ]] && notes+=("- $label: a Coop instance exited during the phase")
        [[ "${R_LOGERR[$label]:-0}" -gt 0 ]] && notes+=("- $label: Coop logged ${R_LOGERR[$label]} ERROR lines (bench/out/cache/)")
        [[ "${R_LOGWARN[$label]:-0}" -gt 0 ]] && notes+=("- $label: Coop logged ${R_LOGWARN[$label]} WARN lines (bench/out/cache/)")
    done
    ((${#FAILED[@]})) && notes+=("- Failed to run: ${FAILED[*]} (see bench/out/cache/).")
    if ((${#notes[@]})); then
        echo
        printf '%s\n' "${notes[@]}"
    fi
    echo
    echo "Settings:"
    echo
    echo "- Command: \`bench/cache.sh\` (DURATION=$DURATION WARMUP=$WARMUP PREWARM=$PREWARM PREWARM_FOR=$PREWARM_FOR CONNS_PER_WRK=$CONNS_PER_WRK FAMILIES=$FAMILIES ZIPF_S=$ZIPF_S)"
    ((PREWARM)) && echo "- Coop phases: pre-warm first, every id read once through each instance (\`wrk -t1 -c8 -d$PREWARM_FOR -s bench/sweep_family.lua\`, not counted)"
    echo "- Load per phase: $WARMUP warm-up (not counted), then two concurrent"
    echo "  \`wrk -t1 -c$CONNS_PER_WRK -d$DURATION --latency -s bench/zipf_family.lua\` (seeds 1 and 2; warm-up 101 and 102), keep-alive"
    echo "- Each Coop phase: \`$CACHE_PATTERN\` deleted from Redis, both instances started fresh (cold L1 and L2)"
    echo "- Seeding: $fam families through instance a with bench/seed.py ($SEED_THREADS connections, ${SEED_SECS}s), then \`VACUUM ANALYZE\`"
    echo "- Machine: $NCPU CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r); wrk, both"
    echo "  instances, PostgreSQL and Redis share these CPUs; load average before the phases: $LOAD_BEFORE"
    echo "- Coop: release build of $rev; \`coop serve\` with \`COOP_DATABASE_URL\` (fresh database),"
    echo "  \`COOP_REDIS_URL=$BENCH_REDIS_URL COOP_LOG=json RUST_LOG=warn COOP_INSTANCE_ID=a|b\`${extra_env:+ $extra_env}, other settings at their defaults"
    echo "- PostgreSQL ${pg_version:-?}, Redis ${redis_version:-?}, nginx ${nginx_version:-?} (\`worker_processes 2\`, \`access_log off\`), wrk ${wrk_version:-?}"
} >"$section"

results_put_section "$RESULTS" bench/cache.sh "$section"
echo
cat "$section"
echo

status=0
for label in "${LABELS[@]}"; do
    if ! done_ok "$label"; then
        log "FAIL: $label did not complete"
        status=1
        continue
    fi
    if [[ "$(errors_of "$label")" -gt 0 ]]; then
        log "FAIL: $label had $(errors_of "$label") errors (measured, warm-up and repeated attempts)"
        status=1
    fi
    if [[ -n "${M["$label|requests"]:-}" && "$(m "$label" non200)" != 0 ]]; then
        log "FAIL: $label: Coop answered non-200 on the family route: $(m "$label" non200_detail)"
        status=1
    fi
    if [[ "${R_CRASH[$label]:-0}" == 1 ]]; then
        log "FAIL: $label: a Coop instance exited during the phase"
        status=1
    fi
done
exit "$status"
