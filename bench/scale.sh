#!/usr/bin/env bash
# Coop scale-out benchmark: `coop cluster` with 1, 2 and 4 instances, each capped
# at INSTANCE_CPU CPUs (cgroup CFS quota: "many small servers on one host"),
# behind its nginx; wrk reads GET /api/v1/families/{id} (random seeded ids, the
# coordinator's session cookie) through nginx. Scaling efficiency at N instances
# is rps(N) / (N × rps(1)); the target is ≥ 0.85 at 4.
#
#   bench/scale.sh
#
# One run:
#   1. build (cargo build --release --bin coop), create a fresh PostgreSQL
#      database coop_scale_bench_<random>;
#   2. start a one-instance cluster, seed FAMILIES families through it
#      (bench/seed.py), stop it;
#   3. ROUNDS rounds, each measuring 1, 2 and 4 instances (order rotated per
#      round): start `coop cluster --no-autoscale --instances N`, read every id
#      once (warm caches: the steady state), WARMUP of load, then DURATION of
#      wrk with CONNS connections; the cluster's status gives each instance's
#      CPU throttling; stop the cluster;
#   4. the median of the rounds per N goes into bench/RESULTS.md.
#
# Environment (all optional):
#   MIX=read           read: GET /api/v1/families/{id} (cached, cheap per request);
#                      login: POST /api/v1/auth/login (argon2id, ~20 ms of CPU per
#                      request, so the instances, not nginx or wrk, are the limit).
#                      Each mix writes its own section of bench/RESULTS.md.
#   INSTANCE_CPU=0.25  CPUs per instance
#   COUNTS="1 2 4"     instance counts measured
#   ROUNDS=3           rounds (medians are reported)
#   DURATION=15s WARMUP=3s CONNS=64 WRK_THREADS=2 FAMILIES=10000 NGINX_WORKERS=1
#   SKIP_BUILD=1       use the existing release binary
#   BENCH_RESULTS=FILE write the results there instead of bench/RESULTS.md
#
# Needs root (cgroups; installs wrk and nginx-light when missing), python3, curl,
# psql, and a running PostgreSQL and Redis.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/scale"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

MIX="${MIX:-read}"
[[ "$MIX" == read || "$MIX" == login ]] || die "MIX must be read or login"
INSTANCE_CPU="${INSTANCE_CPU:-0.25}"
COUNTS="${COUNTS:-1 2 4}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-$([[ "${MIX:-read}" == login ]] && echo 20s || echo 15s)}"
WARMUP="${WARMUP:-3s}"
if [[ "$MIX" == login ]]; then
    # Enough to keep four instances busy without queueing seconds-long waits
    # on one (wrk counts an answer after 2 s as a timeout).
    CONNS="${CONNS:-8}"
    WRK_THREADS="${WRK_THREADS:-1}"
else
    CONNS="${CONNS:-64}"
    WRK_THREADS="${WRK_THREADS:-2}"
fi
FAMILIES="${FAMILIES:-10000}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"

[[ $EUID -eq 0 ]] || die "run as root: the CPU caps are cgroups"
ensure_tools redis-cli
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.txt "$OUT_DIR"/*.json

PIDS=()
DB="coop_scale_bench_$RANDOM$RANDOM"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building the release binary"
    (cd "$REPO_DIR" && cargo build --release --locked --bin coop) >&2
fi
COOP="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/coop"
[[ -x "$COOP" ]] || die "no release binary at $COOP"
REV=$(source_rev "$REPO_DIR")

psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"

CLUSTER_PID=""
LISTEN=""
CONTROL=""
# start_cluster N: a cluster of N capped instances; sets CLUSTER_PID, LISTEN, CONTROL.
start_cluster() {
    local n=$1
    LISTEN="127.0.0.1:$(free_port)"
    CONTROL="127.0.0.1:$(free_port)"
    # The login mix measures argon2 throughput with one account from one
    # address: the log-in rate limits would answer most of it 429.
    COOP_RATE_LIMITS=off COOP_LOG=json RUST_LOG=warn "$COOP" cluster --no-autoscale --instances "$n" --workers 1 \
        --instances-max 16 --instance-cpu "$INSTANCE_CPU" --nginx-workers "$NGINX_WORKERS" \
        --listen "$LISTEN" --control "$CONTROL" --state-dir "$OUT_DIR/cluster" \
        --database-url "$DB_URL" --redis-url "$REDIS_URL" >"$OUT_DIR/cluster-$n.log" 2>&1 &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    local i
    for i in $(seq 1 300); do
        if ! kill -0 "$CLUSTER_PID" 2>/dev/null; then
            tail -n 20 "$OUT_DIR/cluster-$n.log" >&2
            die "coop cluster exited during start-up"
        fi
        if curl -sf --max-time 2 "http://$CONTROL/status" 2>/dev/null \
            | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if sum(m['state']=='running' for m in s['instances'])==$n else 1)" 2>/dev/null \
            && [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN/ready")" == 200 ]]; then
            return 0
        fi
        sleep 0.2
    done
    die "the cluster with $n instances did not become ready"
}

stop_cluster() {
    stop_pid "$CLUSTER_PID"
    forget_pid "$CLUSTER_PID"
}

log "seeding $FAMILIES families"
start_cluster 1
timeout 1200 python3 "$BENCH_DIR/seed.py" --base "http://$LISTEN" --families "$FAMILIES" \
    --threads 8 --ids-out "$OUT_DIR/ids.txt" --cookie-out "$OUT_DIR/cookie.txt" 2>&1 \
    | tee "$OUT_DIR/seed.txt" >&2
EMAIL=$(sed -n 's/.*coordinator \(bench-[^ ]*@example\.org\).*/\1/p' "$OUT_DIR/seed.txt")
[[ -n "$EMAIL" ]] || die "no coordinator email in the seeding output"
stop_cluster
psql -q -d "$DB" -c "VACUUM ANALYZE" >/dev/null
COOKIE=$(<"$OUT_DIR/cookie.txt")

# measure N ROUND: one measured run; appends "N ROUND RPS P50 P99 ERRORS THROTTLED" to runs.txt.
measure() {
    local n=$1 round=$2 prefix="$OUT_DIR/wrk-$1-$2"
    start_cluster "$n"
    local script args timeout=2s
    if [[ "$MIX" == login ]]; then
        # A login waits its turn for the argon2 CPU: give it 10 s, not wrk's 2 s.
        timeout=10s
        script="$BENCH_DIR/login.lua"
        args=("$EMAIL" "bench-password-123")
    else
        script="$BENCH_DIR/get_family.lua"
        args=("$OUT_DIR/ids.txt" "$COOKIE")
        # Every id read once, so caches hold what a long-running deployment's would.
        wrk -t"$WRK_THREADS" -c"$CONNS" -d"$(( FAMILIES / 2000 + 3 ))s" -s "$BENCH_DIR/sweep_family.lua" \
            "http://$LISTEN" -- "$OUT_DIR/ids.txt" "$COOKIE" >"$prefix-sweep.txt" 2>&1 || true
    fi
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$WARMUP" -s "$script" \
        "http://$LISTEN" -- "${args[@]}" >"$prefix-warmup.txt" 2>&1
    local before after
    before=$(curl -s "http://$CONTROL/status")
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --timeout "$timeout" --latency -s "$script" \
        "http://$LISTEN" -- "${args[@]}" >"$prefix.txt" 2>&1
    after=$(curl -s "http://$CONTROL/status")
    local summary throttled
    summary=$(wrk_summary "$prefix.txt") || die "incomplete wrk output in $prefix.txt"
    # CPU seconds the instances were held back by their caps during the run.
    throttled=$(python3 - "$before" "$after" <<'EOF'
import json, sys
b, a = (json.loads(x) for x in sys.argv[1:3])
tb = {m["pid"]: m.get("throttled_seconds") or 0 for m in b["instances"]}
print("%.1f" % sum((m.get("throttled_seconds") or 0) - tb.get(m["pid"], 0) for m in a["instances"]))
EOF
)
    echo "$n $round $summary $throttled" >>"$OUT_DIR/runs.txt"
    log "instances=$n round=$round: rps p50 p99 socket_errors non2xx = $summary; throttled ${throttled}s"
    stop_cluster
}

for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order, so no count always runs first (or last) in a round.
    read -ra order <<<"$COUNTS"
    shift_by=$(( (round - 1) % ${#order[@]} ))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for n in "${order[@]}"; do
        measure "$n" "$round"
    done
done

# ------------------------------------------------------------------ report ----
SECTION="$OUT_DIR/section.md"
python3 - "$OUT_DIR/runs.txt" "$INSTANCE_CPU" "$REV" "$DURATION" "$CONNS" "$FAMILIES" \
    "$ROUNDS" "$NGINX_WORKERS" "$(nproc)" "$WARMUP" "$WRK_THREADS" "$MIX" >"$SECTION" <<'EOF'
import statistics, sys, time
runs_file, cpu, rev, duration, conns, families, rounds, nginx_workers, ncpu, warmup, wrk_threads, mix = sys.argv[1:]
what = ("`GET /api/v1/families/{id}` with random ids and the coordinator's session cookie (cached reads)"
        if mix == "read" else
        "`POST /api/v1/auth/login` with the seeded coordinator's credentials (an argon2id verification each)")
runs = {}
errors = 0
for line in open(runs_file):
    n, rnd, rps, p50, p99, sock, non2xx, thr = line.split()
    runs.setdefault(int(n), []).append((float(rps), float(p50), float(p99), float(thr)))
    errors += int(sock) + int(non2xx)
med = {n: tuple(statistics.median(r[i] for r in rs) for i in range(4)) for n, rs in runs.items()}
one = med[min(med)][0]
print("## Scale-out (%s): instances capped at %s CPU behind nginx (`coop cluster`)" % ("cached reads" if mix == "read" else "logins", cpu))
print()
print("Measured %s UTC with `MIX=%s bench/scale.sh`, commit %s." % (time.strftime("%Y-%m-%d %H:%M", time.gmtime()), mix, rev))
print()
print("| instances | requests/s (median) | runs | p50 ms | p99 ms | efficiency rps(N) / (N × rps(1)) | instances' CPU throttled, s per run |")
print("|---:|---:|---|---:|---:|---:|---:|")
for n in sorted(med):
    rps, p50, p99, thr = med[n]
    print("| %d | %.0f | %s | %.2f | %.2f | %.2f | %.1f |" % (
        n, rps, " / ".join("%.0f" % r[0] for r in runs[n]), p50, p99, rps / (n * one), thr))
print()
eff4 = med[4][0] / (4 * one) if 4 in med else None
if eff4 is not None:
    print("Target (efficiency ≥ 0.85 at 4 instances): **%s** (measured %.2f)." % ("met" if eff4 >= 0.85 else "not met", eff4))
print()
print("Errors (socket errors + non-2xx) over all runs: %d." % errors)
print()
print(("Each run: a fresh `coop cluster --no-autoscale --instances N --instance-cpu %s` (PostgreSQL + Redis, "
      "nginx with %s worker), %s seeded families (for reads, each read once through it first), %s warm-up, then wrk "
      "(%s threads, %s connections, %s) sending " + what + " through nginx. %s rounds, the order of N rotated per round; the table "
      "gives medians. The machine has %s CPUs: N × %s CPU of instances plus nginx, wrk, PostgreSQL and Redis "
      "share them, so the throttled column shows whether the instances' caps (and not the rest) were the limit.")
      % (cpu, nginx_workers, families, warmup, wrk_threads, conns, duration, rounds, ncpu, cpu))
EOF
cat "$SECTION" >&2
if [[ "$MIX" == read ]]; then
    results_put_section "$RESULTS" "bench/scale.sh" "$SECTION"
else
    results_put_section "$RESULTS" "bench/scale.sh:$MIX" "$SECTION"
fi
log "results written to $RESULTS"
[[ $(awk '{s += $6 + $7} END {print s + 0}' "$OUT_DIR/runs.txt") == 0 ]] || die "some runs saw errors"
