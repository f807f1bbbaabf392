#!/usr/bin/env bash
# The API contract, fuzzed: schemathesis (PyPI, pinned) generates requests from
# Coop's own OpenAPI document (/api/v1/openapi.json), valid and invalid, and
# checks every answer against it: no 5xx, only documented statuses, documented
# content types and response schemas, invalid input rejected with a 4xx and
# valid input not rejected. It runs on both tiers (a fresh SQLite data
# directory; a fresh PostgreSQL database, dropped afterwards, with Redis), each
# with a coordinator's and a family's session (scripts/contract.py says how).
# Any finding fails the run. scripts/test.sh runs this after the cargo suites.
#
#   scripts/contract.sh [cargo build flags, e.g. --features full-suite]
#   COOP_BIN=target/debug/coop scripts/contract.sh   # a binary built already
#   scripts/contract.sh --setup    # only install / check what it needs
#
# COOP_CONTRACT_EXAMPLES (default 10) bounds the generated cases per operation
# and phase; COOP_CONTRACT_SEED replays a run (each run prints its seed). The
# database and Redis are COOP_TEST_DATABASE_URL / COOP_TEST_REDIS_URL, as for
# the tests. Reports (JUnit) and coop's logs go to target/contract/.
set -euo pipefail
cd "$(dirname "$0")/.."

schemathesis_version=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/coop/schemathesis-$schemathesis_version"
pg_url="${COOP_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${COOP_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
missing=()

command -v python3 >/dev/null || missing+=("python3 (Debian package python3) to run schemathesis")
command -v psql >/dev/null || missing+=("psql (Debian package postgresql-client) to create the fuzzed database")
if [ ! -x "$venv/bin/st" ] && command -v python3 >/dev/null; then
  echo "installing schemathesis $schemathesis_version (PyPI) into $venv" >&2
  rm -rf "$venv"
  if python3 -m venv "$venv" >&2; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version" >&2 || true
  else
    missing+=("python3's venv module (Debian package python3-venv) to install schemathesis")
  fi
fi
[ -x "$venv/bin/st" ] || missing+=("schemathesis $schemathesis_version at $venv (pip install schemathesis==$schemathesis_version, from PyPI)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "The contract fuzzing needs, and could not find:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

[ "${1:-}" = "--setup" ] && exit 0

# COOP_BIN: a binary built already (scripts/test.sh passes the one its
# `cargo test --workspace --features full-suite` built; building it here with
# other flags would recompile the workspace for other features, minutes in CI).
if [ -n "${COOP_BIN:-}" ]; then
  [ -x "$COOP_BIN" ] || { echo "contract: COOP_BIN=$COOP_BIN is not an executable" >&2; exit 1; }
  bin="$COOP_BIN"
else
  cargo build --locked --bin coop "$@"
  bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/coop"
fi

status=0
for tier in embedded distributed; do
  python3 scripts/contract.py --bin "$bin" --schemathesis "$venv/bin/st" --tier "$tier" \
    --pg-url "$pg_url" --redis-url "$redis_url" \
    --max-examples "${COOP_CONTRACT_EXAMPLES:-10}" || status=1
done
if [ "$status" != 0 ]; then
  echo "contract: schemathesis found answers that break the OpenAPI document (above)" >&2
fi
exit "$status"
