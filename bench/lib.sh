# Shared shell functions for the Coop benchmarks (every bench/*.sh sources it).
# Source it after `set -Eeuo pipefail`; it defines functions and a few globals:
#
#   PIDS=() TMP_DIRS=() PG_DBS=()   what `trap_cleanup`'s trap (or the caller's
#                                   own) stops / removes / drops
#   OUT_DIR, SCRATCH      set by the caller before the functions that use them run
#   QUIET_PCT, QUIET_WAIT, CLK_TCK, NCPU, C_WAITED[label]   (quiet-machine check)
#
# Sourcing it only defines functions and variables (it reads getconf and nproc).

# shellcheck shell=bash

PIDS=()
TMP_DIRS=()
# Databases (of the PostgreSQL that psql reaches by default) the cleanup drops.
PG_DBS=()

# Coop serves /metrics only to a scraper with this token (or on
# COOP_METRICS_LISTEN): every Coop a benchmark starts inherits it, and
# `metrics_curl` sends it.
export COOP_METRICS_TOKEN=${COOP_METRICS_TOKEN:-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}
metrics_curl() { curl -H "Authorization: Bearer $COOP_METRICS_TOKEN" "$@"; }

# trap_cleanup: on exit (INT and TERM become exits 130 and 143) stop every
# process in PIDS, drop every database in PG_DBS and remove every folder in
# TMP_DIRS, keeping the script's exit status.
trap_cleanup() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
bench_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid db d
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${PG_DBS[@]}"; do
        psql -d postgres -qAt -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
            || log "WARNING: could not drop database $db"
    done
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

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

# ensure_tools [EXTRA_TOOL...]: the tools every benchmark needs, plus EXTRA_TOOL;
# installs wrk and nginx from Debian packages when missing.
ensure_tools() {
    local t
    for t in python3 curl psql cargo timeout "$@"; do
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
# source_rev REPO_DIR: the short commit, plus a digest of the source when it
# has uncommitted changes (so a results table names what was measured).
source_rev() {
    local repo=$1 rev digest
    rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n "$(git -C "$repo" status --porcelain -- src crates migrations Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
        digest=$(cd "$repo" && find src crates migrations Cargo.toml Cargo.lock -type f -print0 2>/dev/null | sort -z \
            | xargs -0 sha256sum | sha256sum | cut -c1-12)
        rev="$rev plus uncommitted changes, source digest $digest"
    fi
    printf '%s\n' "$rev"
}

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

# forget_pid PID: drop a finished process from PIDS, so the cleanup trap never
# signals an unrelated process that reused its id.
forget_pid() {
    local i
    for i in "${!PIDS[@]}"; do
        [[ "${PIDS[$i]}" == "$1" ]] && unset 'PIDS[i]'
    done
    return 0
}

secs() { # DURATION ("15s", "2m", "15") -> whole seconds
    awk -v d="$1" 'BEGIN {
        n = d; sub(/[a-z]+$/, "", n); u = d; sub(/^[0-9.]+/, "", u)
        m = (u == "m") ? 60 : (u == "h") ? 3600 : 1
        printf "%d", n * m }'
}
group() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; } # 100000 -> 100,000
calc() { awk "BEGIN { printf \"$1\", $2 }"; }          # calc FORMAT EXPR
max2() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 >= b + 0) ? a : b }'; }

# bench_field FILE NAME: the number NAME=… on the BENCH line our wrk Lua scripts print.
bench_field() { grep '^BENCH ' "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }

# wrk_summary FILE: "RPS P50_MS P99_MS SOCKET_ERRORS NON2XX" from a `wrk --latency`
# output with our Lua scripts' BENCH line. NON2XX is the larger of the Lua count and
# wrk's own "Non-2xx or 3xx responses" line (printed only when non-zero). Fails when
# the output is incomplete (a crashed or killed run).
wrk_summary() {
    local out=$1 rps p50 p99 socket non2xx wrk_non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '/Latency Distribution/ {d=1} d && $1=="50%" {print $2; exit}' "$out")
    p99=$(awk '/Latency Distribution/ {d=1} d && $1=="99%" {print $2; exit}' "$out")
    grep -q '^BENCH ' "$out" || return 1
    [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || return 1
    socket=$(bench_field "$out" socket_errors)
    non2xx=$(bench_field "$out" non2xx)
    wrk_non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    printf '%s %s %s %s %s\n' "$(printf '%.0f' "$rps")" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "${socket:-0}" "$(max2 "${non2xx:-0}" "${wrk_non2xx:-0}")"
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

# ------------------------------------------------------------ CPU check ----
# wrk and the server share the machine's CPUs with everything else on it, so each
# run records where the CPU went: wrk, the server, PostgreSQL + Redis, and other
# processes (near zero, unless another job skewed the numbers). Processes that
# start and end within one run are not seen; the quiet wait before it helps there.
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
QUIET_WAIT="${QUIET_WAIT:-600}"
QUIET_PCT="${QUIET_PCT:-25}"
declare -A C_WRK C_SRV C_DB C_OTHER C_WAITED

busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# snapshot_all: "pid jiffies" for every user-space process (kernel threads, this
# shell and the snapshot itself left out).
snapshot_all() {
    python3 - "$$" <<'PY'
import os, sys
skip = {os.getpid(), int(sys.argv[1])}
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) in skip:
        continue
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    ppid = int(fields[1])
    if int(pid) == 2 or ppid == 2:  # kthreadd and kernel threads
        continue
    print(pid, int(fields[11]) + int(fields[12]))
PY
}
# delta_except EXCLUDED BEFORE AFTER: like delta, over pids not listed in EXCLUDED.
delta_except() {
    awk 'FILENAME == ARGV[1] {x[$1] = 1; next}
         FILENAME == ARGV[2] {a[$1] = $2; next}
         !($1 in x) {s += $2 - (($1 in a) ? a[$1] : 0)} END {print s + 0}' "$1" "$2" "$3"
}
now_secs() { date +%s.%N; }

# snapshot PID...: "pid jiffies" for each live pid (utime + stime, all threads).
snapshot() {
    local p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk -v p="$p" '{print p, $12 + $13}'
    done
}
# delta BEFORE AFTER: jiffies used in between; a pid only in AFTER started in
# between (e.g. a new PostgreSQL backend), so all of its time counts.
delta() { awk 'NR == FNR {a[$1] = $2; next} {s += $2 - (($1 in a) ? a[$1] : 0)} END {print s + 0}' "$1" "$2"; }
# children_secs FILE: CPU seconds of this shell's waited-for children (wrk runs
# as one) from the output of `times`, which must run in this shell, not in $(...).
children_secs() {
    awk 'NR == 2 {t = 0; for (i = 1; i <= 2; i++) {split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2]}
                  printf "%.3f", t}' "$1"
}
db_pids() { pgrep -x postgres || true; pgrep -x redis-server || true; }
tree_pids() { echo "$1"; pgrep -P "$1" || true; }

# wait_quiet LABEL: wait until the rest of the machine uses less than QUIET_PCT %
# of one CPU over two consecutive 2-second samples, so builds or tests running
# alongside do not eat into the run. All waits together take at most QUIET_WAIT
# seconds; after that, runs start regardless (and are flagged if disturbed).
QUIET_SPENT=0
wait_quiet() {
    local label=$1 start b0 b1 pct quiet=0 waited
    start=$(date +%s)
    while :; do
        b0=$(busy_jiffies); sleep 2; b1=$(busy_jiffies)
        pct=$(( (b1 - b0) * 100 / (2 * CLK_TCK) ))
        if ((pct < QUIET_PCT)); then
            quiet=$((quiet + 1))
            ((quiet >= 2)) && break
            continue
        fi
        quiet=0
        waited=$(( $(date +%s) - start ))
        if ((QUIET_SPENT + waited >= QUIET_WAIT)); then
            log "$label: machine still busy (${pct}% of one CPU) and the ${QUIET_WAIT}s waiting budget is spent; running anyway"
            break
        fi
        if ((waited % 30 < 2)); then
            log "$label: waiting for a quiet machine (other processes use ${pct}% of one CPU)"
        fi
    done
    waited=$(( $(date +%s) - start ))
    # The two quiet samples themselves are not waiting.
    ((waited -= 4, waited < 0)) && waited=0
    QUIET_SPENT=$((QUIET_SPENT + waited))
    C_WAITED[$label]=$(( ${C_WAITED[$label]:-0} + waited ))
}

# ------------------------------------------------------------------ nginx ----
# start_nginx LOGFILE: nginx serving a small static JSON file (shaped like a
# family) for every path, on a free port of 127.0.0.1, with 2 workers of
# NGINX_WORKER_CONNECTIONS (default 1024) connections each. Sets
# NGINX_PORT, NGINX_PID and NGINX_FILE_BYTES; the pid goes into PIDS and the
# folder into TMP_DIRS. Returns non-zero if it does not answer within 60 s.
start_nginx() {
    local logfile=$1 dir port pid
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
worker_rlimit_nofile $((${NGINX_WORKER_CONNECTIONS:-1024} * 2 + 64));
events { worker_connections ${NGINX_WORKER_CONNECTIONS:-1024}; }
http {
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $dir/tmp_client;
    proxy_temp_path $dir/tmp_proxy;
    fastcgi_temp_path $dir/tmp_fastcgi;
    uwsgi_temp_path $dir/tmp_uwsgi;
    scgi_temp_path $dir/tmp_scgi;
    server {
        # nginx's default backlog is 511: too few for thousands of users
        # connecting at once (bench/users.sh); Coop's is 4,096 too.
        listen 127.0.0.1:$port backlog=4096;
        root $dir/www;
        # Every path (the wrk script asks for /api/v1/families/<id>) gets the file.
        location / { try_files /family.json =404; }
    }
}
EOF
    "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    NGINX_PORT=$port
    NGINX_PID=$pid
    wait_http "http://127.0.0.1:$port/health" "$pid" "$logfile"
}

# ---------------------------------------------------------------- cluster ----
# wait_cluster_ready PID STATE_DIR CONTROL N LOGFILE STATUS_FILE URL: until the
# `coop cluster` PID reports N running instances on its control API (with the
# token it writes into STATE_DIR) and URL/ready answers 200 (90 s at most);
# the last status is left in STATUS_FILE. False if the cluster exits or never
# gets there.
wait_cluster_ready() {
    local pid=$1 state_dir=$2 control=$3 n=$4 logfile=$5 status=$6 url=$7 i token=""
    for i in $(seq 1 450); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2
            log "coop cluster exited during start-up"
            return 1
        fi
        # The control API asks for the token `coop cluster` writes into its state dir.
        [[ -z "$token" && -s "$state_dir/control.token" ]] && token=$(<"$state_dir/control.token")
        if [[ -n "$token" ]] \
            && curl -sf --max-time 2 -H "Authorization: Bearer $token" "http://$control/status" \
                -o "$status" 2>/dev/null \
            && python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if sum(m['state']=='running' for m in s['instances'])==$n else 1)" \
                "$status" 2>/dev/null \
            && [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/ready")" == 200 ]]; then
            return 0
        fi
        sleep 0.2
    done
    log "the cluster with $n instances did not become ready"
    return 1
}

# --------------------------------------------------------------- results ----
# Sections of a results file that belong to one script are wrapped in
#   <!-- begin SCRIPT -->  ...  <!-- end SCRIPT -->
# so each script can rewrite its own section and keep the others.

# results_sections_except FILE SCRIPT: every marked section of FILE that is not
# SCRIPT's, with its markers, each preceded by a blank line.
results_sections_except() {
    local file=$1 script=$2
    [[ -f "$file" ]] || return 0
    awk -v own="$script" '
        /^<!-- begin [^ ]+ -->$/ { name = $3; keep = (name != own); if (keep) print "" }
        keep { print }
        /^<!-- end [^ ]+ -->$/ { keep = 0 }' "$file"
}

# results_put_section FILE SCRIPT SECTION_FILE: replace SCRIPT's marked section
# of FILE with SECTION_FILE (markers added here), or append it; the rest of FILE
# stays as it is. A missing FILE gets a title first.
results_put_section() {
    local file=$1 script=$2 section=$3
    {
        if [[ -f "$file" ]]; then
            awk -v own="$script" '
                $0 == "<!-- begin " own " -->" { skip = 1; next }
                skip && $0 == "<!-- end " own " -->" { skip = 0; next }
                !skip { print }' "$file" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
        else
            echo "# Coop benchmark results"
        fi
        echo
        echo "<!-- begin $script -->"
        cat "$section"
        echo "<!-- end $script -->"
    } >"$file.tmp"
    mv "$file.tmp" "$file"
}

# ------------------------------------------------ coop serve, Redis, databases
# Shared by bench/users.sh and bench/enrollment-day.sh. They use the caller's
# NICE (a command prefix, e.g. `nice -n -10`), OWN_ENV (`env` arguments that
# unset what the caller sets itself), COOP_BIN and OUT_DIR.

# desc_pids PID: PID and all its descendants.
desc_pids() {
    local p=$1 c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do desc_pids "$c"; done
}

# Snapshots are per pid ("pid jiffies", `snapshot`), and `delta` counts a pid
# that started in between in full. tree_snapshot PID: PID and its
# descendants; db_snapshot: PostgreSQL and Redis (`db_pids`).
# shellcheck disable=SC2046
tree_snapshot() { snapshot $(desc_pids "$1"); }
# shellcheck disable=SC2046
db_snapshot() { snapshot $(db_pids); }

# start_redis [REDIS-SERVER OPTION...]: a private Redis on a free port (no
# persistence); sets REDIS_PID, REDIS_URL.
start_redis() {
    local port i
    port=$(free_port)
    "${NICE[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --protected-mode yes "$@" >"$OUT_DIR/redis-$port.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    REDIS_URL="redis://127.0.0.1:$port"
    for i in $(seq 1 100); do
        [[ "$(redis-cli -p "$port" PING 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    die "redis-server on port $port did not answer"
}
stop_redis() { stop_pid "$REDIS_PID"; forget_pid "$REDIS_PID"; }

# start_serve LOGFILE ENV...: one `coop serve`; sets SRV_PID, SRV_URL, SRV_PORT.
start_serve() {
    local logfile=$1
    shift
    SRV_PORT=$(free_port)
    SRV_URL="http://127.0.0.1:$SRV_PORT"
    "${NICE[@]}" env "${OWN_ENV[@]}" "$@" COOP_LISTEN="127.0.0.1:$SRV_PORT" COOP_LOG=json RUST_LOG=warn \
        "$COOP_BIN" serve >"$logfile" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_http "$SRV_URL/health" "$SRV_PID" "$logfile"
}
stop_serve() { stop_pid "$SRV_PID"; forget_pid "$SRV_PID"; }
stop_cluster() { stop_pid "$CLUSTER_PID"; forget_pid "$CLUSTER_PID"; }

# fresh_pg TEMPLATE: a new database (named BENCH_DB_PREFIX_…) copied from
# TEMPLATE, dropped by the cleanup trap; prints its name.
fresh_pg() {
    local db
    db="${BENCH_DB_PREFIX:-coop_bench}_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
    psql -d postgres -qAt -c "CREATE DATABASE \"$db\" TEMPLATE \"$1\"" >/dev/null || return 1
    PG_DBS+=("$db")
    echo "$db"
}
drop_pg() { psql -d postgres -qAt -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true; }

# jf FILE EXPR: a field of a JSON file (a python expression on `d`).
jf() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=$2; print('' if v is None else v)" "$1"; }
