#!/usr/bin/env bash
# Coop HTTP benchmark: GET /api/v1/families/{id} against the embedded (SQLite)
# tier and the PostgreSQL + Redis tier, next to nginx serving a static file (the
# ceiling for one HTTP response on this machine). Everything runs on 127.0.0.1,
# one server at a time, with the same wrk settings. Results: bench/RESULTS.md.
#
#   bench/run.sh
#
# Environment (all optional):
#   DURATION=15s        wrk duration per run (a bare number means seconds)
#   CONNECTIONS=64      wrk connections
#   FAMILIES=10000      families seeded per Coop tier
#   SEED_THREADS=8      parallel keep-alive connections used for seeding
#   CARGO_TARGET_DIR    where `cargo build --release` puts the binary
#   SKIP_BUILD=1        use the existing release binary instead of building
#   BENCH_RESULTS=FILE  write the results there instead of bench/RESULTS.md
#   COOP_*              other Coop settings (e.g. COOP_CACHE=off) pass through to
#                       both Coop runs and are listed in the results
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_REDIS_URL=redis://127.0.0.1:6379         local Redis
#   BENCH_STATUS_DETAIL=1  count responses per status code in the wrk script
#                          (costs loader CPU; off by default)
#   QUIET_PCT=25        before each run, wait until other processes use less than
#                       this % of one CPU; a run they disturbed that much is repeated
#   QUIET_WAIT=600      most seconds spent waiting for quiet, over the whole script
#   BUSY_RETRIES=2      most repeats of a disturbed run (the last one is reported)
#
# Needs root (installs the Debian packages wrk and nginx-light/nginx if missing),
# python3 (stdlib only), curl, psql and a running PostgreSQL and Redis.
# Exits non-zero if any Coop run saw errors (socket errors or non-2xx responses)
# or if any of the three runs could not be completed.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
LUA="$BENCH_DIR/get_family.lua"

DURATION="${DURATION:-15s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS="${CONNECTIONS:-64}"
FAMILIES="${FAMILIES:-10000}"
SEED_THREADS="${SEED_THREADS:-8}"
WRK_THREADS=2
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"


# ---------------------------------------------------------------- cleanup ----
PG_DB=""
REDIS_PATTERNS=()


cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n "$PG_DB" ]]; then
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 \
            && log "dropped database $PG_DB" \
            || log "WARNING: could not drop database $PG_DB"
    fi
    # Redis keys Coop wrote for this run: any key naming the bench co-op's id or
    # the bench session's token hash (they would also expire on their own).
    if ((${#REDIS_PATTERNS[@]})) && command -v redis-cli >/dev/null; then
        local pattern
        for pattern in "${REDIS_PATTERNS[@]}"; do
            redis-cli -u "$BENCH_REDIS_URL" --scan --pattern "$pattern" 2>/dev/null \
                | xargs -r -n 500 redis-cli -u "$BENCH_REDIS_URL" DEL >/dev/null 2>&1
        done
    fi
    local d
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



# Parsed results per label: R_RPS, R_P50, R_P99, R_ERR, R_NOTE.
declare -A R_RPS R_P50 R_P99 R_ERR R_NOTE

duration_secs() {
    awk -v d="$DURATION" 'BEGIN {
        n = d; sub(/[a-z]+$/, "", n); u = d; sub(/^[0-9.]+/, "", u)
        m = (u == "m") ? 60 : (u == "h") ? 3600 : 1
        printf "%d", n * m }'
}


# run_wrk LABEL URL IDS_FILE COOKIE OUTFILE SERVER_PID: drive URL, parse into R_*.
# A run during which other processes used QUIET_PCT % of a CPU or more is
# repeated (at most BUSY_RETRIES times); the last attempt is the one reported.
BUSY_RETRIES="${BUSY_RETRIES:-2}"
declare -A C_ATTEMPTS
declare -A R_PRIOR_ERR
run_wrk() {
    local label=$1 out=$5 attempt prior=0
    rm -f "$out".attempt*
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        C_ATTEMPTS[$label]=$attempt
        wrk_once "$@" || return 1
        parse_wrk "$label" "$out" || return 1
        [[ "${C_OTHER[$label]}" -lt "$QUIET_PCT" ]] && break
        ((attempt <= BUSY_RETRIES)) || break
        log "$label: other processes used ${C_OTHER[$label]}% of one CPU during the run; repeating it"
        # Errors in a repeated attempt still count.
        prior=$((prior + ${R_ERR[$label]}))
        mv "$out" "$out.attempt$attempt"
    done
    R_PRIOR_ERR[$label]=$prior
    if ((prior > 0)); then
        R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }$prior errors in earlier, repeated attempts (bench/out/)"
    fi
}

# wrk_once LABEL URL IDS_FILE COOKIE OUTFILE SERVER_PID: one wrk run with CPU accounting.
wrk_once() {
    local label=$1 url=$2 ids=$3 cookie=$4 out=$5 server_pid=$6
    local limit=$(( $(duration_secs) + 60 ))
    wait_quiet "$label"
    log "$label: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency against $url"
    local srv_pids db
    srv_pids=$(tree_pids "$server_pid")
    db=$(db_pids)
    # shellcheck disable=SC2086
    snapshot $srv_pids >"$SCRATCH/srv0"
    # shellcheck disable=SC2086
    snapshot $db >"$SCRATCH/db0"
    local t0 c0 t1 c1
    times >"$SCRATCH/times0"
    snapshot_all >"$SCRATCH/all0"
    t0=$(now_secs)
    if ! timeout "$limit" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
            -s "$LUA" "$url" -- "$ids" "$cookie" >"$out" 2>&1; then
        log "$label: wrk failed; output:"
        cat "$out" >&2
        return 1
    fi
    t1=$(now_secs)
    snapshot_all >"$SCRATCH/all1"
    times >"$SCRATCH/times1"
    c0=$(children_secs "$SCRATCH/times0"); c1=$(children_secs "$SCRATCH/times1")
    srv_pids=$(tree_pids "$server_pid")
    db=$(db_pids)
    # shellcheck disable=SC2086
    snapshot $srv_pids >"$SCRATCH/srv1"
    # shellcheck disable=SC2086
    snapshot $db >"$SCRATCH/db1"
    # shellcheck disable=SC2086
    printf '%s\n' $srv_pids $db >"$SCRATCH/ours"
    cat "$out" >&2
    # Percent of one CPU over the run's wall time.
    local cw cs cd co
    read -r cw cs cd co < <(awk \
        -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v hz="$CLK_TCK" \
        -v wrk="$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" \
        -v srv="$(delta "$SCRATCH/srv0" "$SCRATCH/srv1")" -v db="$(delta "$SCRATCH/db0" "$SCRATCH/db1")" \
        -v other="$(delta_except "$SCRATCH/ours" "$SCRATCH/all0" "$SCRATCH/all1")" 'BEGIN {
            printf "%.0f %.0f %.0f %.0f\n", 100 * wrk / wall, 100 * srv / hz / wall,
                100 * db / hz / wall, 100 * other / hz / wall }')
    C_WRK[$label]=$cw; C_SRV[$label]=$cs; C_DB[$label]=$cd; C_OTHER[$label]=$co
    log "$label: CPU (100% = one CPU): wrk $cw%, server $cs%, PostgreSQL+Redis $cd%, other processes $co%"
}

# parse_wrk LABEL OUTFILE: requests/s, p50, p99 and errors into R_*.
parse_wrk() {
    local label=$1 out=$2 summary rps p50 p99 socket non2xx
    if ! summary=$(wrk_summary "$out"); then
        log "$label: could not parse wrk output"
        return 1
    fi
    read -r rps p50 p99 socket non2xx <<<"$summary"
    R_RPS[$label]=$rps
    R_P50[$label]=$p50
    R_P99[$label]=$p99
    R_ERR[$label]=$((socket + non2xx))
    R_NOTE[$label]=""
    if [[ "${C_OTHER[$label]}" -ge "$QUIET_PCT" ]]; then
        R_NOTE[$label]="other processes used ${C_OTHER[$label]}% of one CPU during this run, so it is understated"
    fi
    if ((socket + non2xx > 0)); then
        R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }socket errors $socket ($(grep '^BENCH ' "$out" | sed -n 's/.*\(connect=.* timeout=[0-9]*\).*/\1/p')), non-2xx $non2xx"
    fi
}

# ------------------------------------------------------------------ nginx ----
NGINX_LABEL="nginx static file (ceiling)"
run_nginx() {
    start_nginx "$OUT_DIR/nginx.log" || return 1
    run_wrk "$NGINX_LABEL" "http://127.0.0.1:$NGINX_PORT" "$NGINX_IDS" "" "$OUT_DIR/wrk-nginx.txt" "$NGINX_PID" || return 1
    stop_pid "$NGINX_PID"
}

# ------------------------------------------------------------------- coop ----
# run_coop LABEL SLUG ENV...: start Coop with ENV, seed it, drive it, stop it.
run_coop() {
    local label=$1 slug=$2
    shift 2
    local port pid url logfile="$OUT_DIR/coop-$slug.log"
    port=$(free_port)
    url="http://127.0.0.1:$port"
    log "$label: starting coop on $url (log: ${logfile#"$REPO_DIR"/})"
    env -u COOP_DATABASE_URL -u COOP_REDIS_URL -u COOP_DATA_DIR -u COOP_INSTANCE_ID \
        "$@" COOP_LISTEN="127.0.0.1:$port" COOP_LOG=json RUST_LOG=warn \
        "$COOP_BIN" >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$url/health" "$pid" "$logfile" || return 1

    local ids="$OUT_DIR/ids-$slug.txt" cookie_file="$OUT_DIR/cookie-$slug.txt"
    local coop_id_file="$OUT_DIR/coop-id-$slug.txt"
    log "$label: seeding $FAMILIES families"
    timeout 600 python3 "$BENCH_DIR/seed.py" --base "$url" --families "$FAMILIES" \
        --threads "$SEED_THREADS" --ids-out "$ids" --cookie-out "$cookie_file" \
        --coop-id-out "$coop_id_file" >&2 || {
        log "$label: seeding failed (server log: $logfile)"
        return 1
    }
    local cookie
    cookie=$(<"$cookie_file")
    if [[ "$slug" == postgres-redis ]]; then
        REDIS_PATTERNS+=("*$(<"$coop_id_file")*"
            "*$(printf '%s' "${cookie#coop_session=}" | sha256sum | cut -d' ' -f1)*")
    fi
    run_wrk "$label" "$url" "$ids" "$cookie" "$OUT_DIR/wrk-$slug.txt" "$pid" || return 1
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$label: coop exited during the run"
        R_NOTE[$label]="${R_NOTE[$label]:+${R_NOTE[$label]}; }coop exited during the run"
        R_ERR[$label]=$(( ${R_ERR[$label]:-0} + 1 ))
    fi
    stop_pid "$pid"
    if grep -q '"level":"ERROR"' "$logfile"; then
        log "$label: coop logged errors (see $logfile):"
        grep '"level":"ERROR"' "$logfile" | head -n 5 >&2
    fi
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (installs packages and starts nginx)"
mkdir -p "$OUT_DIR"
SCRATCH=$(mktemp -d /tmp/coop-bench-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
ensure_tools

# What was built: the commit, and a digest of the source when it has local changes.
rev=$(source_rev "$REPO_DIR")
# Coop settings passed through from the caller's environment, if any.
extra_env=$(env | grep '^COOP_' | grep -Ev '^COOP_(LISTEN|LOG|DATA_DIR|DATABASE_URL|REDIS_URL|INSTANCE_ID|METRICS_TOKEN)=' \
    | sort | tr '\n' ' ' | sed 's/ $//' || true)

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN as is"
    rev="$rev (SKIP_BUILD=1: the binary may be older than this source)"
else
    log "cargo build --release --bin coop (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --release --bin coop) || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"

psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt -c 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL is not reachable as $PGUSER@$PGHOST:$PGPORT (psql -h $PGHOST -U $PGUSER)"
if command -v redis-cli >/dev/null; then
    [[ "$(redis-cli -u "$BENCH_REDIS_URL" PING 2>/dev/null)" == PONG ]] \
        || die "Redis is not reachable at $BENCH_REDIS_URL"
fi

# Ids for the nginx run (the path is ignored; the Lua script is the same).
NGINX_IDS="$OUT_DIR/ids-nginx.txt"
python3 -c 'import uuid,sys; sys.stdout.writelines(f"{uuid.uuid4()}\n" for _ in range(int(sys.argv[1])))' \
    "$FAMILIES" >"$NGINX_IDS"

EMBEDDED_LABEL="Coop embedded (SQLite)"
POSTGRES_LABEL="Coop PostgreSQL + Redis"
FAILED=()

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run_nginx || FAILED+=("$NGINX_LABEL")

data_dir=$(mktemp -d /tmp/coop-bench-data.XXXXXX)
TMP_DIRS+=("$data_dir")
run_coop "$EMBEDDED_LABEL" embedded COOP_DATA_DIR="$data_dir" || FAILED+=("$EMBEDDED_LABEL")

PG_DB="coop_bench_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
if psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
        -c "CREATE DATABASE \"$PG_DB\"" >/dev/null; then
    log "created database $PG_DB"
    run_coop "$POSTGRES_LABEL" postgres-redis \
        COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_DB" \
        COOP_REDIS_URL="$BENCH_REDIS_URL" || FAILED+=("$POSTGRES_LABEL")
else
    PG_DB=""
    log "could not create a PostgreSQL database"
    FAILED+=("$POSTGRES_LABEL")
fi

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
wrk_version=$(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true)
nginx_version=$("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///' || true)
pg_version=$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt -c 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)
redis_version=$(redis-cli -u "$BENCH_REDIS_URL" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p' || true)

row() { # LABEL
    local label=$1 pct="—"
    if [[ -z "${R_RPS[$label]:-}" ]]; then
        printf '| %s | failed | — | — | — | — |\n' "$label"
        return
    fi
    if [[ -n "${R_RPS[$NGINX_LABEL]:-}" && "${R_RPS[$NGINX_LABEL]}" != 0 ]]; then
        pct=$(awk -v a="${R_RPS[$label]}" -v b="${R_RPS[$NGINX_LABEL]}" 'BEGIN {printf "%.1f%%", 100 * a / b}')
    fi
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "${R_RPS[$label]}" \
        "${R_P50[$label]}" "${R_P99[$label]}" "${R_ERR[$label]}" "$pct"
}

{
    echo "# Coop benchmark results"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bench/run.sh\`."
    echo
    echo "| Server | requests/s | p50 ms | p99 ms | errors | % of nginx rps |"
    echo "|---|---:|---:|---:|---:|---:|"
    row "$NGINX_LABEL"
    row "$EMBEDDED_LABEL"
    row "$POSTGRES_LABEL"
    echo
    echo "Coop rows: \`GET /api/v1/families/{id}\` with the coordinator's session cookie and"
    echo "a random id out of $FAMILIES seeded families; every request checks the session and"
    echo "reads one family. nginx row: a ${NGINX_FILE_BYTES:-?}-byte static JSON file (shaped like a"
    echo "family) for the same request paths, with the same wrk script."
    echo "Errors are socket errors (connect, read, write, timeout) plus non-2xx responses."
    echo
    echo "CPU during each run, in % of one CPU ($NCPU CPUs = $((NCPU * 100))%), as the kernel charges"
    echo "it to processes (interrupt time for the loopback network is partly uncharged). \"Other\""
    echo "is every other user-space process, which should be near 0:"
    echo
    echo "| Server | wrk | server | PostgreSQL + Redis | other |"
    echo "|---|---:|---:|---:|---:|"
    for label in "$NGINX_LABEL" "$EMBEDDED_LABEL" "$POSTGRES_LABEL"; do
        if [[ -n "${C_WRK[$label]:-}" ]]; then
            printf '| %s | %s%% | %s%% | %s%% | %s%% |\n' "$label" "${C_WRK[$label]}" \
                "${C_SRV[$label]}" "${C_DB[$label]}" "${C_OTHER[$label]}"
        fi
    done
    notes=()
    for label in "$NGINX_LABEL" "$EMBEDDED_LABEL" "$POSTGRES_LABEL"; do
        if [[ -n "${R_NOTE[$label]:-}" ]]; then notes+=("- $label: ${R_NOTE[$label]}"); fi
        if [[ "${C_WAITED[$label]:-0}" -gt 0 ]]; then
            notes+=("- $label: waited ${C_WAITED[$label]} s for other processes to go quiet before the run")
        fi
        if [[ "${C_ATTEMPTS[$label]:-1}" -gt 1 ]]; then
            notes+=("- $label: attempt ${C_ATTEMPTS[$label]}; earlier attempts were repeated because other processes were busy")
        fi
    done
    if ((${#FAILED[@]})); then notes+=("- Failed to run: ${FAILED[*]} (see bench/out/)."); fi
    if ((${#notes[@]})); then
        echo
        printf '%s\n' "${notes[@]}"
    fi
    echo
    echo "## Settings"
    echo
    echo "- Command: \`bench/run.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS FAMILIES=$FAMILIES${BENCH_STATUS_DETAIL:+ BENCH_STATUS_DETAIL=$BENCH_STATUS_DETAIL})"
    echo "- Load: \`wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/get_family.lua\`, keep-alive, one server at a time"
    echo "- Machine: $(nproc) CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r);"
    echo "  wrk and the server under test share these CPUs, so compare the rows as ratios;"
    echo "  load average (1/5/15 min) just before the runs: $LOAD_BEFORE"
    echo "- Coop: release build of $rev; \`COOP_LOG=json RUST_LOG=warn\`${extra_env:+ $extra_env}, other settings at their defaults"
    echo "- Embedded tier: \`COOP_DATA_DIR\` (SQLite) in a fresh folder, no Redis"
    echo "- PostgreSQL + Redis tier: \`COOP_DATABASE_URL\` (PostgreSQL ${pg_version:-?}, fresh database) and"
    echo "  \`COOP_REDIS_URL\` (Redis ${redis_version:-?}), both on 127.0.0.1"
    echo "- nginx ${nginx_version:-?}: \`worker_processes 2\`, \`access_log off\`, keep-alive"
    echo "- wrk ${wrk_version:-?}"
} >"$RESULTS.tmp"
# Other scripts' sections of the results file (e.g. bench/cache.sh's) are kept.
results_sections_except "$RESULTS" bench/run.sh >>"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"

echo
cat "$RESULTS"
echo

status=0
if [[ -z "${R_RPS[$NGINX_LABEL]:-}" ]]; then
    log "FAIL: the nginx ceiling run did not complete"
    status=1
fi
for label in "$EMBEDDED_LABEL" "$POSTGRES_LABEL"; do
    if [[ -z "${R_RPS[$label]:-}" ]]; then
        log "FAIL: $label did not complete"
        status=1
    elif [[ "${R_ERR[$label]}" -gt 0 || "${R_PRIOR_ERR[$label]:-0}" -gt 0 ]]; then
        log "FAIL: $label had ${R_ERR[$label]} errors (${R_NOTE[$label]:-})"
        status=1
    fi
done
exit "$status"
