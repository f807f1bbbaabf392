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
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_REDIS_URL=redis://127.0.0.1:6379         local Redis
#   BENCH_STATUS_DETAIL=1  count responses per status code in the wrk script
#                          (costs loader CPU; off by default)
#
# Needs root (installs the Debian packages wrk and nginx-light/nginx if missing),
# python3 (stdlib only), curl, psql and a running PostgreSQL and Redis.
# Exits non-zero if any Coop run saw errors (socket errors or non-2xx responses)
# or could not be run.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out"
RESULTS="$BENCH_DIR/RESULTS.md"
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

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup ----
PIDS=()
TMP_DIRS=()
PG_DB=""
REDIS_KEYS=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

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
    if ((${#REDIS_KEYS[@]})) && command -v redis-cli >/dev/null; then
        redis-cli -u "$BENCH_REDIS_URL" DEL "${REDIS_KEYS[@]}" >/dev/null 2>&1
    fi
    local d
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ tools ----
APT_UPDATED=0
apt_install() { # package... ; true if one of them installs
    local pkg created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keep the nginx package from starting a system nginx on port 80.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || log "WARNING: apt-get update failed"
        APT_UPDATED=1
    fi
    local ok=1
    for pkg in "$@"; do
        log "apt-get install -y $pkg"
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2; then
            ok=0
            break
        fi
    done
    ((created_policy)) && rm -f /usr/sbin/policy-rc.d
    return "$ok"
}

find_nginx() {
    NGINX_BIN="$(command -v nginx 2>/dev/null || true)"
    [[ -z "$NGINX_BIN" && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
    [[ -n "$NGINX_BIN" ]]
}

ensure_tools() {
    local t
    for t in python3 curl psql cargo timeout; do
        command -v "$t" >/dev/null || die "'$t' is required but not on PATH"
    done
    if ! command -v wrk >/dev/null; then
        apt_install wrk && command -v wrk >/dev/null \
            || die "could not install the Debian package 'wrk' (apt-get install -y wrk failed)"
    fi
    if ! find_nginx; then
        apt_install nginx-light nginx && find_nginx \
            || die "could not install the Debian package 'nginx-light' or 'nginx'"
    fi
}

# ---------------------------------------------------------------- helpers ----
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL PID LOGFILE: until URL answers 200 (60 s at most).
wait_http() {
    local url=$1 pid=$2 logfile=$3 i code
    for i in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "server exited before $url answered; last log lines:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ "$code" == 200 ]] && return 0
        sleep 0.2
    done
    log "$url did not answer 200 within 60 s (last: $code)"
    return 1
}

# to_ms VALUE: wrk's "123.45us" / "1.23ms" / "1.02s" / "1.00m" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if      (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /s$/)  { sub(/s$/,  "", v); printf "%.1f", v * 1000 }
        else if (v ~ /m$/)  { sub(/m$/,  "", v); printf "%.0f", v * 60000 }
        else                { printf "?" }
    }'
}

# Parsed results per label: R_RPS, R_P50, R_P99, R_ERR, R_NOTE.
declare -A R_RPS R_P50 R_P99 R_ERR R_NOTE

duration_secs() {
    awk -v d="$DURATION" 'BEGIN {
        n = d; sub(/[a-z]+$/, "", n); u = d; sub(/^[0-9.]+/, "", u)
        m = (u == "m") ? 60 : (u == "h") ? 3600 : 1
        printf "%d", n * m }'
}

# run_wrk LABEL URL IDS_FILE COOKIE OUTFILE: drive URL, parse into R_*.
run_wrk() {
    local label=$1 url=$2 ids=$3 cookie=$4 out=$5
    local limit=$(( $(duration_secs) + 60 ))
    log "$label: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency against $url"
    if ! timeout "$limit" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
            -s "$LUA" "$url" -- "$ids" "$cookie" >"$out" 2>&1; then
        log "$label: wrk failed; output:"
        cat "$out" >&2
        return 1
    fi
    cat "$out" >&2

    local rps p50 p99 bench socket non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '/Latency Distribution/ {d=1} d && $1=="50%" {print $2; exit}' "$out")
    p99=$(awk '/Latency Distribution/ {d=1} d && $1=="99%" {print $2; exit}' "$out")
    bench=$(grep '^BENCH ' "$out" || true)
    if [[ -z "$rps" || -z "$p50" || -z "$p99" || -z "$bench" ]]; then
        log "$label: could not parse wrk output"
        return 1
    fi
    socket=$(sed -n 's/.* socket_errors=\([0-9]*\).*/\1/p' <<<"$bench")
    non2xx=$(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$bench")
    R_RPS[$label]=$(printf '%.0f' "$rps")
    R_P50[$label]=$(to_ms "$p50")
    R_P99[$label]=$(to_ms "$p99")
    R_ERR[$label]=$((socket + non2xx))
    if ((socket + non2xx > 0)); then
        R_NOTE[$label]="socket errors $socket ($(sed -n 's/.*\(connect=.* timeout=[0-9]*\).*/\1/p' <<<"$bench")), non-2xx $non2xx"
    fi
}

# ------------------------------------------------------------------ nginx ----
NGINX_LABEL="nginx static file (ceiling)"
run_nginx() {
    local dir port pid
    dir=$(mktemp -d /tmp/coop-bench-nginx.XXXXXX)
    TMP_DIRS+=("$dir")
    chmod 755 "$dir"
    mkdir -p "$dir/www" "$dir/logs"
    # About the size of a real family response.
    printf '%s' '{"family_id":"0190f3c2-7a51-7c3e-9d1b-3f2a6b8c9d10","coop_id":"0190f3c2-7a50-7c3e-9d1b-3f2a6b8c9d0f","family_name":"Family 42","email":"family-42@example.org","enrollment_date":"2026-09-01","version":1,"created_at":"2026-09-01T12:00:00Z","updated_at":"2026-09-01T12:00:00Z"}' \
        >"$dir/www/family.json"
    chmod 755 "$dir/www"
    chmod 644 "$dir/www/family.json"
    NGINX_FILE_BYTES=$(stat -c %s "$dir/www/family.json")
    port=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 100000000;
    open_file_cache max=16 valid=60s;
    client_body_temp_path $dir/tmp_client;
    proxy_temp_path $dir/tmp_proxy;
    fastcgi_temp_path $dir/tmp_fastcgi;
    uwsgi_temp_path $dir/tmp_uwsgi;
    scgi_temp_path $dir/tmp_scgi;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        # Every path (the wrk script asks for /api/v1/families/<id>) gets the file.
        location / { try_files /family.json =404; }
    }
}
EOF
    "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" >"$OUT_DIR/nginx.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/health" "$pid" "$OUT_DIR/nginx.log" || return 1
    run_wrk "$NGINX_LABEL" "http://127.0.0.1:$port" "$NGINX_IDS" "" "$OUT_DIR/wrk-nginx.txt" || return 1
    stop_pid "$pid"
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
    log "$label: seeding $FAMILIES families"
    timeout 600 python3 "$BENCH_DIR/seed.py" --base "$url" --families "$FAMILIES" \
        --threads "$SEED_THREADS" --ids-out "$ids" --cookie-out "$cookie_file" >&2 || {
        log "$label: seeding failed (server log: $logfile)"
        return 1
    }
    local cookie
    cookie=$(<"$cookie_file")
    # Forget the Redis session at exit: its key is the token's SHA-256.
    if [[ "$slug" == postgres-redis ]]; then
        REDIS_KEYS+=("coop:session:$(printf '%s' "${cookie#coop_session=}" | sha256sum | cut -d' ' -f1)")
    fi
    run_wrk "$label" "$url" "$ids" "$cookie" "$OUT_DIR/wrk-$slug.txt" || return 1
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
ensure_tools

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN as is"
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
rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$REPO_DIR" status --porcelain -- src Cargo.toml Cargo.lock migrations 2>/dev/null)" ]]; then
    rev="$rev with uncommitted changes"
fi

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
    echo "Coop rows: \`GET /api/v1/families/{id}\` with a session cookie and a random id"
    echo "from $FAMILIES seeded families (a session lookup plus a family lookup per"
    echo "request). nginx row: a ${NGINX_FILE_BYTES:-?}-byte static JSON file (a family's JSON) for the same"
    echo "request paths, same wrk script."
    echo "Errors are socket errors (connect, read, write, timeout) plus non-2xx responses."
    for label in "$NGINX_LABEL" "$EMBEDDED_LABEL" "$POSTGRES_LABEL"; do
        if [[ -n "${R_NOTE[$label]:-}" ]]; then echo "- $label: ${R_NOTE[$label]}"; fi
    done
    if ((${#FAILED[@]})); then echo "- Failed to run: ${FAILED[*]} (see bench/out/)."; fi
    echo
    echo "## Settings"
    echo
    echo "- Command: \`bench/run.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS FAMILIES=$FAMILIES)"
    echo "- Load: \`wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/get_family.lua\`, keep-alive, one server at a time"
    echo "- Machine: $(nproc) CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r);"
    echo "  wrk and the server under test share these CPUs, so compare the rows as ratios"
    echo "- Coop: release build ($rev), \`COOP_LOG=json RUST_LOG=warn\`, default pool sizes"
    echo "- Embedded tier: SQLite in a fresh \`COOP_DATA_DIR\`, sessions in SQLite"
    echo "- PostgreSQL + Redis tier: PostgreSQL ${pg_version:-?} (fresh database), sessions in Redis ${redis_version:-?}, all on 127.0.0.1"
    echo "- nginx ${nginx_version:-?}: \`worker_processes 2\`, \`access_log off\`, keep-alive"
    echo "- wrk ${wrk_version:-?}"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"

echo
cat "$RESULTS"
echo

status=0
for label in "$EMBEDDED_LABEL" "$POSTGRES_LABEL"; do
    if [[ -z "${R_RPS[$label]:-}" ]]; then
        log "FAIL: $label did not complete"
        status=1
    elif [[ "${R_ERR[$label]}" -gt 0 ]]; then
        log "FAIL: $label had ${R_ERR[$label]} errors (${R_NOTE[$label]:-})"
        status=1
    fi
done
exit "$status"
