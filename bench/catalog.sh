#!/usr/bin/env bash
# The class catalog page (the hottest page of enrollment day) under the
# cached-read benchmark's load, on both tiers. The web app's budget: server
# time for the catalog page at p99 <= 10 ms. bench/catalog.py does one tier's
# rounds (seeding, the family's account, wrk, Coop's own latency histogram);
# this script builds, starts each tier, and writes the "Catalog page" section
# of bench/RESULTS.md.
#
#   bench/catalog.sh
#
# Environment (all optional):
#   DURATION=15s CONNECTIONS=64 FAMILIES=10000 CLASSES=40 ROUNDS=3
#   CARGO_TARGET_DIR, SKIP_BUILD=1, BENCH_RESULTS=FILE (as bench/run.sh)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres, BENCH_REDIS_URL=redis://127.0.0.1:6379
#   QUIET_PCT=25 QUIET_WAIT=600 (wait for a quiet machine before each tier)
#
# Needs root (installs wrk if missing), python3, psql, PostgreSQL and Redis.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/catalog"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
DURATION="${DURATION:-15s}"
[[ "$DURATION" =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS="${CONNECTIONS:-64}"
FAMILIES="${FAMILIES:-10000}"
CLASSES="${CLASSES:-40}"
ROUNDS="${ROUNDS:-3}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
# Coop serves /metrics to the bearer of this token (when it asks for one).
export COOP_METRICS_TOKEN="${COOP_METRICS_TOKEN:-bench-metrics-token}"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

PIDS=()
TMP_DIRS=()
PG_DB=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid d
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n "$PG_DB" ]]; then
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1
    fi
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
declare -A C_WAITED

# run_tier SLUG ENV...: start Coop with ENV, run catalog.py, keep its JSON lines.
run_tier() {
    local slug=$1 port url pid data_dir logfile="$OUT_DIR/coop-$1.log"
    shift
    wait_quiet "$slug"
    data_dir=$(mktemp -d /tmp/coop-bench-catalog.XXXXXX)
    TMP_DIRS+=("$data_dir")
    port=$(free_port)
    url="http://127.0.0.1:$port"
    log "$slug: starting coop on $url"
    env -u COOP_DATABASE_URL -u COOP_REDIS_URL -u COOP_INSTANCE_ID \
        "$@" COOP_DATA_DIR="$data_dir" COOP_LISTEN="127.0.0.1:$port" COOP_LOG=json \
        RUST_LOG=warn COOP_RUN_JOBS=on "$COOP_BIN" serve >"$logfile" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$url/health" "$pid" "$logfile" || return 1
    mkdir -p "$OUT_DIR/$slug"
    python3 "$BENCH_DIR/catalog.py" --base "$url" --outbox "$data_dir/outbox" \
        --families "$FAMILIES" --classes "$CLASSES" --duration "$DURATION" \
        --connections "$CONNECTIONS" --rounds "$ROUNDS" --out-dir "$OUT_DIR/$slug" \
        >"$OUT_DIR/$slug.jsonl"
    stop_pid "$pid"
}

[[ $EUID -eq 0 ]] || die "run as root (installs wrk)"
mkdir -p "$OUT_DIR"
ensure_tools
rev=$(source_rev "$REPO_DIR")
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    rev="$rev (SKIP_BUILD=1: the binary may be older than this source)"
else
    (cd "$REPO_DIR" && cargo build --release --bin coop) || die "cargo build --release failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"

run_tier embedded
PG_DB="coop_catalog_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
run_tier postgres-redis COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_DB" \
    COOP_REDIS_URL="$BENCH_REDIS_URL"

section=$(mktemp)
TMP_DIRS+=("$section")
python3 - "$OUT_DIR" "$rev" "$DURATION" "$CONNECTIONS" "$FAMILIES" "$CLASSES" >"$section" <<'EOF'
import json, statistics, sys
out, rev, duration, conns, families, classes = sys.argv[1:]
def med(xs): return statistics.median(xs) if xs else float("nan")
print("## Catalog page under the cached-read load (`bench/catalog.sh`)\n")
print(f"Source {rev}. `/catalog` for a signed-in family ({classes} classes, one "
      f"semester; {families} families seeded as in `bench/run.sh`), wrk -t1 -c4 for "
      f"{duration}: alone, then beside the cached-read load (wrk -t2 -c{conns}, "
      "`bench/get_family.lua`). Server time is Coop's own "
      "`http_request_duration_seconds{route=\"/catalog\"}` over the run (its "
      "buckets: 0.5, 1, 2.5, 5, 10, 25 ms, ...). Medians of the rounds.\n")
print("| Tier | Run | Catalog req/s | Client p50 | Client p99 | Server: share within 10 ms | Server p99 at most | Cached reads beside it (req/s) | Errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for slug, name in (("embedded", "Embedded (SQLite)"), ("postgres-redis", "PostgreSQL + Redis")):
    rows = [json.loads(l) for l in open(f"{out}/{slug}.jsonl") if l.strip()]
    for run in ("alone", "loaded"):
        rs = [r[run] for r in rows]
        errors = sum(r["non_2xx"] for r in rs) + sum(1 for r in rs if r["socket_errors"])
        load = med([r["load"]["rps"] for r in rs]) if run == "loaded" else None
        if run == "loaded":
            errors += sum(r["load"]["non_2xx"] for r in rs)
        print(f"| {name} | {'beside the load' if run == 'loaded' else 'alone'} "
              f"| {med([r['rps'] for r in rs]):,.0f} "
              f"| {med([r['p50_ms'] for r in rs]):.2f} ms | {med([r['p99_ms'] for r in rs]):.2f} ms "
              f"| {100 * med([r['server']['within_10ms'] for r in rs]):.2f} % "
              f"| {1000 * med([r['server']['p99_at_most_s'] for r in rs]):g} ms "
              f"| {'—' if load is None else f'{load:,.0f}'} | {errors} |")
print()
page = rows[0]["page_bytes"] if rows else 0
print(f"The page is {page:,} bytes of HTML before compression.")
EOF
results_put_section "$RESULTS" catalog.sh "$section"
cat "$section"
log "results written to $RESULTS"
