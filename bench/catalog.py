#!/usr/bin/env python3
"""The class catalog page under the cached-read benchmark's load (Python 3.11
stdlib, plus wrk). Run by bench/catalog.sh, which builds Coop and writes the
results section.

One round, on one tier:
  1. a Coop seeded like bench/run.sh (bench/seed.py: FAMILIES families and a
     coordinator session), plus a semester with CLASSES classes, and one
     family with its own account (the invite from the embedded tier's email
     outbox, or the SMTP-less outbox of the PostgreSQL tier) and a child;
  2. `/catalog` alone: wrk -t1 -c4 for DURATION (the page's own speed);
  3. `/catalog` again (wrk -t1 -c4) while the cached-read load runs beside it
     (wrk -t2 -cCONNECTIONS with bench/get_family.lua, as bench/run.sh);
  4. for 2 and 3: the client's p50/p99 (wrk), and the server's time for the
     route from Coop's own `http_request_duration_seconds{route="/catalog"}`
     histogram (deltas across the run): the share of requests answered
     within 10 ms and the bucket that holds the p99.

Prints one JSON object per round on stdout.
"""

from __future__ import annotations

import argparse
import email
import glob
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))


def call(base, method, path, body=None, cookie=None, form=False):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if cookie:
        headers["Cookie"] = cookie
    token = os.environ.get("COOP_METRICS_TOKEN")
    if path == "/metrics" and token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, r.getheader("Set-Cookie") or "", raw


def must(status, _set_cookie, raw, want, what):
    if status != want:
        sys.exit(f"{what}: expected {want}, got {status}: {raw[:300]!r}")
    return json.loads(raw) if raw else None


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def setup_catalog(base, cookie, classes):
    now = datetime.now(timezone.utc)
    sem = must(*call(base, "POST", "/api/v1/semesters", {
        "name": "Bench semester", "starts_on": "2031-09-01", "ends_on": "2031-12-19",
        "registration_opens_at": rfc3339(now - timedelta(hours=1)),
        "registration_closes_at": rfc3339(now + timedelta(days=30)),
    }, cookie), 201, "create the semester")["semester_id"]
    days = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    for i in range(classes):
        must(*call(base, "POST", f"/api/v1/semesters/{sem}/classes", {
            "title": f"Class {i:03}", "description": "A class of the benchmark.",
            "capacity": 12, "fee_cents": 4500, "currency": "usd",
            "min_age": 5, "max_age": 14,
            "meetings": [{"weekday": days[i % 5], "starts_at": f"{9 + i % 6:02}:00",
                          "minutes": 60, "room": f"Room {i % 7}"}],
        }, cookie), 201, f"create class {i}")
    return sem


def invite_token(outbox, email_addr, timeout=300):
    """The invite token from the family's welcome email in the outbox.

    The seeded families' own emails (three jobs each) are queued before this
    one, so on a busy machine the worker may take minutes to reach it; files
    already read are not read again (the outbox holds tens of thousands)."""
    deadline = time.time() + timeout
    seen = set()
    while time.time() < deadline:
        for path in glob.glob(os.path.join(outbox, "*.eml")):
            if path in seen:
                continue
            with open(path, "rb") as f:
                msg = email.message_from_bytes(f.read())
            if not msg.get("To") or not msg.get("Subject"):
                continue  # still being written: read it again next time
            if email_addr not in msg.get("To") or not msg.get("Subject").startswith("Welcome"):
                seen.add(path)
                continue
            body = msg.get_payload(decode=True).decode()
            m = re.search(r"token=([A-Za-z0-9_-]+)", body)
            if m:
                return m.group(1)
        time.sleep(0.2)
    sys.exit(f"no welcome email for {email_addr} in {outbox} within {timeout}s")


def verify_founder(base, outbox, timeout=300):
    """Confirms the seeded co-op's founder from the link in the outbox: until
    then the co-op's emails to families (the welcome this benchmark needs)
    are held."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in glob.glob(os.path.join(outbox, "*.eml")):
            with open(path, "rb") as f:
                msg = email.message_from_bytes(f.read())
            if not (msg.get("Subject") or "").startswith("Confirm your email to start"):
                continue
            body = msg.get_payload(decode=True).decode()
            m = re.search(r"verify-email#token=([A-Za-z0-9_-]+)", body)
            if m:
                status, _, raw = call(base, "POST", "/api/v1/auth/verify-email",
                                      {"token": m.group(1)})
                if status != 204:
                    sys.exit(f"confirming the founder's email answered {status}: {raw[:200]!r}")
                return
        time.sleep(0.2)
    sys.exit(f"no confirmation email in {outbox} within {timeout}s")


def family_session(base, coordinator_cookie, outbox):
    addr = f"bench-family-{os.getpid()}-{int(time.time())}@example.org"
    fam = must(*call(base, "POST", "/api/v1/families", {
        "family_name": "The Benchmarks", "email": addr, "enrollment_date": "2031-08-01",
    }, coordinator_cookie), 201, "enroll the family")
    token = invite_token(outbox, addr)
    status, set_cookie, raw = call(base, "POST", "/api/v1/auth/accept-invite",
                                   {"token": token, "password": "bench password 1"})
    must(status, set_cookie, raw, 201, "accept the invite")
    cookie = set_cookie.split(";", 1)[0]
    must(*call(base, "POST", f"/api/v1/families/{fam['family_id']}/children",
               {"first_name": "Kim", "birth_date": "2020-03-03"}, cookie), 201, "add a child")
    return cookie


def route_histogram(base, route):
    """{le: count} of http_request_duration_seconds for GET `route`, all statuses."""
    status, _, raw = call(base, "GET", "/metrics")
    if status != 200:
        sys.exit(f"/metrics answered {status}")
    buckets = {}
    pat = re.compile(r'^http_request_duration_seconds_bucket\{(.*)\} (\S+)$')
    for line in raw.decode().splitlines():
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("route") != route or labels.get("method") != "GET":
            continue
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets[le] = buckets.get(le, 0) + float(m.group(2))
    return buckets


def server_time(before, after):
    delta = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = delta.get(float("inf"), 0)
    if total <= 0:
        return {"requests": 0}
    within_10ms = delta.get(0.01, 0) / total
    p99_bucket = next(le for le in sorted(delta) if delta[le] >= 0.99 * total)
    return {"requests": int(total), "within_10ms": within_10ms,
            "p99_at_most_s": p99_bucket}


def wrk(args, out):
    return subprocess.Popen(["wrk", *args], stdout=out, stderr=subprocess.STDOUT)


def parse_wrk(text):
    def ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    res = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            res[f"p{pct}_ms"] = ms(m.group(1), m.group(2))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    res["socket_errors"] = m.group(1).strip() if m else ""
    return res


def catalog_run(base, cookie, duration, out_dir, name, load=None):
    before = route_histogram(base, "/catalog")
    cat_out = open(os.path.join(out_dir, f"wrk-catalog-{name}.txt"), "w")
    cat = wrk(["-t1", "-c4", f"-d{duration}", "--latency", "-H", f"Cookie: {cookie}",
               f"{base}/catalog"], cat_out)
    bg = None
    if load:
        bg_out = open(os.path.join(out_dir, f"wrk-load-{name}.txt"), "w")
        bg = wrk(load, bg_out)
    cat.wait()
    if bg:
        bg.wait()
    after = route_histogram(base, "/catalog")
    cat_out.close()
    result = parse_wrk(open(cat_out.name).read())
    result["server"] = server_time(before, after)
    if bg:
        result["load"] = parse_wrk(open(bg_out.name).read())
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--outbox", required=True)
    p.add_argument("--families", type=int, default=10000)
    p.add_argument("--classes", type=int, default=40)
    p.add_argument("--duration", default="15s")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out-dir", required=True)
    a = p.parse_args()

    ids = os.path.join(a.out_dir, "ids.txt")
    cookie_file = os.path.join(a.out_dir, "cookie.txt")
    subprocess.run([sys.executable, os.path.join(HERE, "seed.py"), "--base", a.base,
                    "--families", str(a.families), "--ids-out", ids,
                    "--cookie-out", cookie_file], check=True, stdout=sys.stderr)
    coordinator = open(cookie_file).read().strip()
    setup_catalog(a.base, coordinator, a.classes)
    verify_founder(a.base, a.outbox)
    family = family_session(a.base, coordinator, a.outbox)
    status, _, page = call(a.base, "GET", "/catalog", cookie=family)
    if status != 200 or b"Class 000" not in page:
        sys.exit(f"the catalog page answered {status} without the classes")
    page_bytes = len(page)

    load = ["-t2", f"-c{a.connections}", f"-d{a.duration}", "--latency", "-s",
            os.path.join(HERE, "get_family.lua"), a.base, "--", ids, coordinator]
    # Warm the caches and the page path once.
    catalog_run(a.base, family, "3s", a.out_dir, "warmup")
    for r in range(a.rounds):
        alone = catalog_run(a.base, family, a.duration, a.out_dir, f"alone-{r}")
        loaded = catalog_run(a.base, family, a.duration, a.out_dir, f"loaded-{r}", load)
        print(json.dumps({"round": r, "page_bytes": page_bytes,
                          "alone": alone, "loaded": loaded}), flush=True)


if __name__ == "__main__":
    main()
