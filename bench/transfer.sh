#!/usr/bin/env bash
# `coop transfer` SQLite -> PostgreSQL (rows per second, with and without the
# final verification) and `coop backup` / `coop restore` of the embedded tier,
# at FAMILIES families (each with a child, an enrollment, a fee, a payment and
# a pending job: six rows per family). Writes the "Transfer, backup, restore"
# section of bench/RESULTS.md.
#
#   bench/transfer.sh
#
# Environment (all optional):
#   FAMILIES=100000 BATCH=500
#   BACKUP_FAMILIES=N    back up and restore a second, larger seed of N families
#                        (640000 makes a data dir of about 1 GB) instead of the
#                        transferred one
#   SKIP_TRANSFER=1      measure only the backup and the restore, into a section
#                        of its own ("Backup and restore"), leaving the transfer's
#   CARGO_TARGET_DIR, SKIP_BUILD=1, BENCH_RESULTS=FILE, COOP_BIN (another build, with SKIP_BUILD=1)
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres
#
# Needs python3 (its sqlite3 module), psql/createdb, PostgreSQL.

set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
RESULTS="${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}"
FAMILIES="${FAMILIES:-100000}"
BATCH="${BATCH:-500}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
COOP_BIN="${COOP_BIN:-$TARGET_DIR/release/coop}"
export PGHOST PGPORT PGUSER

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

SCRATCH="$(mktemp -d /tmp/coop-transfer-bench.XXXXXX)"
DB="coop_bench_transfer_$$"
cleanup() {
    dropdb --if-exists --force "$DB" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building coop (release)"
    (cd "$REPO_DIR" && cargo build --release --bin coop >&2)
fi
[[ -x "$COOP_BIN" ]] || die "no $COOP_BIN (build it, or unset SKIP_BUILD)"

secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
now() { date +%s.%N; }

log "seeding $FAMILIES families into a fresh SQLite file"
"$COOP_BIN" migrate --data-dir "$SCRATCH/source" >/dev/null 2>&1
rows=$(python3 "$BENCH_DIR/transfer_seed.py" "$SCRATCH/source/coop.sqlite3" "$FAMILIES")
db_bytes=$(stat -c %s "$SCRATCH/source/coop.sqlite3")
log "$rows rows, $db_bytes bytes"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ "${SKIP_TRANSFER:-0}" == 1 ]]; then
    copy_secs=- copy_rate=- transfer_total=-
else
createdb "$DB"
log "coop transfer -> PostgreSQL"
t0=$(now)
"$COOP_BIN" transfer --from "sqlite://$SCRATCH/source/coop.sqlite3" \
    --to "postgres://$PGUSER@$PGHOST:$PGPORT/$DB" --batch-size "$BATCH" \
    >"$SCRATCH/transfer.out" 2>"$SCRATCH/transfer.err"
t1=$(now)
copy_line=$(grep '^copied ' "$SCRATCH/transfer.err")
transfer_total=$(secs "$t0" "$t1")
copy_secs=$(sed -E 's/^copied [0-9]+ rows in ([0-9.]+) s.*/\1/' <<<"$copy_line")
copy_rate=$(sed -E 's/.*\(([0-9]+) rows\/s\).*/\1/' <<<"$copy_line")
grep -q 'transfer complete and verified' "$SCRATCH/transfer.out" || die "transfer did not verify"
log "$copy_line; $transfer_total s with migrations and verification"
fi

backup_source="$SCRATCH/source"
if [[ -n "${BACKUP_FAMILIES:-}" ]]; then
    log "seeding $BACKUP_FAMILIES families into a second SQLite file for the backup"
    "$COOP_BIN" migrate --data-dir "$SCRATCH/big" >/dev/null 2>&1
    python3 "$BENCH_DIR/transfer_seed.py" "$SCRATCH/big/coop.sqlite3" "$BACKUP_FAMILIES" >/dev/null
    backup_source="$SCRATCH/big"
fi
data_dir_bytes=$(du -sb "$backup_source" | cut -f1)

log "coop backup (embedded tier)"
t0=$(now)
"$COOP_BIN" backup --data-dir "$backup_source" --to "$SCRATCH/backup" >/dev/null
t1=$(now)
backup_secs=$(secs "$t0" "$t1")
backup_bytes=$(du -sb "$SCRATCH/backup" | cut -f1)
log "coop restore"
t0=$(now)
"$COOP_BIN" restore --data-dir "$SCRATCH/restored" --from "$SCRATCH/backup" >/dev/null
t1=$(now)
restore_secs=$(secs "$t0" "$t1")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "backup $backup_secs s ($backup_bytes bytes), restore $restore_secs s"

marker="bench/transfer.sh"
title="Transfer, backup, restore"
transfer_rows="| \`coop transfer\` SQLite → PostgreSQL, copying | $rows | ${copy_secs} s | ${copy_rate} rows/s |
| the same, with migrations and the verification (both sides read again, checksummed) | $rows | ${transfer_total} s | |"
if [[ "${SKIP_TRANSFER:-0}" == 1 ]]; then
    marker="bench/transfer.sh backup"
    title="Backup and restore"
    transfer_rows="| (no transfer in this run: SKIP_TRANSFER=1) | | | |"
fi
section=$(cat <<MD
<!-- begin $marker -->
## $title

Measured $(date -u '+%Y-%m-%d %H:%M') UTC with \`bench/transfer.sh\`, commit $(git -C "$REPO_DIR" rev-parse --short HEAD),
build: \`$(basename "$(dirname "$COOP_BIN")")\`${BUILD_NOTE:+ ($BUILD_NOTE)}, FAMILIES=$FAMILIES (six rows each: family, child, enrollment, fee,
payment, pending job), BATCH=$BATCH.

| step | rows | time | rate |
|---|---:|---:|---:|
${transfer_rows}
| \`coop backup\` (VACUUM INTO + data dir), a data dir of $data_dir_bytes bytes${BACKUP_FAMILIES:+ ($BACKUP_FAMILIES families)} | | ${backup_secs} s | |
| \`coop restore\` into a fresh data dir (copy + integrity check) | | ${restore_secs} s | |

The machine (2 CPUs) is shared with other builds and tests while this runs:
load average (1/5/15 min) $load_before before, $load_after after. The numbers are
what this run got, not what the program can do on a quiet machine.
<!-- end $marker -->
MD
)
python3 - "$RESULTS" "$section" "$marker" <<'PY'
import re, sys
path, section, marker = sys.argv[1], sys.argv[2], re.escape(sys.argv[3])
text = open(path).read()
pattern = re.compile(rf"<!-- begin {marker} -->.*?<!-- end {marker} -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
log "wrote the section to $RESULTS"
