#!/usr/bin/env bash
# Coop enrollment-day benchmark (issue 13): registration opens and families
# arrive open-loop (a constant arrival rate; latency counted from each request's
# intended send time, so queueing is never hidden), each reading the catalog
# and enrolling its 1–3 children, while others keep browsing the catalog.
# Everything runs on 127.0.0.1. Results: the "Enrollment day" section of
# bench/RESULTS.md (the other sections are kept).
#
#   bench/enrollment-day.sh
#
# One run:
#   1. build `cargo build --release --features test-knobs --bin coop` and
#      `cargo build --release -p coop-loadgen` (unless SKIP_BUILD=1);
#   2. seed twice through the HTTP API with `coop-loadgen seed` (it is also the
#      SMTP server the welcome emails go to, so every family accepts its own
#      invite: a real account and session): FAMILIES families with CHILDREN
#      children, CLASSES classes of CAPACITY seats in one semester whose
#      registration is open. Once into an embedded (SQLite) data dir, once into a
#      PostgreSQL database; each is a template every run starts from (a copy of
#      the data dir; CREATE DATABASE ... TEMPLATE), so every run starts at the
#      opening of registration with empty classes;
#   3. step search on the embedded tier (`coop serve`, SQLite): SEARCH_RATES
#      families/s, SEARCH_DURATION each, up while the rate is sustained (no
#      errors, every session finished, p99 of enroll and of catalog reads under
#      SUSTAIN_P99_MS), then one step halfway to the first rate that was not;
#      R = the highest sustained rate;
#   4. ROUNDS rounds of FINAL_DURATION each: embedded at R, PostgreSQL + Redis
#      with 1 instance (`coop cluster`, nginx in front) at R, and with 3 instances
#      at 2R; a fresh copy of the seeded database and a fresh Redis per run;
#      /metrics of every instance before and after; after the run, with the
#      servers stopped, bench/enrollment_check.py reads the database: seats
#      overbooked and waitlist order violations must both be 0;
#   5. medians of the rounds go into bench/RESULTS.md.
#
# Environment (all optional):
#   FAMILIES=5000 CHILDREN=10000 CLASSES=250 CAPACITY=12
#   SEARCH_RATES="10 20 40 80 160"   families/s tried on the embedded tier
#   SEARCH_DURATION=15   seconds of arrivals per search step
#   FINAL_DURATION=40    seconds of arrivals per measured run
#   ROUNDS=3             measured rounds per setup (medians reported)
#   SUSTAIN_P99_MS=500   a rate is sustained if both p99s stay under this
#   THINK_MS=250         pause between a family's steps
#   BROWSE_PER_FAMILY=2  browsing catalog reads per second per family/s of arrivals
#   INSTANCES=3          instances of the high setup (runs at twice R)
#   NGINX_WORKERS=1      nginx workers of `coop cluster`
#   LOADGEN_THREADS=1    the load generator's runtime threads
#   RATE=N               skip the search and use N families/s as R
#   SKIP_BUILD=1         use the existing release binaries
#   CARGO_TARGET_DIR     where the release binaries are
#   BENCH_RESULTS=FILE   write the results there instead of bench/RESULTS.md
#   QUIET_PCT=25 QUIET_WAIT=120   wait for a quiet machine before each measured
#                        run (at most QUIET_WAIT seconds over the whole script)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres   local PostgreSQL (trust auth)
#   BENCH_NICE=N         run Coop, nginx, Redis and the load generator under `nice -n N`
#                        (e.g. -10 on a machine shared with builds; noted in the results)
#   COOP_BIN_NOTE=TEXT   where the coop binary came from (with SKIP_BUILD=1), for the results
#
# Needs root (nginx for `coop cluster`; installs nginx-light if missing), python3,
# curl, psql, redis-server and redis-cli (a private Redis per run, on a free port).
# Exits non-zero on any error: a failed step, failed requests in a measured run,
# seats overbooked or waitlist order violations.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
OUT_DIR="$BENCH_DIR/out/enrollment-day"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
QUIET_WAIT="${QUIET_WAIT:-120}"
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

FAMILIES="${FAMILIES:-5000}"
CHILDREN="${CHILDREN:-10000}"
CLASSES="${CLASSES:-250}"
CAPACITY="${CAPACITY:-12}"
SEARCH_RATES="${SEARCH_RATES:-10 20 40 80 160}"
SEARCH_DURATION="${SEARCH_DURATION:-15}"
FINAL_DURATION="${FINAL_DURATION:-40}"
ROUNDS="${ROUNDS:-3}"
SUSTAIN_P99_MS="${SUSTAIN_P99_MS:-500}"
THINK_MS="${THINK_MS:-250}"
BROWSE_PER_FAMILY="${BROWSE_PER_FAMILY:-2}"
INSTANCES="${INSTANCES:-3}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="$TARGET_DIR/release/coop"
# Every family signs in from 127.0.0.1 here, where in life each has its own
# address: the per-address sign-in limits would refuse the seeding's 5,000
# invite acceptances, so they are off for the benchmark.
export COOP_RATE_LIMITS=off
LOADGEN="$TARGET_DIR/release/coop-loadgen"
NICE=()
[[ -n "${BENCH_NICE:-}" ]] && NICE=(nice -n "$BENCH_NICE")
TARGET_ENROLL_P99=50
TARGET_CATALOG_P99=10

# ---------------------------------------------------------------- cleanup ----
trap_cleanup

# ---------------------------------------------------------------- helpers ----
# coop serve, Redis and databases: bench/lib.sh (as for bench/users.sh).
BENCH_DB_PREFIX=coop_eday
OWN_ENV=(-u COOP_LISTEN -u COOP_DATA_DIR -u COOP_DATABASE_URL -u COOP_REDIS_URL -u COOP_SMTP_URL
    -u COOP_RUN_JOBS -u COOP_INSTANCE_ID)

# start_cluster N DB_URL REDIS_URL LOGFILE STATE_DIR: `coop cluster` (nginx in
# front of N instances and one worker; its processes' logs in STATE_DIR); sets
# CLUSTER_PID, SRV_URL, INSTANCE_URLS.
start_cluster() {
    local n=$1 db_url=$2 redis_url=$3 logfile=$4 state_dir=$5 listen control
    listen="127.0.0.1:$(free_port)"
    control="127.0.0.1:$(free_port)"
    rm -rf -- "$state_dir"
    mkdir -p "$state_dir"
    "${NICE[@]}" env "${OWN_ENV[@]}" COOP_LOG=json RUST_LOG=warn "$COOP_BIN" cluster --no-autoscale \
        --instances "$n" --workers 1 --instances-max 16 --nginx-workers "$NGINX_WORKERS" \
        --listen "$listen" --control "$control" --state-dir "$state_dir" \
        --database-url "$db_url" --redis-url "$redis_url" >"$logfile" 2>&1 &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    SRV_URL="http://$listen"
    wait_cluster_ready "$CLUSTER_PID" "$state_dir" "$control" "$n" "$logfile" "$OUT_DIR/status.json" "$SRV_URL" || return 1
    mapfile -t INSTANCE_URLS < <(python3 -c "import json,sys; [print('http://' + m['address']) for m in json.load(open(sys.argv[1]))['instances'] if m['state']=='running']" "$OUT_DIR/status.json")
}

# db_reads URL... : "CATALOG_READS ALL_READS" — cache_db_reads_total summed over
# the instances: kinds catalog + class + semester (what a catalog read can
# load), and every kind.
db_reads() {
    local url
    for url in "$@"; do
        metrics_curl -sf --max-time 5 "$url/metrics" || { log "could not read $url/metrics"; return 1; }
    done | awk '/^cache_db_reads_total\{/ {
            all += $NF
            if ($0 ~ /kind="(catalog|class|semester)"/) cat += $NF }
        END { printf "%d %d\n", cat, all }'
}

# ------------------------------------------------------------- one run ----
# run_once SETUP RATE DURATION SLUG: start SETUP (embedded | pg1 | pgN) from the
# seeded template, drive it at RATE families/s for DURATION s, stop it, check the
# database. Writes $OUT_DIR/SLUG.{summary.json,check.json,placements.tsv,log,...}
# and sets RUN_OK (1 = no errors), RUN_CHECK_OK (1 = database checks passed).
run_once() {
    local setup=$1 rate=$2 duration=$3 slug=$4 measured=${5:-0}
    local base db="" data_dir="" rc=0 urls=()
    RUN_OK=0
    RUN_CHECK_OK=0
    rm -rf -- "$OUT_DIR/$slug".*
    case "$setup" in
        embedded)
            data_dir=$(mktemp -d /tmp/coop-eday-data.XXXXXX)
            TMP_DIRS+=("$data_dir")
            cp -a "$EMB_TEMPLATE/." "$data_dir/"
            start_serve "$OUT_DIR/$slug.log" COOP_DATA_DIR="$data_dir" || return 1
            urls=("$SRV_URL")
            ;;
        pg*)
            local n=${setup#pg}
            db=$(fresh_pg "$PG_TEMPLATE") || return 1
            start_redis
            start_cluster "$n" "postgres://$PGUSER@$PGHOST:$PGPORT/$db" "$REDIS_URL" \
                "$OUT_DIR/$slug.log" "$OUT_DIR/$slug.cluster" || { stop_redis; return 1; }
            urls=("${INSTANCE_URLS[@]}")
            ;;
    esac
    base=$SRV_URL
    local server_pid=${SRV_PID:-}
    [[ "$setup" == pg* ]] && server_pid=$CLUSTER_PID
    ((measured)) && wait_quiet "$slug"
    local before after
    before=$(db_reads "${urls[@]}") || before="0 0"
    # CPU: the server tree, PostgreSQL + Redis, the load generator, everything.
    local t0 b0
    tree_snapshot "$server_pid" >"$SCRATCH/srv0"
    db_snapshot >"$SCRATCH/db0"
    b0=$(busy_jiffies)
    t0=$(now_secs)
    log "$slug: $setup at $rate families/s for ${duration}s (loadgen --base $base)"
    timeout $((duration + 120)) "${NICE[@]}" "$LOADGEN" run --base "$base" --state "$STATE" \
        --rate "$rate" --duration "$duration" --think-ms "$THINK_MS" \
        --browse-per-family "$BROWSE_PER_FAMILY" --threads "$LOADGEN_THREADS" \
        --out "$OUT_DIR/$slug.summary.json" --placements "$OUT_DIR/$slug.placements.tsv" \
        >"$OUT_DIR/$slug.loadgen.txt" 2>&1 || rc=$?
    local t1 b1
    t1=$(now_secs)
    b1=$(busy_jiffies)
    tree_snapshot "$server_pid" >"$SCRATCH/srv1"
    db_snapshot >"$SCRATCH/db1"
    after=$(db_reads "${urls[@]}") || after="0 0"
    local alive=1
    kill -0 "$server_pid" 2>/dev/null || alive=0
    if [[ "$setup" == embedded ]]; then stop_serve; else stop_cluster; stop_redis; fi
    if ((rc != 0 && rc != 3)) || [[ ! -s "$OUT_DIR/$slug.summary.json" ]]; then
        log "$slug: the load generator failed (exit $rc):"
        tail -n 20 "$OUT_DIR/$slug.loadgen.txt" >&2
        [[ -n "$db" ]] && drop_pg "$db"
        return 1
    fi
    # The load generator reports its own CPU; "other" is the rest of the busy time.
    python3 - "$OUT_DIR/$slug.summary.json" "$before" "$after" "$t0" "$t1" "$b0" "$b1" \
        "$(delta "$SCRATCH/srv0" "$SCRATCH/srv1")" "$(delta "$SCRATCH/db0" "$SCRATCH/db1")" "$CLK_TCK" "$alive" \
        "$(cat "$OUT_DIR/$slug.log" $(find "$OUT_DIR/$slug.cluster" -name '*.log' 2>/dev/null) 2>/dev/null | grep -c '"level":"ERROR"' || true)" <<'PY'
import json, sys
p, before, after, t0, t1, b0, b1, srv_j, db_j, hz, alive, logerr = sys.argv[1:]
d = json.load(open(p))
cb, ab = map(int, before.split()); ca, aa = map(int, after.split())
wall = float(t1) - float(t0); hz = float(hz)
busy = (int(b1) - int(b0)) / hz / wall * 100
srv = int(srv_j) / hz / wall * 100
db = int(db_j) / hz / wall * 100
gen = d.get("cpu_ticks", 0) / hz / wall * 100
reads = d["catalog"]["ok"] or 1
d["db_reads_catalog_per_100"] = 100.0 * (ca - cb) / reads
d["db_reads_all_per_100"] = 100.0 * (aa - ab) / reads
d["cpu"] = {"server": round(srv), "db": round(db), "loadgen": round(gen), "busy_total": round(busy),
            "other": round(max(0.0, busy - srv - db - gen))}
d["server_alive"] = alive == "1"
d["server_log_errors"] = int(logerr or 0)
json.dump(d, open(p, "w"), indent=1)
PY
    # The database after the run, servers stopped.
    local check_rc=0
    if [[ "$setup" == embedded ]]; then
        python3 "$BENCH_DIR/enrollment_check.py" --sqlite "$data_dir/coop.sqlite3" \
            --placements "$OUT_DIR/$slug.placements.tsv" >"$OUT_DIR/$slug.check.json" || check_rc=$?
        rm -rf -- "$data_dir"
    else
        python3 "$BENCH_DIR/enrollment_check.py" --pg "postgres://$PGUSER@$PGHOST:$PGPORT/$db" \
            --placements "$OUT_DIR/$slug.placements.tsv" >"$OUT_DIR/$slug.check.json" || check_rc=$?
        drop_pg "$db"
    fi
    [[ -s "$OUT_DIR/$slug.check.json" ]] || { log "$slug: the database check failed"; return 1; }
    ((check_rc == 0)) && RUN_CHECK_OK=1
    ((rc == 0)) && [[ "$alive" == 1 ]] && RUN_OK=1
    log "$slug: $(jf "$OUT_DIR/$slug.summary.json" "'enroll p50/p99 %s/%s ms, catalog p50/p99 %s/%s ms, %.1f enrollments/s, errors %s+%s, unfinished %s, db reads/100 catalog %.1f, cpu %s' % (d['enroll']['p50_ms'], d['enroll']['p99_ms'], d['catalog']['p50_ms'], d['catalog']['p99_ms'], d['enrollments_per_sec'], d['enroll']['errors'], d['catalog']['errors'], d['unfinished_sessions'], d['db_reads_catalog_per_100'], d['cpu'])")"
    log "$slug: database: $(cat "$OUT_DIR/$slug.check.json")"
    return 0
}

# sustained SLUG: the run had no errors and both p99s under SUSTAIN_P99_MS.
sustained() {
    local f="$OUT_DIR/$1.summary.json"
    [[ -s "$f" ]] || return 1
    python3 - "$f" "$SUSTAIN_P99_MS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); lim = float(sys.argv[2])
ok = (d["enroll"]["errors"] == 0 and d["catalog"]["errors"] == 0 and d["unfinished_sessions"] == 0
      and d["enroll"]["p99_ms"] is not None and d["enroll"]["p99_ms"] <= lim
      and d["catalog"]["p99_ms"] is not None and d["catalog"]["p99_ms"] <= lim
      and d["enroll"]["sent"] >= d["expected_enrollments"])
sys.exit(0 if ok else 1)
PY
}

# --------------------------------------------------------------- seeding ----
# seed_into LABEL LOGFILE ENV...: start `coop serve` with ENV, seed it, stop it.
seed_into() {
    local label=$1 logfile=$2 smtp_port state=$3
    shift 3
    smtp_port=$(free_port)
    start_serve "$logfile" "$@" COOP_SMTP_URL="smtp://127.0.0.1:$smtp_port" COOP_RUN_JOBS=on || return 1
    log "$label: seeding $FAMILIES families, $CHILDREN children, $CLASSES classes × $CAPACITY seats"
    if ! timeout 1500 "$LOADGEN" seed --base "$SRV_URL" --smtp-listen "127.0.0.1:$smtp_port" \
            --families "$FAMILIES" --children "$CHILDREN" --classes "$CLASSES" \
            --capacity "$CAPACITY" --out "$state" 2>&1 | tee "$OUT_DIR/seed-$label.txt" >&2; then
        stop_serve
        return 1
    fi
    [[ -s "$state" ]] || { stop_serve; return 1; }
    stop_serve
}

# ------------------------------------------------------------------- main ----
[[ $EUID -eq 0 ]] || die "run as root (coop cluster runs nginx; nginx-light may need installing)"
for t in python3 curl psql redis-server redis-cli timeout; do
    command -v "$t" >/dev/null || die "'$t' is required but not on PATH"
done
if ! find_nginx; then
    apt_install nginx-light nginx && find_nginx || die "could not install nginx-light or nginx"
fi
mkdir -p "$OUT_DIR"
SCRATCH=$(mktemp -d /tmp/coop-eday-scratch.XXXXXX)
TMP_DIRS+=("$SCRATCH")
rev=$(source_rev "$REPO_DIR")
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
    log "SKIP_BUILD=1: using $COOP_BIN and $LOADGEN as they are"
    rev="$rev (SKIP_BUILD=1: the coop binary may be older than this source)"
else
    log "cargo build --release --features test-knobs --bin coop; cargo build --release -p coop-loadgen (target dir: $TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --release --features test-knobs --bin coop) >&2 \
        || die "cargo build --release failed"
    (cd "$REPO_DIR" && cargo build --release -p coop-loadgen) >&2 || die "building coop-loadgen failed"
fi
[[ -x "$COOP_BIN" ]] || die "no binary at $COOP_BIN"
[[ -x "$LOADGEN" ]] || die "no binary at $LOADGEN"
psql -d postgres -qAt -c 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL is not reachable as $PGUSER@$PGHOST:$PGPORT"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)

# Templates: one seeded data dir, one seeded PostgreSQL database. The families'
# sessions live in the database, so one state file serves both.
EMB_TEMPLATE=$(mktemp -d /tmp/coop-eday-template.XXXXXX)
TMP_DIRS+=("$EMB_TEMPLATE")
STATE="$OUT_DIR/state-embedded.json"
seed_into embedded "$OUT_DIR/seed-embedded.log" "$STATE" COOP_DATA_DIR="$EMB_TEMPLATE" \
    || die "seeding the embedded tier failed (see $OUT_DIR/seed-embedded.*)"
SEED_EMB=$(tail -n 1 "$OUT_DIR/seed-embedded.txt")

PG_TEMPLATE="coop_eday_tmpl_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
psql -d postgres -qAt -c "CREATE DATABASE \"$PG_TEMPLATE\"" >/dev/null || die "CREATE DATABASE failed"
PG_DBS+=("$PG_TEMPLATE")
start_redis
PG_STATE="$OUT_DIR/state-postgres.json"
seed_into postgres "$OUT_DIR/seed-postgres.log" "$PG_STATE" \
    COOP_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$PG_TEMPLATE" COOP_REDIS_URL="$REDIS_URL" \
    || die "seeding PostgreSQL failed (see $OUT_DIR/seed-postgres.*)"
stop_redis
SEED_PG=$(tail -n 1 "$OUT_DIR/seed-postgres.txt")

# The step search on the embedded tier.
declare -a SEARCH_ROWS=()
if [[ -n "${RATE:-}" ]]; then
    R=$RATE
    log "RATE=$R: no search"
else
    R=""
    fail_rate=""
    for rate in $SEARCH_RATES; do
        STATE="$OUT_DIR/state-embedded.json"
        run_once embedded "$rate" "$SEARCH_DURATION" "search-$rate" 1 || die "search step at $rate failed"
        if sustained "search-$rate"; then
            SEARCH_ROWS+=("$rate yes")
            R=$rate
        else
            SEARCH_ROWS+=("$rate no")
            fail_rate=$rate
            break
        fi
    done
    if [[ -n "$R" && -n "$fail_rate" ]]; then
        mid=$(( (R + fail_rate) / 2 ))
        if ((mid > R && mid < fail_rate)); then
            run_once embedded "$mid" "$SEARCH_DURATION" "search-$mid" 1 || die "search step at $mid failed"
            if sustained "search-$mid"; then SEARCH_ROWS+=("$mid yes"); R=$mid; else SEARCH_ROWS+=("$mid no"); fi
        fi
    fi
    [[ -n "$R" ]] || { R=$(awk '{print $1}' <<<"$SEARCH_RATES"); log "no rate was sustained; measuring at the lowest, $R"; }
fi
R2=$((R * 2))
log "R = $R families/s (embedded); $INSTANCES instances run at $R2"

# Measured rounds.
SETUPS=(embedded pg1 "pg$INSTANCES")
declare -A SETUP_RATE=([embedded]=$R [pg1]=$R ["pg$INSTANCES"]=$R2)
declare -A SETUP_LABEL=([embedded]="Embedded (one process, SQLite)" [pg1]="PostgreSQL + Redis, 1 instance behind nginx" ["pg$INSTANCES"]="PostgreSQL + Redis, $INSTANCES instances behind nginx")
FAILED=()
STATUS=0
for round in $(seq 1 "$ROUNDS"); do
    for setup in "${SETUPS[@]}"; do
        if [[ "$setup" == embedded ]]; then STATE="$OUT_DIR/state-embedded.json"; else STATE="$PG_STATE"; fi
        slug="final-$setup-r$round"
        if ! run_once "$setup" "${SETUP_RATE[$setup]}" "$FINAL_DURATION" "$slug" 1; then
            FAILED+=("$slug")
            STATUS=1
            continue
        fi
        ((RUN_OK)) || { log "$slug: had errors"; STATUS=1; }
        ((RUN_CHECK_OK)) || { log "$slug: seats overbooked or waitlist order violated"; STATUS=1; }
    done
done
ELAPSED=$(( $(date +%s) - STARTED ))

# ---------------------------------------------------------------- results ----
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
pg_version=$(psql -d postgres -qAt -c 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)
redis_version=$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p' || true)
measured=$(date -u '+%Y-%m-%d %H:%M UTC')
section="$SCRATCH/section.md"
python3 - "$OUT_DIR" "$ROUNDS" "$R" "$INSTANCES" "$TARGET_ENROLL_P99" "$TARGET_CATALOG_P99" \
    "${SEARCH_ROWS[*]:-}" >"$SCRATCH/tables.md" <<'PY'
import json, os, statistics, sys
out, rounds, R, n, t_enroll, t_cat, search = sys.argv[1:]
rounds, R, n = int(rounds), int(R), int(n)
setups = [("embedded", "Embedded (one process, SQLite)", R),
          ("pg1", "PostgreSQL + Redis, 1 instance (nginx)", R),
          (f"pg{n}", f"PostgreSQL + Redis, {n} instances (nginx)", 2 * R)]
def load(slug):
    try:
        return json.load(open(f"{out}/{slug}.summary.json")), json.load(open(f"{out}/{slug}.check.json"))
    except (OSError, ValueError):
        return None, None
med = lambda xs: statistics.median(xs) if xs else None
fmt = lambda v, p=1: "—" if v is None else f"{v:.{p}f}"
print("| Setup | families/s | enrollments/s | enroll p50 / p99 ms | catalog p50 / p99 ms "
      "| DB reads per 100 catalog reads | seats overbooked | waitlist order violations | failed requests | targets (p99 ≤ "
      f"{t_enroll} / {t_cat} ms) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
cpu_rows = []
for key, label, rate in setups:
    runs = [load(f"final-{key}-r{r}") for r in range(1, rounds + 1)]
    runs = [(s, c) for s, c in runs if s is not None and c is not None]
    if not runs:
        print(f"| {label} | {rate} | failed | — | — | — | — | — | — | — |")
        continue
    S = [s for s, _ in runs]; C = [c for _, c in runs]
    ep50 = med([s["enroll"]["p50_ms"] for s in S if s["enroll"]["p50_ms"] is not None])
    ep99 = med([s["enroll"]["p99_ms"] for s in S if s["enroll"]["p99_ms"] is not None])
    cp50 = med([s["catalog"]["p50_ms"] for s in S if s["catalog"]["p50_ms"] is not None])
    cp99 = med([s["catalog"]["p99_ms"] for s in S if s["catalog"]["p99_ms"] is not None])
    eps = med([s["enrollments_per_sec"] for s in S])
    reads = med([s["db_reads_catalog_per_100"] for s in S])
    over = max(c["overbooked"] for c in C)
    viol = max(c["waitlist_violations"] for c in C)
    errs = sum(s["enroll"]["errors"] + s["catalog"]["errors"] for s in S)
    unfinished = sum(s["unfinished_sessions"] for s in S)
    met = (ep99 is not None and cp99 is not None and ep99 <= float(t_enroll) and cp99 <= float(t_cat))
    verdict = "met" if met else "**missed**"
    if ep99 is not None and cp99 is not None and not met:
        parts = []
        if ep99 > float(t_enroll): parts.append("enroll")
        if cp99 > float(t_cat): parts.append("catalog")
        verdict += " (" + ", ".join(parts) + ")"
    err_txt = str(errs) + (f" ({unfinished} sessions unfinished)" if unfinished else "")
    print(f"| {label} | {rate} | {fmt(eps)} | {fmt(ep50, 2)} / {fmt(ep99, 2)} | {fmt(cp50, 2)} / {fmt(cp99, 2)} "
          f"| {fmt(reads)} | {over} | {viol} | {err_txt} | {verdict} |")
    cpu = lambda k: med([s["cpu"][k] for s in S])
    enrolled = med([c["enrolled"] for c in C]); waitlisted = med([c["waitlisted"] for c in C])
    full = med([c["full_classes"] for c in C])
    allreads = med([s["db_reads_all_per_100"] for s in S])
    cpu_rows.append(f"| {label} | {len(S)} | {fmt(med([s['families'] for s in S]), 0)} | {fmt(enrolled, 0)} / {fmt(waitlisted, 0)} | {fmt(full, 0)} "
                    f"| {fmt(allreads)} | {fmt(cpu('server'), 0)}% | {fmt(cpu('db'), 0)}% | {fmt(cpu('loadgen'), 0)}% | {fmt(cpu('other'), 0)}% "
                    f"| {sum(s.get('server_log_errors', 0) for s in S)} |")
print()
print("| Setup | rounds | families arrived | children enrolled / waitlisted (DB) | classes full | DB reads per 100 catalog reads, every kind (sessions too) | CPU: Coop (+ nginx) | PostgreSQL + Redis | load generator | other processes | Coop ERROR log lines |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in cpu_rows:
    print(row)
if search.strip():
    print()
    print("Step search (embedded tier): each step a fresh copy of the seeded database.")
    print()
    print("| families/s | enroll p50 / p99 ms | catalog p50 / p99 ms | enrollments/s | failed requests | sustained |")
    print("|---:|---:|---:|---:|---:|---|")
    items = search.split()
    for rate, ok in zip(items[0::2], items[1::2]):
        s, _ = load(f"search-{rate}")
        if s is None:
            print(f"| {rate} | — | — | — | — | {ok} |"); continue
        print(f"| {rate} | {fmt(s['enroll']['p50_ms'], 2)} / {fmt(s['enroll']['p99_ms'], 2)} "
              f"| {fmt(s['catalog']['p50_ms'], 2)} / {fmt(s['catalog']['p99_ms'], 2)} | {fmt(s['enrollments_per_sec'])} "
              f"| {s['enroll']['errors'] + s['catalog']['errors']} | {ok} |")
PY
{
    echo "## Enrollment day"
    echo
    echo "Measured $measured with \`bench/enrollment-day.sh\`, commit $rev; ${ELAPSED}s in all."
    echo
    echo "$FAMILIES families (each signed in with its own session, from its own invite), $CHILDREN"
    echo "children (1–3 per family), $CLASSES classes × $CAPACITY seats in one semester whose registration"
    echo "is open. Every run starts from a copy of the seeded database: all seats free. Families"
    echo "arrive open-loop at a constant rate (\`bench/loadgen\`, \`coop-loadgen run\`); each reads the"
    echo "catalog, then for each child reads it again and enrolls the child ($THINK_MS ms apart), and"
    echo "$BROWSE_PER_FAMILY× as many catalog reads per second come from families browsing. Half the catalog"
    echo "reads ask for one weekday (~$((CLASSES / 5)) classes), half for all $CLASSES. A child goes to one of the"
    echo "25 popular classes 30% of the time (full or not), else to a class the family's last"
    echo "catalog read showed with a seat left. Latencies run from each request's intended send"
    echo "time (fixed by the arrival schedule) to the end of its response, so queueing in Coop or in"
    echo "the load generator counts."
    echo
    echo "R = $R families/s is the highest arrival rate the embedded tier sustained in the step search"
    echo "(no failed request, every session finished, p99 of enroll and of catalog reads ≤ ${SUSTAIN_P99_MS} ms);"
    echo "the $INSTANCES-instance setup runs at 2R = $R2. Medians of $ROUNDS round(s) of ${FINAL_DURATION} s of arrivals each."
    echo
    cat "$SCRATCH/tables.md"
    echo
    echo "- enrollments/s: successful enrollments (enrolled or waitlisted) from the first intended"
    echo "  enrollment to the last answer."
    echo "- DB reads per 100 catalog reads: \`cache_db_reads_total\` of kinds catalog, class and"
    echo "  semester (what a catalog read loads on a miss), summed over the instances' /metrics,"
    echo "  after minus before the run, per 100 catalog reads answered (an enrollment changes its"
    echo "  class, so its next catalog read reloads that class)."
    echo "- Seats overbooked and waitlist order violations: bench/enrollment_check.py reads the"
    echo "  database after the run with the servers stopped; its docstring lists what counts as a"
    echo "  violation (duplicate or missing tickets, positions told to clients that differ from the"
    echo "  database, and commit order contradicting what the client saw). The worst round is shown."
    echo "- CPU is in % of one CPU ($NCPU CPUs = $((NCPU * 100))%), over the run. \"other processes\" is the"
    echo "  machine's busy time minus Coop, the databases and the load generator: work that is not"
    echo "  the benchmark's (builds, tests) and competed with it. PostgreSQL counts every backend,"
    echo "  also those serving others."
    if ((${#FAILED[@]})); then
        echo "- Runs that failed to complete: ${FAILED[*]} (see bench/out/enrollment-day/)."
    fi
    for key in "${!C_WAITED[@]}"; do
        [[ "${C_WAITED[$key]:-0}" -gt 0 ]] && echo "- $key: waited ${C_WAITED[$key]} s for other processes to go quiet"
    done
    echo
    echo "Settings:"
    echo
    echo "- Command: \`bench/enrollment-day.sh\` (FAMILIES=$FAMILIES CHILDREN=$CHILDREN CLASSES=$CLASSES CAPACITY=$CAPACITY"
    echo "  SEARCH_RATES=\"$SEARCH_RATES\" SEARCH_DURATION=$SEARCH_DURATION FINAL_DURATION=$FINAL_DURATION ROUNDS=$ROUNDS"
    echo "  THINK_MS=$THINK_MS BROWSE_PER_FAMILY=$BROWSE_PER_FAMILY INSTANCES=$INSTANCES${RATE:+ RATE=$RATE})"
    [[ -n "${COOP_BIN_NOTE:-}" ]] && echo "- Coop binary: $COOP_BIN_NOTE"
    [[ -n "${BENCH_NICE:-}" ]] && echo "- Coop, nginx, Redis and the load generator ran under \`nice -n $BENCH_NICE\` (PostgreSQL at its own priority)."
    echo "- Seeding: embedded: $SEED_EMB; PostgreSQL: $SEED_PG"
    echo "- Embedded: \`coop serve\` with \`COOP_DATA_DIR\` (SQLite), jobs in-process (its default)."
    echo "  PostgreSQL ${pg_version:-?} + Redis ${redis_version:-?}: \`coop cluster --no-autoscale --instances N --workers 1"
    echo "  --nginx-workers $NGINX_WORKERS\` (no CPU cap), a fresh database (a template copy) and a private Redis per run."
    echo "  \`COOP_LOG=json RUST_LOG=warn\`, other settings at their defaults. Release build with \`test-knobs\`."
    echo "- Load generator: \`coop-loadgen run\` (Rust, hyper via reqwest, keep-alive, at most 512 requests"
    echo "  in flight, $LOADGEN_THREADS runtime thread(s)), on the same machine."
    echo "- Machine: $NCPU CPUs ($cpu_model), Linux $(uname -r); everything shares these CPUs;"
    echo "  load average before: $LOAD_BEFORE"
} >"$section"
results_put_section "$RESULTS" bench/enrollment-day.sh "$section"
echo
cat "$section"
echo
if ((${#FAILED[@]})); then
    log "FAIL: runs that did not complete: ${FAILED[*]}"
fi
exit "$STATUS"
