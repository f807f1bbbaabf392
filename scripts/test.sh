#!/usr/bin/env bash
# The whole test suite. Unit tests of every crate plus black-box HTTP tests
# against both tiers: a fresh SQLite file per test, and a fresh PostgreSQL
# database per test with Redis. PostgreSQL and Redis are found at
# 127.0.0.1:5432 / :6379, or at COOP_TEST_DATABASE_URL / COOP_TEST_REDIS_URL.
# Missing services fail the run with a message naming them; nothing is skipped:
# the `full-suite` feature turns on the minutes-long suites (coop cluster,
# streaming replicas, killed processes) that a plain `cargo test` leaves out.
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

# The `coop cluster` tests run nginx in front of the instances. The project
# installs Debian's package itself when it can (as root, with apt-get).
find_nginx() { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }
if ! find_nginx && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing nginx (Debian package nginx-light) for the cluster tests" >&2
  # Keep the package from starting a system nginx on port 80.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; } >&2 || true
  [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
find_nginx || missing+=("nginx (Debian package nginx-light) for the coop cluster tests")

if [ ${#missing[@]} -gt 0 ]; then
  echo "The test suite needs, and could not find:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

exec cargo test --locked --workspace --features full-suite "$@"
