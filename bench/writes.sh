#!/usr/bin/env bash
# Coop write benchmark (issue 19): enrolling a family (POST /api/v1/families:
# the row and its three jobs, HTTP and session included) on both tiers, beside
# the database's own ceiling measured in the same run (pgbench, a one-row
# INSERT per transaction, same client count), and the instance's peak memory
# through a cached-read run and the enrollment runs.
#
#   bench/writes.sh
#
# Per round, one tier after the other, each on a fresh database and a fresh
# `coop serve` (jobs run in the process, as the embedded tier always does):
#   1. pgbench -n -c CONNECTIONS -j 2 -T DURATION with `INSERT INTO t (v) VALUES (..)`
#      on a fresh table (the PostgreSQL ceiling);
#   2. the embedded tier: `coop serve` on a fresh SQLite file, a co-op and
#      FAMILIES families seeded (bench/seed.py), wrk GET /api/v1/families/{id}
#      (cached read), then wrk POST /api/v1/families (bench/enroll.lua); once
#      for each way SQLite's writers can take turns (the test knob
#      COOP_SQLITE_WRITERS: `busy`, SQLite's busy handler alone, as before
#      issue 19; `fifo`, one writer at a time in arrival order; the default
#      `requests-first`, the same with the in-process jobs yielding to requests);
#   3. the same on PostgreSQL + Redis.
# The peak RSS is the server's VmHWM at the end of its round (both wrk runs).
# Medians over ROUNDS rounds; each round's figures are kept in bench/out/writes.
#
# Environment (all optional):
#   ROUNDS=3 DURATION=15s CONNECTIONS=64
#   TIERS="sqlite-busy sqlite-fifo sqlite postgres"   the servers measured, in order
#   FAMILIES=1000         families seeded per server (the cached GETs spread over them)
#   SKIP_BUILD=1          use the existing release binary
#   CARGO_TARGET_DIR      where `cargo build --release` puts it
#   BENCH_RESULTS=FILE    write there instead of bench/RESULTS.md
#   COOP_*                pass through to both servers and are listed
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres, BENCH_REDIS_URL=redis://127.0.0.1:6379
#   QUIET_PCT=25 QUIET_WAIT=600   wait for a quiet machine before each run
#
# Needs root for the Debian packages wrk and postgresql-client (pgbench);
# python3 (stdlib only). Exits non-zero if a Coop run saw errors.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/writes"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-15s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS="${CONNECTIONS:-64}"
FAMILIES="${FAMILIES:-1000}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
QUIET_PCT="${QUIET_PCT:-25}"
QUIET_WAIT="${QUIET_WAIT:-600}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
declare -A C_WAITED

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

DBS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$? pid d db
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # Rounds run in command substitutions (subshells): they list their
    # databases in a file as well, which is what reaches this trap.
    [[ -n "${SCRATCH:-}" && -f "$SCRATCH/databases" ]] && mapfile -t -O "${#DBS[@]}" DBS <"$SCRATCH/databases"
    for db in "${DBS[@]}"; do
        PGCONNECT_TIMEOUT=5 timeout 60 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg() { PGCONNECT_TIMEOUT=5 timeout 120 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -qAt -v ON_ERROR_STOP=1 "$@"; }

fresh_db() { # prints the new database's name
    local name
    name="coop_writes_bench_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    pg -d postgres -c "CREATE DATABASE \"$name\"" >/dev/null
    DBS+=("$name")
    printf '%s\n' "$name" >>"$SCRATCH/databases"
    printf '%s\n' "$name"
}

ensure_tools
command -v pgbench >/dev/null || apt_install postgresql-client || true
command -v pgbench >/dev/null || die "pgbench (Debian package postgresql-client) is needed for the ceiling"
mkdir -p "$OUT_DIR"
SCRATCH=$(mktemp -d /tmp/coop-bench-writes.XXXXXX)
TMP_DIRS+=("$SCRATCH")

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release --features test-knobs --bin coop (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --release --features test-knobs --bin coop) >&2 \
        || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no release binary at $COOP_BIN (unset SKIP_BUILD)"

# ----------------------------------------------------------------- pgbench ----
# pgbench_round N: the one-row INSERT ceiling; prints transactions per second.
pgbench_round() {
    local db script out
    db=$(fresh_db)
    pg -d "$db" -c "CREATE TABLE t (id bigserial PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL DEFAULT now())" >/dev/null
    script="$SCRATCH/insert.sql"
    echo "INSERT INTO t (v) VALUES ('family-' || :client_id);" >"$script"
    out="$OUT_DIR/pgbench-$1.txt"
    wait_quiet "pgbench"
    PGCONNECT_TIMEOUT=5 timeout $(($(secs "$DURATION") + 60)) pgbench -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" \
        -n -c "$CONNECTIONS" -j 2 -T "$(secs "$DURATION")" -f "$script" "$db" >"$out" 2>&1 \
        || { cat "$out" >&2; die "pgbench failed"; }
    awk '/^tps = / {printf "%.0f\n", $3; exit}' "$out"
}

# --------------------------------------------------------------------- coop ----
OWN_ENV=(-u COOP_LISTEN -u COOP_DATA_DIR -u COOP_DATABASE_URL -u COOP_REDIS_URL -u COOP_LOG -u COOP_SQLITE_WRITERS)
read -r -a TIERS <<<"${TIERS:-sqlite-busy sqlite-fifo sqlite postgres}"
declare -A TIER_NAME=(
    [sqlite-busy]="embedded (SQLite), writers on SQLite's busy handler (before)"
    [sqlite-fifo]="embedded (SQLite), one writer at a time in arrival order"
    [sqlite]="embedded (SQLite), one writer at a time, requests first (default)"
    [postgres]="PostgreSQL + Redis"
)

# coop_round TIER N: prints "GET_RPS GET_P99 ENROLL_RPS ENROLL_P50 ENROLL_P99 ERRORS RSS_KB".
coop_round() {
    local tier=$1 round=$2 port url dir log pid db_env=() db get_out enroll_out
    port=$(free_port)
    url="http://127.0.0.1:$port"
    dir=$(mktemp -d /tmp/coop-bench-writes-data.XXXXXX)
    TMP_DIRS+=("$dir")
    case "$tier" in
        postgres)
            db=$(fresh_db)
            db_env=(COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db" COOP_REDIS_URL="$BENCH_REDIS_URL") ;;
        sqlite-busy) db_env=(COOP_SQLITE_WRITERS=busy) ;;
        sqlite-fifo) db_env=(COOP_SQLITE_WRITERS=fifo) ;;
        sqlite) db_env=(COOP_SQLITE_WRITERS=requests-first) ;;
        *) die "unknown tier $tier" ;;
    esac
    log="$OUT_DIR/serve-$tier-$round.log"
    env "${OWN_ENV[@]}" "${db_env[@]}" COOP_LISTEN="127.0.0.1:$port" COOP_DATA_DIR="$dir" \
        COOP_LOG=json RUST_LOG=warn "$COOP_BIN" serve >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$url/ready" "$pid" "$log" || die "coop serve ($tier) did not become ready"
    python3 "$BENCH_DIR/seed.py" --base "$url" --families "$FAMILIES" --ids-out "$SCRATCH/ids" \
        --cookie-out "$SCRATCH/cookie" >&2 || die "seeding $tier failed"
    local cookie errors=0
    cookie=$(cat "$SCRATCH/cookie")
    get_out="$OUT_DIR/wrk-get-$tier-$round.txt"
    enroll_out="$OUT_DIR/wrk-enroll-$tier-$round.txt"
    wait_quiet "$tier get"
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH_DIR/get_family.lua" "$url" -- "$SCRATCH/ids" "$cookie" \
        >"$get_out" 2>&1 || { cat "$get_out" >&2; die "wrk (get, $tier) failed"; }
    wait_quiet "$tier enroll"
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH_DIR/enroll.lua" "$url" -- "$cookie" "w$round-$tier-$RANDOM" \
        >"$enroll_out" 2>&1 || { cat "$enroll_out" >&2; die "wrk (enroll, $tier) failed"; }
    local rss
    rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    stop_pid "$pid"
    forget_pid "$pid"
    local g e g_rps g_p99 e_rps e_p50 e_p99 s1 s2
    g=$(wrk_summary "$get_out") || die "could not read $get_out"
    e=$(wrk_summary "$enroll_out") || die "could not read $enroll_out"
    read -r g_rps _ g_p99 s1 s2 <<<"$g"
    errors=$((s1 + s2))
    read -r e_rps e_p50 e_p99 s1 s2 <<<"$e"
    errors=$((errors + s1 + s2))
    printf '%s %s %s %s %s %s %s\n' "$g_rps" "$g_p99" "$e_rps" "$e_p50" "$e_p99" "$errors" "$rss"
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

: >"$SCRATCH/pgbench"
for tier in "${TIERS[@]}"; do : >"$SCRATCH/$tier"; done
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    tps=$(pgbench_round "$round")
    log "pgbench: $tps transactions/s"
    echo "$tps" >>"$SCRATCH/pgbench"
    for tier in "${TIERS[@]}"; do
        line=$(coop_round "$tier" "$round")
        log "$tier: get rps, get p99, enroll rps, enroll p50, enroll p99, errors, peak RSS kB: $line"
        echo "$line" >>"$SCRATCH/$tier"
    done
done

col() { awk -v c="$2" '{print $c}' "$SCRATCH/$1" | median; }
all_errors=$(for tier in "${TIERS[@]}"; do cat "$SCRATCH/$tier"; done | awk '{s += $6} END {print s + 0}')
ceiling=$(median <"$SCRATCH/pgbench")

section="$SCRATCH/section.md"
{
    echo "## Writes and memory on both tiers (bench/writes.sh)"
    echo
    echo "Measured $(date -u +%Y-%m-%d) at commit $(source_rev "$REPO_DIR"), $(nproc) CPUs; \`ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS bench/writes.sh\`,"
    echo "medians of $ROUNDS rounds. Enrollment is \`POST /api/v1/families\` (the family row and its three jobs)"
    echo "with wrk at $CONNECTIONS connections, each tier with its default \`COOP_RUN_JOBS\`: the embedded tier"
    echo "runs the jobs in the same process during the run, the PostgreSQL tier only queues them (a \`coop worker\`"
    echo "elsewhere runs them). The ceiling is pgbench with a one-row INSERT per transaction at $CONNECTIONS clients,"
    echo "in the same rounds. Peak RSS is the server's VmHWM after a cached-read run and the enrollment run."
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other processes' share of the CPUs during each"
    echo "run is in the log; QUIET_WAIT=$QUIET_WAIT). Other COOP_* settings: $(env | grep '^COOP_' | grep -v METRICS_TOKEN | sort | tr '\n' ' ' || true)"
    echo
    echo "| what | requests/s | p50 | p99 | share of the pgbench ceiling | peak RSS |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "| pgbench, one-row INSERT, $CONNECTIONS clients | $(group "$ceiling") | | | 100 % | |"
    for tier in "${TIERS[@]}"; do
        name=${TIER_NAME[$tier]}
        echo "| Coop $name, enrollment | $(group "$(col "$tier" 3)") | $(col "$tier" 4) ms | $(col "$tier" 5) ms | $(calc '%.0f' "100 * $(col "$tier" 3) / $ceiling") % | $(calc '%.1f' "$(col "$tier" 7) / 1024") MiB |"
        echo "| Coop $name, cached GET | $(group "$(col "$tier" 1)") | | $(col "$tier" 2) ms | | |"
    done
    echo
    echo "Errors (socket errors and non-2xx) over every Coop run: $all_errors. Each round's lines: bench/out/writes/."
} >"$section"
cat "$section" >&2
results_put_section "$RESULTS" bench/writes.sh "$section"
log "results written to ${RESULTS#"$REPO_DIR"/}"
((all_errors == 0)) || die "$all_errors errors in the Coop runs"
