#!/usr/bin/env bash
# Drives a real `coop cluster` (auto-scaler on) with a slice of a traffic trace
# at compressed time, and charts what happened: request rate, instances, CPU and
# p95, in the same format as `coop simulate` (whose chart of the same trace is
# bench/autoscale-growth.svg).
#
#   bench/replay.sh
#
# Defaults replay the source document's month 15 (deploy/traces/growth.csv),
# 08:00 to 24:00 of that day, 120 times faster than real time (8 minutes): the
# enrollment-day spike at 10:00 and the evening peak. The scaler's periods are
# shortened in proportion (evaluation every 2 s, 10 s scale-up cooldown, 40 s
# scale-down window), and each instance is capped at INSTANCE_CPU CPUs so that
# the trace's rates need several instances on this machine.
#
# Environment (all optional):
#   TRACE=deploy/traces/growth.csv FROM=1238400 TO=1296000 SPEED=120 RATE_SCALE=1
#   INSTANCE_CPU=0.05 MAX_INSTANCES=8 FAMILIES=2000
#   SCALE_INTERVAL=2s UP_COOLDOWN=10s DOWN_WINDOW=40s
#   SKIP_BUILD=1
#
# Output: bench/autoscale-replay.svg and bench/out/replay/timeline.csv.
# Needs root (cgroups), nginx (installed when missing), PostgreSQL and Redis.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/replay"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

TRACE="${TRACE:-$REPO_DIR/deploy/traces/growth.csv}"
FROM="${FROM:-1238400}"   # day 15 (month 15), 08:00
TO="${TO:-1296000}"       # day 15, 24:00
SPEED="${SPEED:-120}"
RATE_SCALE="${RATE_SCALE:-1}"
INSTANCE_CPU="${INSTANCE_CPU:-0.05}"
MAX_INSTANCES="${MAX_INSTANCES:-8}"
FAMILIES="${FAMILIES:-2000}"
SCALE_INTERVAL="${SCALE_INTERVAL:-2s}"
UP_COOLDOWN="${UP_COOLDOWN:-10s}"
DOWN_WINDOW="${DOWN_WINDOW:-40s}"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"

[[ $EUID -eq 0 ]] || die "run as root: the CPU caps are cgroups"
ensure_tools
mkdir -p "$OUT_DIR"

PIDS=()
DB="coop_replay_bench_$RANDOM$RANDOM"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release binary and the replay tool"
    (cd "$REPO_DIR" && cargo build --release --locked --bin coop --example replay_trace) >&2
fi
TARGET="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"
COOP="$TARGET/coop"
REPLAY="$TARGET/examples/replay_trace"
REV=$(source_rev "$REPO_DIR")

psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
# start_cluster [EXTRA...]: a cluster on fresh ports; sets CLUSTER_PID, LISTEN, CONTROL.
start_cluster() {
    LISTEN="127.0.0.1:$(free_port)"
    CONTROL="127.0.0.1:$(free_port)"
    COOP_LOG=json RUST_LOG=info,sqlx=warn "$COOP" cluster --instances 1 --workers 1 \
        --instances-max "$MAX_INSTANCES" --instance-cpu "$INSTANCE_CPU" --nginx-workers 1 \
        --scale-interval "$SCALE_INTERVAL" --scale-up-cooldown "$UP_COOLDOWN" \
        --scale-down-stabilisation "$DOWN_WINDOW" \
        --listen "$LISTEN" --control "$CONTROL" --state-dir "$OUT_DIR/cluster" \
        --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" --redis-url "$REDIS_URL" \
        "$@" >>"$OUT_DIR/cluster.log" 2>&1 &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    wait_http "http://$LISTEN/ready" "$CLUSTER_PID" "$OUT_DIR/cluster.log"
}
: >"$OUT_DIR/cluster.log"

# Seeding with the scaler off: its load would otherwise scale the cluster up
# (and the replay should start from one instance).
log "seeding $FAMILIES families"
start_cluster --no-autoscale
timeout 600 python3 "$BENCH_DIR/seed.py" --base "http://$LISTEN" --families "$FAMILIES" \
    --threads 4 --ids-out "$OUT_DIR/ids.txt" --cookie-out "$OUT_DIR/cookie.txt" >&2
stop_pid "$CLUSTER_PID"
forget_pid "$CLUSTER_PID"
start_cluster
# Every id read once, so caches hold what a long-running deployment's would.
wrk -t1 -c8 -d5s -s "$BENCH_DIR/sweep_family.lua" "http://$LISTEN" -- \
    "$OUT_DIR/ids.txt" "$(<"$OUT_DIR/cookie.txt")" >/dev/null 2>&1 || true
sleep "$(( $(secs "$DOWN_WINDOW") + 5 ))"

log "replaying $TRACE seconds $FROM..$TO at ${SPEED}x"
"$REPLAY" --trace "$TRACE" --from "$FROM" --to "$TO" --speed "$SPEED" \
    --rate-scale "$RATE_SCALE" --url "http://$LISTEN" --control "http://$CONTROL" \
    --ids "$OUT_DIR/ids.txt" --cookie "$(<"$OUT_DIR/cookie.txt")" --interval 2 \
    --out "$OUT_DIR/timeline.csv" \
    --title "coop cluster replaying month 15, 08:00-24:00, ${SPEED}x faster; instances capped at $INSTANCE_CPU CPU (commit $REV)" \
    2>&1 | tee "$OUT_DIR/replay.txt" >&2

"$COOP" simulate --render "$OUT_DIR/timeline.csv" --out "$BENCH_DIR/autoscale-replay.svg" \
    | tee "$OUT_DIR/summary.txt" >&2
curl -s "http://$CONTROL/metrics" | grep '^autoscaler_decisions_total{pool="serve"' \
    >"$OUT_DIR/decisions.txt" || true
write_section() {
    echo "## Auto-scaler: a slice of the growth trace against a real cluster"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M') UTC with \`bench/replay.sh\`, commit $REV."
    echo
    echo "\`coop cluster\` (auto-scaler on, instances capped at $INSTANCE_CPU CPU, 1 to $MAX_INSTANCES"
    echo "instances, decisions every $SCALE_INTERVAL, scale-up cooldown $UP_COOLDOWN, scale-down window"
    echo "$DOWN_WINDOW: the default periods shortened with the trace) replaying \`$(basename "$TRACE")\`"
    echo "seconds $FROM to $TO (month 15, 08:00 to 24:00: the enrollment-day spike at 10:00 and the"
    echo "evening peak) ${SPEED}× faster, rates ×$RATE_SCALE, open loop (examples/replay_trace.rs:"
    echo "requests start on schedule whatever the answers; beyond 1,024 in flight they count as failed)."
    echo
    echo "![replay](autoscale-replay.svg)"
    echo
    echo '```'
    cat "$OUT_DIR/summary.txt"
    echo '```'
    echo
    echo "Decisions of the serve pool over the run (\`autoscaler_decisions_total\`):"
    echo
    echo '```'
    sed 's/^autoscaler_decisions_total//' "$OUT_DIR/decisions.txt"
    echo '```'
}
write_section >"$OUT_DIR/section.md"
results_put_section "${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}" "bench/replay.sh" "$OUT_DIR/section.md"
log "chart: bench/autoscale-replay.svg; results: bench/RESULTS.md"
