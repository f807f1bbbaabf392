#!/usr/bin/env bash
# Coop background-jobs benchmark: what enrolling a family costs when its three
# effects (welcome email, coordinator email, calendar events) are queued as jobs
# versus run inside the request, and how fast two workers drain the queue.
# Everything runs on 127.0.0.1 against PostgreSQL, with the tests' SMTP sink
# (examples/smtp_sink.rs) as the mail server. Results: a section of
# bench/RESULTS.md (the other sections are kept).
#
#   bench/jobs.sh
#
# One run:
#   1. build (cargo build --release --features test-knobs --bin coop --example smtp_sink), create a
#      fresh PostgreSQL database coop_jobs_bench_<random>, start `coop serve`
#      once, create a co-op and log its coordinator in (bench/seed.py, one family);
#   2. (a) `coop serve` with COOP_RUN_JOBS=off COOP_JOBS_INLINE=off: each
#      enrollment commits the family and its three jobs and answers;
#      `wrk -t2 -cCONNECTIONS -dDURATION --latency -s bench/enroll.lua`, a new
#      family with a new email per request. A sink is the mail server and should
#      receive nothing;
#   3. (b) the same with COOP_JOBS_INLINE=on: each request also runs its three
#      jobs (two emails to a fresh sink, the calendar events) before answering;
#   4. (c) drain: serve stopped; if fewer than MIN_DRAIN_JOBS jobs are ready,
#      more families are enrolled (bench/seed.py through a serve with jobs
#      queued); then WORKERS `coop worker` processes with a fresh sink, timed
#      from their start until `SELECT count(*) FROM jobs WHERE state IN
#      ('ready','running')` is 0 (one psql session, polled every POLL_INTERVAL);
#      the sink then reports messages and unique Message-IDs;
#   5. the results go into bench/RESULTS.md; the database is dropped.
#
# Environment (all optional):
#   DURATION=20s          wrk duration of (a) and (b) (a bare number means seconds)
#   CONNECTIONS=64        wrk connections
#   MIN_DRAIN_JOBS=10000  ready jobs the drain starts from, at least
#   WORKERS=2             `coop worker` processes in the drain
#   DRAIN_TIMEOUT=900     seconds the drain may take before the run fails
#   POLL_INTERVAL=0.1     seconds between two queue-depth polls in the drain
#   SEED_THREADS=8        parallel connections for bench/seed.py's top-up
#   CARGO_TARGET_DIR      where `cargo build --release` puts the binaries
#   SKIP_BUILD=1          use the existing release binaries instead of building
#   BENCH_RESULTS=FILE    write the results there instead of bench/RESULTS.md
#   KEEP_DB=1             keep the benchmark's database at the end (to look into it)
#   COOP_*                other Coop settings (e.g. COOP_WORKER_CONCURRENCY,
#                         default 8; COOP_REDIS_URL, unset: PostgreSQL alone)
#                         pass through to serve and the workers and are listed
#                         in the results
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_STATUS_DETAIL=1 count responses per status code in the wrk script
#   QUIET_PCT=25          before each phase, wait until other processes use less
#                         than this % of one CPU; an enrollment run they disturbed
#                         that much is repeated (the drain is not: it is flagged)
#   QUIET_WAIT=600        most seconds spent waiting for quiet, over the whole script
#   BUSY_RETRIES=2        most repeats of a disturbed enrollment run
#
# Needs root (installs the Debian package wrk if missing), python3 (stdlib
# only), curl, psql and a running PostgreSQL. Exits non-zero if a phase failed,
# saw errors (socket errors, non-2xx responses, a crash), lost an email (fewer
# unique Message-IDs than email jobs done), left jobs dead, or did not drain.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/jobs"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
LUA="$BENCH_DIR/enroll.lua"

DURATION="${DURATION:-20s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS=2
MIN_DRAIN_JOBS="${MIN_DRAIN_JOBS:-10000}"
WORKERS="${WORKERS:-2}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-900}"
POLL_INTERVAL="${POLL_INTERVAL:-0.1}"
SEED_THREADS="${SEED_THREADS:-8}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
SINK_BIN="$TARGET_DIR/release/examples/smtp_sink"
BUSY_RETRIES="${BUSY_RETRIES:-2}"
# An enrollment commits these jobs (src/jobs: enrollment_jobs), two of them emails.
JOBS_PER_FAMILY=3
EMAIL_KINDS="'welcome_email', 'coordinator_notice'"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- cleanup ----
PG_DB=""
POLL_PID=""

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n "$PG_DB" && "${KEEP_DB:-0}" == 1 ]]; then
        log "KEEP_DB=1: database $PG_DB kept (drop it with: psql -h $PGHOST -U $PGUSER -c 'DROP DATABASE \"$PG_DB\"')"
    elif [[ -n "$PG_DB" ]]; then
        if PGCONNECT_TIMEOUT=5 timeout 60 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
                -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1; then
            log "dropped database $PG_DB"
        else
            log "WARNING: could not drop database $PG_DB"
        fi
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
db() { # psql against the benchmark's database, bounded
    PGCONNECT_TIMEOUT=5 timeout "${PG_TIMEOUT:-60}" psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" \
        -d "$PG_DB" -qAt -v ON_ERROR_STOP=1 "$@"
}
db_count() { db -c "$1"; } # SQL returning one number

families_count() { db_count 'SELECT count(*) FROM families'; }
jobs_in() { db_count "SELECT count(*) FROM jobs WHERE state IN ($1)"; } # STATES ("'ready', 'running'")
email_jobs_done() { db_count "SELECT count(*) FROM jobs WHERE state = 'done' AND kind IN ($EMAIL_KINDS)"; }
# jobs_by_kind FILE: "kind state count" lines.
jobs_by_kind() { db -F ' ' -c 'SELECT kind, state, count(*) FROM jobs GROUP BY kind, state ORDER BY kind, state' >"$1"; }
by_kind() { awk -v k="$2" -v s="$3" '$1 == k && $2 == s {n = $3} END {print n + 0}' "$1"; } # FILE KIND STATE

log_lines() { # LOGFILE LEVEL: how many lines of that level a JSON log has
    local n
    n=$(grep -c "\"level\":\"$2\"" "$1" 2>/dev/null || true)
    printf '%s\n' "${n:-0}"
}

# ------------------------------------------------------------------- sink ----
# start_sink SLUG: the SMTP sink on a free port; sets SINK_PID, SINK_URL, SINK_OUT.
# When stopped it writes every Message-ID it received to message-ids-SLUG.txt.
start_sink() {
    local slug=$1 port i
    port=$(free_port)
    SINK_OUT="$OUT_DIR/sink-$slug.out"
    "$SINK_BIN" "127.0.0.1:$port" --message-ids "$OUT_DIR/message-ids-$slug.txt" \
        >"$SINK_OUT" 2>"$OUT_DIR/sink-$slug.err" &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    SINK_URL="smtp://127.0.0.1:$port"
    for i in $(seq 1 100); do
        grep -q '^listening' "$SINK_OUT" 2>/dev/null && return 0
        kill -0 "$SINK_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "SMTP sink ($slug) did not start listening on 127.0.0.1:$port:"
    cat "$OUT_DIR/sink-$slug.err" >&2 || true
    return 1
}

# stop_sink: stops the sink (SIGTERM) and reads its report into SINK_MESSAGES
# and SINK_UNIQUE; false if it had died or printed no report.
stop_sink() {
    local died=0 report
    kill -0 "$SINK_PID" 2>/dev/null || died=1
    stop_pid "$SINK_PID"
    forget_pid "$SINK_PID"
    report=$(python3 -c '
import json, sys
for line in reversed(open(sys.argv[1]).read().splitlines()):
    if line.startswith("{"):
        r = json.loads(line)
        print(r["messages"], r["unique_message_ids"])
        break
' "$SINK_OUT" 2>/dev/null || true)
    if ((died)) || [[ -z "$report" ]]; then
        log "the SMTP sink had exited or printed no report (see ${SINK_OUT#"$REPO_DIR"/})"
        SINK_MESSAGES=""; SINK_UNIQUE=""
        return 1
    fi
    read -r SINK_MESSAGES SINK_UNIQUE <<<"$report"
}

# ------------------------------------------------------------------- coop ----
# Settings this script sets itself; any other COOP_* of the caller passes through.
OWN_ENV=(-u COOP_LISTEN -u COOP_DATA_DIR -u COOP_DATABASE_URL -u COOP_SMTP_URL -u COOP_RUN_JOBS
    -u COOP_JOBS_INLINE -u COOP_WORKER_LISTEN -u COOP_INSTANCE_ID -u COOP_LOG)

# start_serve SLUG ENV...: `coop serve` on a free port with ENV; waits for
# /ready; sets SERVE_PID, SERVE_URL, SERVE_LOG.
start_serve() {
    local slug=$1 port
    shift
    port=$(free_port)
    SERVE_URL="http://127.0.0.1:$port"
    SERVE_LOG="$OUT_DIR/serve-$slug.log"
    log "starting coop serve on $SERVE_URL${*:+ with $*} (log: ${SERVE_LOG#"$REPO_DIR"/})"
    env "${OWN_ENV[@]}" "$@" COOP_LISTEN="127.0.0.1:$port" COOP_DATABASE_URL="$DB_URL" \
        COOP_LOG=json RUST_LOG=warn "$COOP_BIN" serve >"$SERVE_LOG" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    wait_http "$SERVE_URL/ready" "$SERVE_PID" "$SERVE_LOG"
}

# stop_serve: SIGTERM (in-flight requests finish); false if it had exited.
stop_serve() {
    local ok=0
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
        log "coop serve (pid $SERVE_PID) had exited before it was stopped"
        ok=1
    fi
    stop_pid "$SERVE_PID"
    forget_pid "$SERVE_PID"
    return "$ok"
}

# ------------------------------------------------------------ CPU account ----
# cpu_start ROOT_PID...: snapshots before a measured stretch. Server = the
# ROOT_PIDs and their children, sink = SINK_PID, database = the postgres
# processes; EXCLUDE_PIDS (the drain's psql poller) count nowhere.
EXCLUDE_PIDS=()
cpu_start() {
    CPU_ROOTS=("$@")
    local srv dbp p
    srv=$(for p in "$@"; do tree_pids "$p"; done)
    dbp=$(db_pids)
    # A "0 0" line first: lib.sh's delta reads an empty BEFORE file wrongly
    # (awk's NR == FNR holds into the next file), and in the drain the workers
    # start only after this snapshot.
    # shellcheck disable=SC2086
    { echo "0 0"; snapshot $srv; } >"$SCRATCH/srv0"
    { echo "0 0"; snapshot "$SINK_PID"; } >"$SCRATCH/sink0"
    # shellcheck disable=SC2086
    { echo "0 0"; snapshot $dbp; } >"$SCRATCH/db0"
    times >"$SCRATCH/times0"
    snapshot_all >"$SCRATCH/all0"
    CPU_T0=$(now_secs)
}

# cpu_end LABEL: percent of one CPU over the stretch into C_WRK (this shell's
# waited-for children: wrk), C_SRV, C_SINK, C_DB, C_OTHER.
cpu_end() {
    local label=$1 t1 c0 c1 srv dbp p
    t1=$(now_secs)
    snapshot_all >"$SCRATCH/all1"
    times >"$SCRATCH/times1"
    c0=$(children_secs "$SCRATCH/times0"); c1=$(children_secs "$SCRATCH/times1")
    srv=$(for p in "${CPU_ROOTS[@]}"; do tree_pids "$p"; done)
    dbp=$(db_pids)
    # shellcheck disable=SC2086
    snapshot $srv >"$SCRATCH/srv1"
    snapshot "$SINK_PID" >"$SCRATCH/sink1"
    # shellcheck disable=SC2086
    snapshot $dbp >"$SCRATCH/db1"
    # shellcheck disable=SC2086
    printf '%s\n' $srv "$SINK_PID" $dbp "${EXCLUDE_PIDS[@]}" >"$SCRATCH/ours"
    local cw cs ck cd co
    read -r cw cs ck cd co < <(awk \
        -v wall="$(awk -v a="$CPU_T0" -v b="$t1" 'BEGIN {print b - a}')" -v hz="$CLK_TCK" \
        -v wrk="$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" \
        -v srv="$(delta "$SCRATCH/srv0" "$SCRATCH/srv1")" -v sink="$(delta "$SCRATCH/sink0" "$SCRATCH/sink1")" \
        -v db="$(delta "$SCRATCH/db0" "$SCRATCH/db1")" \
        -v other="$(delta_except "$SCRATCH/ours" "$SCRATCH/all0" "$SCRATCH/all1")" 'BEGIN {
            printf "%.0f %.0f %.0f %.0f %.0f\n", 100 * wrk / wall, 100 * srv / hz / wall,
                100 * sink / hz / wall, 100 * db / hz / wall, 100 * other / hz / wall }')
    C_WRK[$label]=$cw; C_SRV[$label]=$cs; C_SINK[$label]=$ck; C_DB[$label]=$cd; C_OTHER[$label]=$co
    log "$label: CPU (100% = one CPU): wrk $cw%, coop $cs%, sink $ck%, PostgreSQL $cd%, other processes $co%"
}

# ------------------------------------------------------------- enrollment ----
# Results are keyed by phase (queued, inline, drain), never by the labels,
# which hold backticks and spaces and so must stay out of arithmetic.
declare -A LABEL=(
    [queued]="(a) enroll, jobs queued (\`COOP_JOBS_INLINE=off\`)"
    [inline]="(b) enroll, jobs run in the request (\`COOP_JOBS_INLINE=on\`)"
    [drain]="(c) drain"
)
declare -A R_RPS R_P50 R_P99 R_ERR R_PRIOR_ERR R_ATTEMPTS R_FAMILIES R_MSGS R_UNIQUE R_EXPECTED
declare -A R_LEFT R_CRASH R_LOGERR R_NOTE C_SINK

# enroll_phase KEY ENV...: a fresh sink, `coop serve` with ENV, the wrk run
# (repeated while other processes disturb it, at most BUSY_RETRIES times), then
# serve and sink stopped and counted.
enroll_phase() {
    local key=$1 slug=$1
    shift
    local out="$OUT_DIR/wrk-$slug.txt" attempt prior=0 summary rps p50 p99 socket non2xx
    local fam0 done0 left0 limit
    limit=$(($(secs "$DURATION") + 60))
    fam0=$(families_count) || return 1
    done0=$(email_jobs_done) || return 1
    left0=$(jobs_in "'ready', 'running'") || return 1
    start_sink "$slug" || return 1
    start_serve "$slug" "$@" COOP_SMTP_URL="$SINK_URL" || return 1
    rm -f "$out".attempt*
    for attempt in $(seq 1 $((BUSY_RETRIES + 1))); do
        R_ATTEMPTS[$key]=$attempt
        wait_quiet "$key"
        log "$key: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/enroll.lua against $SERVE_URL"
        cpu_start "$SERVE_PID"
        if ! timeout "$limit" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
                -s "$LUA" "$SERVE_URL" -- "$COOKIE" "$slug$attempt-$RUN_TAG" >"$out" 2>&1; then
            log "$key: wrk failed; output:"
            cat "$out" >&2
            return 1
        fi
        cpu_end "$key"
        cat "$out" >&2
        if ! summary=$(wrk_summary "$out"); then
            log "$key: could not parse the wrk output"
            return 1
        fi
        read -r rps p50 p99 socket non2xx <<<"$summary"
        R_RPS[$key]=$rps; R_P50[$key]=$p50; R_P99[$key]=$p99
        R_ERR[$key]=$((socket + non2xx))
        R_NOTE[$key]=""
        if ((socket + non2xx > 0)); then
            R_NOTE[$key]="socket errors $socket, non-2xx $non2xx (${out#"$REPO_DIR"/})"
        fi
        [[ "${C_OTHER[$key]}" -lt "$QUIET_PCT" ]] && break
        ((attempt <= BUSY_RETRIES)) || break
        log "$key: other processes used ${C_OTHER[$key]}% of one CPU during the run; repeating it"
        prior=$((prior + ${R_ERR[$key]}))
        mv "$out" "$out.attempt$attempt"
    done
    R_PRIOR_ERR[$key]=$prior
    R_CRASH[$key]=0
    stop_serve || R_CRASH[$key]=1
    R_LOGERR[$key]=$(log_lines "$SERVE_LOG" ERROR)
    # Counted after serve stopped, so requests still in flight when wrk stopped
    # (which wrk does not count) are in: every family the phase enrolled.
    R_FAMILIES[$key]=$(($(families_count) - fam0))
    R_EXPECTED[$key]=$(($(email_jobs_done) - done0))
    # Jobs the phase added to the queue: all of them in (a), none in (b) unless
    # an inline run failed.
    R_LEFT[$key]=$(($(jobs_in "'ready', 'running'") - left0))
    stop_sink || return 1
    R_MSGS[$key]=$SINK_MESSAGES
    R_UNIQUE[$key]=$SINK_UNIQUE
    log "$key: ${R_RPS[$key]} requests/s, p99 ${R_P99[$key]} ms, ${R_FAMILIES[$key]} families," \
        "$SINK_MESSAGES emails ($SINK_UNIQUE unique Message-IDs), ${R_EXPECTED[$key]} email jobs done"
}

# top_up: enroll families (bench/seed.py, a new co-op, jobs queued) until at
# least MIN_DRAIN_JOBS jobs are ready.
TOPUP_FAMILIES=0
top_up() {
    local ready need
    ready=$(jobs_in "'ready'") || return 1
    ((ready >= MIN_DRAIN_JOBS)) && return 0
    need=$(( (MIN_DRAIN_JOBS - ready + JOBS_PER_FAMILY - 1) / JOBS_PER_FAMILY ))
    log "drain: $ready jobs ready, fewer than $MIN_DRAIN_JOBS; enrolling $need more families"
    start_sink topup || return 1
    start_serve topup COOP_RUN_JOBS=off COOP_JOBS_INLINE=off COOP_SMTP_URL="$SINK_URL" || return 1
    timeout 900 python3 "$BENCH_DIR/seed.py" --base "$SERVE_URL" --families "$need" \
        --threads "$SEED_THREADS" --ids-out "$OUT_DIR/ids-topup.txt" \
        --cookie-out "$OUT_DIR/cookie-topup.txt" >&2 || {
        log "drain: enrolling more families failed (server log: $SERVE_LOG)"
        return 1
    }
    stop_serve || return 1
    stop_sink || return 1
    TOPUP_FAMILIES=$need
    ready=$(jobs_in "'ready'") || return 1
    ((ready >= MIN_DRAIN_JOBS)) || {
        log "drain: still only $ready jobs ready after enrolling $need families"
        return 1
    }
}

# ------------------------------------------------------------------ drain ----
# poll_unfinished: jobs ready or running, into UNFINISHED, through one psql
# session (a coprocess), so polling every 100 ms costs no connection set-up.
poll_unfinished() {
    local line
    # Bash unsets POLLER when psql exits.
    [[ -n "${POLLER[1]:-}" ]] || { log "drain: the psql poller exited"; return 1; }
    printf '%s\n' "SELECT count(*) FROM jobs WHERE state IN ('ready', 'running');" >&"${POLLER[1]}" || return 1
    read -r -t 10 line <&"${POLLER[0]}" || return 1
    if [[ ! "$line" =~ ^[0-9]+$ ]]; then
        log "drain: the poller said: $line"
        return 1
    fi
    UNFINISHED=$line
}

declare -A W_PID W_URL
D_JOBS=""; D_SECS=""; D_RATE=""; D_EXPECTED=""; D_MSGS=""; D_UNIQUE=""; D_DEAD=""; D_LEFT=""
D_CRASH=0; D_LOGERR=0; D_METRICS_READY=""; D_T50=""; D_T90=""; D_T99=""; D_T10K=""; D_RESENT=""
ALL_UNIQUE=""; ALL_MSGS=""; ALL_EXPECTED=""
drain_phase() {
    local key=drain i port done0 t0 t1 deadline alive
    top_up || return 1
    jobs_by_kind "$OUT_DIR/jobs-before-drain.txt" || return 1
    D_JOBS=$(jobs_in "'ready', 'running'") || return 1
    done0=$(email_jobs_done) || return 1
    start_sink drain || return 1
    # exec: the coprocess is psql itself, so its pid is psql's.
    coproc POLLER { PGCONNECT_TIMEOUT=5 exec psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d "$PG_DB" \
        -qAt -v ON_ERROR_STOP=1 2>&1; }
    # Kept apart: bash unsets POLLER_PID once psql exits.
    # shellcheck disable=SC2153 # POLLER_PID is set by coproc
    POLL_PID=$POLLER_PID
    PIDS+=("$POLL_PID")
    EXCLUDE_PIDS=("$POLL_PID")
    poll_unfinished || return 1

    wait_quiet "$key"
    log "$key: $D_JOBS jobs; starting $WORKERS workers"
    cpu_start
    t0=$(now_secs)
    for i in $(seq 1 "$WORKERS"); do
        port=$(free_port)
        W_URL[$i]="http://127.0.0.1:$port"
        env "${OWN_ENV[@]}" COOP_DATABASE_URL="$DB_URL" COOP_SMTP_URL="$SINK_URL" \
            COOP_WORKER_LISTEN="127.0.0.1:$port" COOP_INSTANCE_ID="worker-$i" COOP_LOG=json RUST_LOG=warn \
            "$COOP_BIN" worker >"$OUT_DIR/worker-$i.log" 2>&1 &
        W_PID[$i]=$!
        PIDS+=("${W_PID[$i]}")
        CPU_ROOTS+=("${W_PID[$i]}")
    done
    deadline=$(awk -v t="$t0" -v d="$DRAIN_TIMEOUT" 'BEGIN {printf "%d", t + d}')
    local progress="$OUT_DIR/drain-progress.tsv" polls=0
    printf 'seconds\tready_or_running\n' >"$progress"
    while :; do
        poll_unfinished || return 1
        # Every poll's reading, so the milestones below are as precise as the polling.
        printf '%s\t%s\n' "$(calc '%.2f' "$(now_secs) - $t0")" "$UNFINISHED" >>"$progress"
        polls=$((polls + 1))
        if ((UNFINISHED == 0)); then
            t1=$(now_secs)
            break
        fi
        if ((polls % 50 == 0)); then
            log "$key: $UNFINISHED jobs ready or running"
        fi
        alive=0
        for i in $(seq 1 "$WORKERS"); do
            kill -0 "${W_PID[$i]}" 2>/dev/null && alive=$((alive + 1))
        done
        if ((alive < WORKERS)); then
            log "$key: a worker exited with $UNFINISHED jobs left; last log lines:"
            tail -n 20 "$OUT_DIR"/worker-*.log >&2 || true
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            log "$key: $UNFINISHED jobs still ready or running after ${DRAIN_TIMEOUT}s"
            return 1
        fi
        sleep "$POLL_INTERVAL"
    done
    cpu_end "$key"
    D_SECS=$(calc '%.2f' "$t1 - $t0")
    D_RATE=$(calc '%.0f' "$D_JOBS / ($t1 - $t0)")
    # When the queue first fell to half, a tenth and a hundredth of the jobs:
    # a drain that slows down at the end shows here.
    # And when the first 10,000 were done (the issue's yardstick).
    read -r D_T50 D_T90 D_T99 D_T10K < <(awk -F '\t' -v n="$D_JOBS" 'NR > 1 {
            if (t50 == "" && $2 <= n * 0.5) t50 = $1
            if (t90 == "" && $2 <= n * 0.1) t90 = $1
            if (t99 == "" && $2 <= n * 0.01) t99 = $1
            if (t10k == "" && n - $2 >= 10000) t10k = $1 }
        END { printf "%s %s %s %s\n", t50, t90, t99, (t10k == "" ? "-" : t10k) }' "$progress")
    log "$key: $D_JOBS jobs in ${D_SECS}s ($D_RATE jobs/s); half done at ${D_T50}s, 90% at ${D_T90}s, 99% at ${D_T99}s"

    # The workers' own view of the queue, as a scraper sees it: the `jobs`
    # gauge is computed from the database at each scrape, so every worker
    # shows the same numbers; the first one's are reported.
    for i in $(seq 1 "$WORKERS"); do
        metrics_curl -sf --max-time 5 -o "$OUT_DIR/metrics-worker-$i.txt" "${W_URL[$i]}/metrics" \
            || log "$key: could not read ${W_URL[$i]}/metrics"
    done
    if grep -q '^jobs{' "$OUT_DIR/metrics-worker-1.txt" 2>/dev/null; then
        D_METRICS_READY=$(awk '/^jobs\{/ && /state="ready"/ {n += $NF} END {print n + 0}' \
            "$OUT_DIR/metrics-worker-1.txt")
    else
        D_METRICS_READY="no \`jobs\` gauge in worker 1's /metrics"
    fi
    for i in $(seq 1 "$WORKERS"); do
        kill -0 "${W_PID[$i]}" 2>/dev/null || D_CRASH=1
        stop_pid "${W_PID[$i]}"
        forget_pid "${W_PID[$i]}"
        D_LOGERR=$((D_LOGERR + $(log_lines "$OUT_DIR/worker-$i.log" ERROR)))
    done
    # End of input ends psql.
    local poller_in=${POLLER[1]:-}
    [[ -n "$poller_in" ]] && exec {poller_in}>&-
    stop_pid "$POLL_PID"
    forget_pid "$POLL_PID"
    jobs_by_kind "$OUT_DIR/jobs-after-drain.txt" || return 1
    D_EXPECTED=$(($(email_jobs_done) - done0))
    D_DEAD=$(jobs_in "'dead'")
    D_LEFT=$(jobs_in "'ready', 'running'")
    stop_sink || return 1
    D_MSGS=$SINK_MESSAGES
    D_UNIQUE=$SINK_UNIQUE
    # Over (b) and (c) together: an email job done in the drain may have sent
    # its email in (b) already (its effect recorded, the job cut off before it
    # was marked done), so only the union of both sinks' Message-IDs can be
    # held against all email jobs done.
    local ids_b="$OUT_DIR/message-ids-inline.txt" ids_c="$OUT_DIR/message-ids-drain.txt"
    [[ -f "$ids_b" ]] || : >"$ids_b"
    D_RESENT=$(comm -12 <(grep -vx -- - "$ids_b" | sort -u) <(grep -vx -- - "$ids_c" | sort -u) | wc -l)
    ALL_UNIQUE=$(cat "$ids_b" "$ids_c" | grep -vx -- - | sort -u | wc -l)
    ALL_MSGS=$(cat "$ids_b" "$ids_c" | wc -l)
    ALL_EXPECTED=$((${R_EXPECTED[inline]:-0} + D_EXPECTED))
    log "$key: $D_MSGS emails ($D_UNIQUE unique Message-IDs) for $D_EXPECTED email jobs done; $D_DEAD jobs dead"
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (installs the Debian package wrk if missing)"
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
SCRATCH=$(mktemp -d /tmp/coop-bench-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
for t in python3 curl psql cargo timeout; do
    command -v "$t" >/dev/null || die "'$t' is required but not on PATH"
done
if ! command -v wrk >/dev/null; then
    if ! apt_install wrk || ! command -v wrk >/dev/null; then
        die "could not install the Debian package 'wrk' (apt-get install -y wrk failed)"
    fi
fi

rev=$(source_rev "$REPO_DIR")
extra_env=$(env | grep '^COOP_' \
    | grep -Ev '^COOP_(LISTEN|LOG|DATA_DIR|DATABASE_URL|SMTP_URL|RUN_JOBS|JOBS_INLINE|WORKER_LISTEN|INSTANCE_ID|METRICS_TOKEN)=' \
    | sort | tr '\n' ' ' | sed 's/ $//' || true)

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN and $SINK_BIN as they are"
    rev="$rev (SKIP_BUILD=1: the binaries may be older than this source)"
else
    log "cargo build --release --features test-knobs --bin coop --example smtp_sink (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --release --features test-knobs --bin coop --example smtp_sink) || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"
[[ -x "$SINK_BIN" ]] || die "no binary at $SINK_BIN"

pg -c 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL is not reachable as $PGUSER@$PGHOST:$PGPORT (psql -h $PGHOST -U $PGUSER)"
RUN_TAG=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
PG_DB="coop_jobs_bench_$RUN_TAG"
pg -c "CREATE DATABASE \"$PG_DB\"" >/dev/null || { PG_DB=""; die "could not create a PostgreSQL database"; }
log "created database $PG_DB"
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_DB"

# The co-op and its coordinator's session (stored in PostgreSQL, so it outlives
# each serve): seed.py creates both and enrolls one family.
start_sink setup || die "could not start the SMTP sink"
start_serve setup COOP_RUN_JOBS=off COOP_JOBS_INLINE=off COOP_SMTP_URL="$SINK_URL" \
    || die "coop serve did not start"
timeout 120 python3 "$BENCH_DIR/seed.py" --base "$SERVE_URL" --families 1 --threads 1 \
    --ids-out "$OUT_DIR/ids-setup.txt" --cookie-out "$OUT_DIR/cookie.txt" >&2 \
    || die "could not create the co-op (server log: $SERVE_LOG)"
COOKIE=$(<"$OUT_DIR/cookie.txt")
stop_serve || die "coop serve exited during set-up"
stop_sink || die "the SMTP sink failed during set-up"

FAILED=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# stop_all: after a failed phase, whatever it left running, so the next phase
# starts on a quiet machine.
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}
enroll_phase queued COOP_RUN_JOBS=off COOP_JOBS_INLINE=off || { FAILED+=(queued); stop_all; }
enroll_phase inline COOP_RUN_JOBS=off COOP_JOBS_INLINE=on || { FAILED+=(inline); stop_all; }
drain_phase || { FAILED+=(drain); stop_all; }

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
wrk_version=$(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true)
pg_version=$(pg -c 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)
measured=$(date -u '+%Y-%m-%d %H:%M UTC')
concurrency=${COOP_WORKER_CONCURRENCY:-8 (the default)}

is_failed() { local f; for f in "${FAILED[@]}"; do [[ "$f" == "$1" ]] && return 0; done; return 1; }

enroll_row() { # KEY
    local key=$1
    if [[ -z "${R_RPS[$key]:-}" ]]; then
        printf '| %s | failed | — | — | — | — | — |\n' "${LABEL[$key]}"
        return
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s (%s) of %s |\n' "${LABEL[$key]}" "${R_RPS[$key]}" \
        "${R_P50[$key]}" "${R_P99[$key]}" "${R_ERR[$key]}" "$(group "${R_FAMILIES[$key]:-0}")" \
        "$(group "${R_MSGS[$key]:-?}")" "$(group "${R_UNIQUE[$key]:-?}")" "$(group "${R_EXPECTED[$key]:-?}")"
}

topped_up=""
((TOPUP_FAMILIES > 0)) && topped_up=" and $(group "$TOPUP_FAMILIES") more families enrolled with bench/seed.py"

section="$SCRATCH/section.md"
{
    echo "## Background jobs"
    echo
    echo "Measured $measured with \`bench/jobs.sh\`, commit $rev."
    echo
    echo "Enrollment: \`POST /api/v1/families\` (a new family, a new email each time) with the"
    echo "coordinator's session cookie, $CONNECTIONS connections for $DURATION."
    echo
    echo "| Phase | requests/s | p50 ms | p99 ms | errors | families enrolled | emails received (unique Message-IDs) of email jobs done |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    enroll_row queued
    enroll_row inline
    echo
    echo "(a) commits each family with its $JOBS_PER_FAMILY jobs and answers; no email may leave (\`COOP_RUN_JOBS=off\`)."
    echo "(b) runs the $JOBS_PER_FAMILY jobs (welcome email, coordinator email, calendar events) before answering,"
    echo "with the SMTP sink as the mail server. Families enrolled are counted in the database after serve"
    echo "stopped, so they include requests still in flight when wrk stopped; email jobs done are the"
    echo "\`welcome_email\` and \`coordinator_notice\` jobs that reached \`done\` during the phase."
    echo "Errors: socket errors plus non-2xx responses seen by wrk."
    echo
    echo "| Drain | jobs | seconds | jobs/s | first 10,000 done at (s) | 50% / 90% / 99% done at (s) | email jobs done | messages received | unique Message-IDs | dead jobs | still ready or running |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if [[ -n "$D_RATE" ]]; then
        printf '| %s | %s | %s | %s | **%s** | %s / %s / %s | %s | %s | %s | %s | %s |\n' \
            "$WORKERS workers × concurrency $concurrency" "$(group "$D_JOBS")" "$D_SECS" "$(group "$D_RATE")" \
            "${D_T10K:-?}" "${D_T50:-?}" "${D_T90:-?}" "${D_T99:-?}" \
            "$(group "${D_EXPECTED:-?}")" "$(group "${D_MSGS:-?}")" "$(group "${D_UNIQUE:-?}")" \
            "${D_DEAD:-?}" "${D_LEFT:-?}"
    else
        printf '| %s workers | failed | — | — | — | — | — | — | — | — | — |\n' "$WORKERS"
    fi
    echo
    echo "The drain starts from the jobs left ready by (a) and (b)$topped_up, with serve stopped:"
    echo "\`coop worker\` × $WORKERS (\`COOP_WORKER_CONCURRENCY\` $concurrency) and a fresh SMTP sink."
    echo "Seconds run from starting the workers (their start-up included) until"
    echo "\`SELECT count(*) FROM jobs WHERE state IN ('ready','running')\` first read 0 (polled every ${POLL_INTERVAL}s)."
    echo "The queue depth at every poll is in bench/out/jobs/drain-progress.tsv."
    if [[ -n "$ALL_UNIQUE" ]]; then
        echo
        echo "Every email, (b) and (c) together: $(group "$ALL_EXPECTED") email jobs done, $(group "$ALL_UNIQUE") distinct"
        echo "Message-IDs received (fewer would be emails lost), $(group "$ALL_MSGS") messages in all"
        echo "($((ALL_MSGS - ALL_UNIQUE)) delivered more than once; ${D_RESENT:-0} of them first in (b), then again in the drain)."
        echo "A job done in the drain may have sent its email in (b) already: the effect is recorded by"
        echo "key, so a rerun does not send it again, which is why the two phases are counted together."
    fi
    if [[ -f "$OUT_DIR/jobs-before-drain.txt" && -f "$OUT_DIR/jobs-after-drain.txt" ]]; then
        echo
        echo "| Job kind | ready before the drain | done after | dead after |"
        echo "|---|---:|---:|---:|"
        while read -r kind; do
            printf '| %s | %s | %s | %s |\n' "\`$kind\`" \
                "$(group "$(by_kind "$OUT_DIR/jobs-before-drain.txt" "$kind" ready)")" \
                "$(group "$(by_kind "$OUT_DIR/jobs-after-drain.txt" "$kind" "done")")" \
                "$(group "$(by_kind "$OUT_DIR/jobs-after-drain.txt" "$kind" dead)")"
        done < <(cut -d' ' -f1 "$OUT_DIR/jobs-before-drain.txt" "$OUT_DIR/jobs-after-drain.txt" | sort -u)
    fi
    echo
    echo "CPU during each measured stretch, in % of one CPU ($NCPU CPUs = $((NCPU * 100))%); \"coop\" is serve in"
    echo "(a) and (b) and the workers in (c); \"other\" is every other user-space process (the drain's psql"
    echo "poller left out) and should be near 0:"
    echo
    echo "| Phase | wrk | coop | SMTP sink | PostgreSQL | other |"
    echo "|---|---:|---:|---:|---:|---:|"
    for key in queued inline drain; do
        [[ -n "${C_SRV[$key]:-}" ]] || continue
        wrk_cpu="${C_WRK[$key]}%"
        [[ "$key" == drain ]] && wrk_cpu="—"
        printf '| %s | %s | %s%% | %s%% | %s%% | %s%% |\n' "${LABEL[$key]}" "$wrk_cpu" "${C_SRV[$key]}" \
            "${C_SINK[$key]}" "${C_DB[$key]}" "${C_OTHER[$key]}"
    done
    notes=()
    for key in queued inline; do
        label=${LABEL[$key]}
        [[ -n "${R_NOTE[$key]:-}" ]] && notes+=("- $label: ${R_NOTE[$key]}")
        [[ "${R_PRIOR_ERR[$key]:-0}" -gt 0 ]] && notes+=("- $label: ${R_PRIOR_ERR[$key]} errors in earlier, repeated attempts (bench/out/jobs/*.attempt*)")
        [[ "${R_ATTEMPTS[$key]:-1}" -gt 1 ]] && notes+=("- $label: attempt ${R_ATTEMPTS[$key]}; earlier attempts were repeated because other processes were busy (families and emails count all attempts)")
        [[ "${R_CRASH[$key]:-0}" == 1 ]] && notes+=("- $label: coop serve exited during the phase")
        [[ "${R_LOGERR[$key]:-0}" -gt 0 ]] && notes+=("- $label: coop serve logged ${R_LOGERR[$key]} ERROR lines (bench/out/jobs/)")
    done
    [[ "${R_LEFT[inline]:-0}" -gt 0 ]] \
        && notes+=("- ${LABEL[inline]}: ${R_LEFT[inline]} jobs were ready or running after the phase: inline runs that did not finish, likely the requests in flight when wrk stopped and closed its connections (the drain finishes them)")
    if [[ -n "${R_MSGS[inline]:-}" && "${R_MSGS[inline]}" -gt "${R_EXPECTED[inline]:-0}" ]]; then
        notes+=("- ${LABEL[inline]}: $((R_MSGS[inline] - R_EXPECTED[inline])) more emails than email jobs done: sent, but their jobs not marked \`done\` in the phase")
    fi
    [[ -n "${R_MSGS[queued]:-}" && "${R_MSGS[queued]}" != 0 ]] \
        && notes+=("- ${LABEL[queued]}: the sink received ${R_MSGS[queued]} emails although serve ran no jobs")
    [[ "$D_CRASH" == 1 ]] && notes+=("- ${LABEL[drain]}: a worker exited during the drain")
    [[ "$D_LOGERR" -gt 0 ]] && notes+=("- ${LABEL[drain]}: the workers logged $D_LOGERR ERROR lines (bench/out/jobs/)")
    [[ -n "$D_METRICS_READY" && "$D_METRICS_READY" != 0 ]] \
        && notes+=("- ${LABEL[drain]}: after the drain, \`jobs{state=\"ready\"}\` in the workers' /metrics: $D_METRICS_READY")
    for key in queued inline drain; do
        label=${LABEL[$key]}
        [[ "${C_WAITED[$key]:-0}" -gt 0 ]] && notes+=("- $label: waited ${C_WAITED[$key]} s for other processes to go quiet")
        [[ -n "${C_OTHER[$key]:-}" && "${C_OTHER[$key]}" -ge "$QUIET_PCT" ]] \
            && notes+=("- $label: other processes used ${C_OTHER[$key]}% of one CPU during the run, so it is understated")
    done
    if ((${#FAILED[@]})); then
        failed_labels=()
        for key in "${FAILED[@]}"; do failed_labels+=("${LABEL[$key]}"); done
        notes+=("- Failed to run: ${failed_labels[*]} (see bench/out/jobs/).")
    fi
    if ((${#notes[@]})); then
        echo
        printf '%s\n' "${notes[@]}"
    fi
    echo
    echo "Settings:"
    echo
    echo "- Command: \`bench/jobs.sh\` (DURATION=$DURATION CONNECTIONS=$CONNECTIONS MIN_DRAIN_JOBS=$MIN_DRAIN_JOBS WORKERS=$WORKERS)"
    echo "- Load: \`wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/enroll.lua\`, keep-alive"
    echo "- Coop: release build of $rev; \`COOP_DATABASE_URL\` (PostgreSQL ${pg_version:-?}, fresh database),"
    echo "  \`COOP_RUN_JOBS=off\`, \`COOP_SMTP_URL\` the sink, \`COOP_LOG=json RUST_LOG=warn\`${extra_env:+, $extra_env}; other settings at their defaults"
    echo "- SMTP sink: \`examples/smtp_sink.rs\` (the tests' tests/api/smtp_sink.rs), release build, a fresh one per phase"
    echo "- Machine: $NCPU CPUs ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r); wrk, Coop, the sink and"
    echo "  PostgreSQL share these CPUs; load average before the phases: $LOAD_BEFORE"
    echo "- wrk ${wrk_version:-?}"
} >"$section"

results_put_section "$RESULTS" bench/jobs.sh "$section"
echo
cat "$section"
echo

status=0
for key in queued inline; do
    label=${LABEL[$key]}
    if is_failed "$key" || [[ -z "${R_RPS[$key]:-}" ]]; then
        log "FAIL: $label did not complete"
        status=1
        continue
    fi
    if [[ "${R_ERR[$key]}" -gt 0 || "${R_PRIOR_ERR[$key]:-0}" -gt 0 ]]; then
        log "FAIL: $label had errors (${R_NOTE[$key]:-in earlier attempts})"
        status=1
    fi
    if [[ "${R_CRASH[$key]}" == 1 ]]; then
        log "FAIL: $label: coop serve exited during the phase"
        status=1
    fi
done
if [[ -n "${R_MSGS[queued]:-}" && "${R_MSGS[queued]}" != 0 ]]; then
    log "FAIL: ${LABEL[queued]}: ${R_MSGS[queued]} emails sent by a serve with COOP_RUN_JOBS=off"
    status=1
fi
# Within (b) alone this holds: nothing ran its jobs before it.
if [[ -n "${R_UNIQUE[inline]:-}" && "${R_UNIQUE[inline]}" -lt "${R_EXPECTED[inline]}" ]]; then
    log "FAIL: ${LABEL[inline]}: ${R_UNIQUE[inline]} unique emails for ${R_EXPECTED[inline]} email jobs done"
    status=1
fi
if is_failed drain || [[ -z "$D_RATE" ]]; then
    log "FAIL: ${LABEL[drain]} did not complete"
    status=1
else
    if [[ -z "$ALL_UNIQUE" ]] || ((ALL_UNIQUE < ALL_EXPECTED)); then
        log "FAIL: (b) and (c) together: ${ALL_UNIQUE:-?} distinct emails for ${ALL_EXPECTED:-?} email jobs done"
        status=1
    fi
    if ((D_DEAD > 0 || D_CRASH)); then
        log "FAIL: ${LABEL[drain]}: $D_DEAD dead jobs, worker crash: $D_CRASH"
        status=1
    fi
fi
exit "$status"
