#!/usr/bin/env python3
"""Fuzz one running Coop against its own OpenAPI document with schemathesis.

Called by scripts/contract.sh once per tier. It starts `coop serve` on a free
loopback port (embedded tier: a fresh data directory; distributed tier: a
fresh PostgreSQL database, created here and dropped at the end, plus Redis),
founds a co-op, signs in as its coordinator and as a family (accepting the
invite from the outbox email), and runs schemathesis with every check against
every operation, once per session. Any server error, undocumented status,
wrong content type, response that breaks its schema, accepted invalid input or
rejected valid input fails the run.

Only the standard library here: schemathesis lives in its own venv, and this
driver only needs HTTP, a subprocess and psql.
"""

import argparse
import email
import email.policy
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# Operations the fuzzer must not call with its own session: each one ends it
# (log out; sign out everywhere; a password change signs out the other
# sessions and needs the current password, so the fuzzer could also lock
# itself out). Everything else, deletes and uploads included, is fuzzed.
SESSION_ENDING = [
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-everywhere"),
    ("POST", "/api/v1/auth/password"),
]

PASSWORD = "contract-fuzz-password"
# Per-operation relaxations, each with its reason.
CONFIG = pathlib.Path(__file__).with_name("contract.toml")


def log(message):
    print(f"contract: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base, method, path, body=None, cookie=None):
    """(status, headers, parsed JSON or None) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", f"coop_session={cookie}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, err.headers
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, headers, parsed


def expect(what, got, status):
    if got[0] != status:
        raise SystemExit(f"contract: {what} answered {got[0]} (wanted {status}): {got[2]}")
    return got


def session_of(headers):
    for value in headers.get_all("Set-Cookie") or []:
        match = re.match(r"coop_session=([^;]+)", value)
        if match:
            return match.group(1)
    raise SystemExit("contract: no coop_session cookie in the answer")


def link_token(outbox, link, deadline):
    """The token of the first `link` (e.g. `accept-invite`) in the outbox's emails."""
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for part in message.walk():
                if part.get_content_type() != "text/plain":
                    continue
                match = re.search(link + r"#token=([A-Za-z0-9_-]+)", part.get_content())
                if match:
                    return match.group(1)
        time.sleep(0.2)
    raise SystemExit(f"contract: no {link} email in {outbox} (is the job worker running?)")


def wait_ready(base, process, deadline):
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"contract: coop exited with {process.returncode} before it was ready")
        try:
            if call(base, "GET", "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("contract: coop was not ready within 60 s")


def sign_in(base, data_dir):
    """Coordinator and family session tokens in a new co-op."""
    suffix = secrets.token_hex(4)
    coordinator = f"coordinator-{suffix}@contract.example"
    expect("founding a co-op", call(base, "POST", "/api/v1/coops", {
        "name": "Contract Fuzzing Co-op",
        "coordinator": {"name": "Ada Fuzz", "email": coordinator, "password": PASSWORD},
    }), 202)
    _, headers, _ = expect("the coordinator's log-in", call(
        base, "POST", "/api/v1/auth/login", {"email": coordinator, "password": PASSWORD}), 200)
    coordinator_session = session_of(headers)
    # The founder confirms the address, so the family's invite goes out.
    confirmation = link_token(data_dir / "outbox", "verify-email", time.monotonic() + 30)
    expect("confirming the founder's email", call(
        base, "POST", "/api/v1/auth/verify-email", {"token": confirmation}), 204)
    expect("enrolling a family", call(base, "POST", "/api/v1/families", {
        "family_name": "The Fuzzers", "email": f"family-{suffix}@contract.example",
    }, cookie=coordinator_session), 201)
    token = link_token(data_dir / "outbox", "accept-invite", time.monotonic() + 30)
    _, headers, _ = expect("accepting the invite", call(
        base, "POST", "/api/v1/auth/accept-invite", {"token": token, "password": PASSWORD}), 201)
    return coordinator_session, session_of(headers)


def fuzz(st, base, role, session, args, report_dir):
    command = [
        st, "--config-file", str(CONFIG), "run", f"{base}/api/v1/openapi.json",
        "--checks", "all",
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--workers", str(args.workers),
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
        # The sessions are throwaway; the offending values are the point.
        "--output-sanitize", "false",
        "--report", "junit",
        "--report-junit-path", str(report_dir / f"{args.tier}-{role}.xml"),
    ]
    # schemathesis ANDs different filter kinds, so exclude by exact path: each
    # of these paths has only the one (POST) operation.
    for _, path in SESSION_ENDING:
        command += ["--exclude-path", path]
    log(f"{args.tier} tier, {role} session: st {' '.join(command[1:])}")
    # contract.toml hands the session to schemathesis as the `session`
    # security scheme's cookie, so it knows which parameter is the
    # credential (and checks that operations refuse a request without it).
    env = dict(os.environ, COOP_CONTRACT_SESSION=session)
    started = time.monotonic()
    try:
        result = subprocess.run(command, timeout=args.timeout, env=env)
        code = result.returncode
    except subprocess.TimeoutExpired:
        log(f"schemathesis did not finish within {args.timeout} s")
        code = 1
    log(f"{args.tier} tier, {role} session: schemathesis exit {code} after {time.monotonic() - started:.0f} s")
    return code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the coop binary")
    parser.add_argument("--schemathesis", required=True, help="the st executable")
    parser.add_argument("--tier", choices=["embedded", "distributed"], required=True)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--max-examples", type=int, default=10)
    # One worker: with two, CPython 3.11's `ast` module, which Hypothesis
    # calls from each worker thread to describe its strategies, fails now and
    # then with "AST constructor recursion depth mismatch" (a race in the
    # interpreter, not a finding).
    parser.add_argument("--workers", default="1")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("COOP_CONTRACT_SEED", "0")) or secrets.randbelow(2**31))
    parser.add_argument("--timeout", type=int, default=240, help="seconds one schemathesis run may take")
    parser.add_argument("--report-dir", default="target/contract")
    args = parser.parse_args()

    report_dir = pathlib.Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"coop-contract-{args.tier}-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update({
        "COOP_LISTEN": f"127.0.0.1:{port}",
        "COOP_DATA_DIR": str(data_dir),
        # Every request of the fuzzer comes from one address: the sign-in
        # budgets would turn the doors into 429s after a few cases.
        "COOP_RATE_LIMITS": "off",
        # The invite email of the family session is written to the outbox by
        # the job worker, inside `coop serve` on both tiers here.
        "COOP_RUN_JOBS": "on",
        "COOP_LOG": "json",
        # Payments are charged by the worker: a provider address that refuses
        # connections lets the API accept them (202) and the charge fail later.
        "COOP_PAYMENTS_URL": "http://127.0.0.1:9",
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    for knob in ("COOP_SMTP_URL", "COOP_DATABASE_URL", "COOP_REDIS_URL", "COOP_REPLICA_URLS"):
        env.pop(knob, None)
    database = None
    if args.tier == "distributed":
        database = f"coop_contract_{secrets.token_hex(6)}"
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", args.pg_url,
                        "-c", f'CREATE DATABASE "{database}"'], check=True)
        parts = urllib.parse.urlsplit(args.pg_url)
        env["COOP_DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))
        env["COOP_REDIS_URL"] = args.redis_url

    log_path = report_dir / f"{args.tier}-coop.log"
    code = 1
    with open(log_path, "wb") as coop_log:
        process = subprocess.Popen([args.bin, "serve"], env=env, stdout=coop_log, stderr=subprocess.STDOUT)
        try:
            wait_ready(base, process, time.monotonic() + 60)
            coordinator, family = sign_in(base, data_dir)
            log(f"{args.tier} tier on {base} (seed {args.seed}; reproduce with COOP_CONTRACT_SEED={args.seed})")
            # The family first: the coordinator's run may delete families,
            # and nothing of the family's can end the coordinator's session.
            code = fuzz(args.schemathesis, base, "family", family, args, report_dir)
            code = fuzz(args.schemathesis, base, "coordinator", coordinator, args, report_dir) or code
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if database:
                subprocess.run(["psql", "-q", "-d", args.pg_url, "-c",
                                f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'], check=False)
            shutil.rmtree(data_dir, ignore_errors=True)
    if process.returncode not in (0, -15) and code == 0:
        log(f"coop exited with {process.returncode}; its log: {log_path}")
        code = 1
    # A 5xx is logged by coop too; say where to look.
    if code:
        log(f"coop's log for this run: {log_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
