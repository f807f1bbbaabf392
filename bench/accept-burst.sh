#!/usr/bin/env bash
# The one-second stall of issue 19, measured: CONNECTIONS clients connect to
# one embedded `coop serve` all at once, once
# with COOP_LISTEN_BACKLOG=1024 (tokio's fixed backlog, what Coop had before)
# and once with the default (4096), ROUNDS times alternating. A connection
# that finds the accept queue full has its SYN dropped by the kernel
# (TcpExtListenOverflows / ListenDrops in nstat) and its client sends it again
# after 1 s: those connections take a second or more to open. Only the
# connect is timed (it completes when the kernel queues the connection, however
# busy the server is), so the figures show the accept queue and not the CPU.
# Results: the "Accept queue: a burst of connections" section of bench/RESULTS.md.
#
#   bench/accept-burst.sh
#
# Environment: CONNECTIONS=10000 ROUNDS=3 BACKLOGS="1024 4096" SKIP_BUILD=1
#   CARGO_TARGET_DIR BENCH_RESULTS=FILE
# Needs root for the open-file limit above 10,000 (or a hard limit that
# allows it), python3, curl, nstat and ss (iproute2).

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/accept-burst"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

CONNECTIONS="${CONNECTIONS:-10000}"
ROUNDS="${ROUNDS:-3}"
BACKLOGS="${BACKLOGS:-1024 4096}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
LOADGEN="$TARGET_DIR/release/coop-loadgen"

cleanup() {
    local rc=$? pid d
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for t in python3 curl nstat ss; do
    command -v "$t" >/dev/null || die "'$t' is required but not on PATH (nstat, ss: Debian package iproute2)"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= CONNECTIONS + 1024)) || die "ulimit -n is $(ulimit -n); $CONNECTIONS connections need $((CONNECTIONS + 1024))"
mkdir -p "$OUT_DIR"
rev=$(source_rev "$REPO_DIR")
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    rev="$rev (SKIP_BUILD=1: the binaries may be older than this source)"
else
    (cd "$REPO_DIR" && cargo build --release --features test-knobs --bin coop && cargo build --release -p coop-loadgen) >&2 \
        || die "cargo build --release failed"
fi

listen_drops() {
    nstat -az TcpExtListenOverflows TcpExtListenDrops 2>/dev/null \
        | awk '$1 == "TcpExtListenOverflows" {o = $2} $1 == "TcpExtListenDrops" {d = $2} END {printf "%d %d\n", o, d}'
}

# burst BACKLOG SLUG: a fresh embedded `coop serve`, CONNECTIONS connections at once.
burst() {
    local backlog=$1 slug=$2 data port pid applied o0 d0 o1 d1 t0 t1
    data=$(mktemp -d /tmp/coop-burst.XXXXXX)
    TMP_DIRS+=("$data")
    port=$(free_port)
    env -u COOP_DATABASE_URL -u COOP_REDIS_URL COOP_LISTEN_BACKLOG="$backlog" COOP_DATA_DIR="$data" \
        COOP_LISTEN="127.0.0.1:$port" COOP_MAX_CONNECTIONS=$((CONNECTIONS + 1024)) COOP_LOG=json RUST_LOG=warn \
        "$COOP_BIN" serve >"$OUT_DIR/$slug.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/health" "$pid" "$OUT_DIR/$slug.log" || return 1
    sleep 1
    applied=$(ss -ltnH "sport = :$port" | awk 'NR == 1 {print $3}')
    read -r o0 d0 < <(listen_drops)
    t0=$(now_secs)
    "$LOADGEN" idle --base "http://127.0.0.1:$port" --connections "$CONNECTIONS" --concurrency "$CONNECTIONS" \
        --hold 0 >"$OUT_DIR/$slug.txt" 2>&1 || { cat "$OUT_DIR/$slug.txt" >&2; return 1; }
    t1=$(now_secs)
    read -r o1 d1 < <(listen_drops)
    stop_pid "$pid"
    forget_pid "$pid"
    rm -rf -- "$data"
    python3 - "$OUT_DIR/$slug.json" "$backlog" "$applied" "$((o1 - o0))" "$((d1 - d0))" "$t0" "$t1" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" "$OUT_DIR/$slug.txt" <<'PY'
import json, sys
path, backlog, applied, over, drops, t0, t1, load, txt = sys.argv[1:]
line = next((l for l in open(txt) if l.startswith("open_ms")), "")
f = line.split()
vals = {f[i]: float(f[i + 1]) for i in range(1, len(f) - 1, 2)}
json.dump({"backlog": int(backlog), "applied": int(applied or 0), "overflows": int(over), "drops": int(drops),
           "secs": float(t1) - float(t0), "load": load, **vals}, open(path, "w"))
PY
    log "$slug: backlog $backlog (ss: $applied): $(cat "$OUT_DIR/$slug.json")"
}

STARTED=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    for backlog in $BACKLOGS; do
        burst "$backlog" "backlog$backlog-r$round" || die "the burst with backlog $backlog failed"
    done
done
ELAPSED=$(($(date +%s) - STARTED))

SCRATCH=$(mktemp -d /tmp/coop-burst-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
{
    echo "## Accept queue: a burst of connections"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`bench/accept-burst.sh\`, commit $rev; ${ELAPSED}s in all."
    echo
    echo "$CONNECTIONS clients connect to one embedded \`coop serve\` at the same moment"
    echo "(\`coop-loadgen idle --concurrency $CONNECTIONS\`; the connect alone is timed: it completes when the"
    echo "kernel queues the connection). A SYN that finds the accept queue full is dropped"
    echo "(TcpExtListenOverflows) and sent again by its client after 1 s."
    echo "Medians of $ROUNDS rounds, the backlogs alternating."
    echo
    python3 - "$OUT_DIR" "$ROUNDS" "$BACKLOGS" <<'PY'
import json, statistics, sys
out, rounds, backlogs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
print("| COOP_LISTEN_BACKLOG | listen backlog (ss) | SYNs dropped (ListenOverflows) | connections taking ≥ 1 s | connect p50 ms | connect p99 ms | connect max ms | all connected, s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in backlogs:
    R = []
    for r in range(1, rounds + 1):
        try:
            R.append(json.load(open(f"{out}/backlog{b}-r{r}.json")))
        except (OSError, ValueError):
            pass
    if not R:
        print(f"| {b} | failed | | | | | | |"); continue
    m = lambda k: statistics.median([x.get(k, 0) for x in R])
    print(f"| {b} | {m('applied'):.0f} | {m('overflows'):,.0f} | {m('over_1s'):,.0f} | {m('p50'):.1f} | {m('p99'):,.1f} | {m('max'):,.1f} | {m('secs'):.2f} |")
PY
    echo
    echo "- Machine: $NCPU CPUs, Linux $(uname -r); somaxconn $(cat /proc/sys/net/core/somaxconn),"
    echo "  tcp_max_syn_backlog $(cat /proc/sys/net/ipv4/tcp_max_syn_backlog), syncookies $(cat /proc/sys/net/ipv4/tcp_syncookies)."
    echo "  Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other builds may run)."
} >"$SCRATCH/section.md"
results_put_section "$RESULTS" bench/accept-burst.sh "$SCRATCH/section.md"
cat "$SCRATCH/section.md"
