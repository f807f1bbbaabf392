#!/usr/bin/env python3
"""Read-your-writes load for bench/replicas.sh (Python 3 stdlib only).

Each thread owns one family and loops: PUT /api/v1/families/{id} with a new
name (keeping the `Coop-Read-After` token of the response), then GETs the
family READS times, sending the token back in the `Coop-Read-After` header
together with the session cookie, and checks that every GET returns the name
just written (a different name is a stale read); then sleeps PAUSE seconds.
One keep-alive connection per thread.

    ryw_driver.py --base http://127.0.0.1:PORT --ids ids.txt --cookie-file cookie.txt \
                  [--threads 16] [--duration 20] [--reads 5] [--pause 0.05] [--no-token]

The family on line n of the ids file (0-based) must have the email
family-<n>@example.org (as bench/seed.py enrolls them); thread t uses line
--first + t. --no-token leaves the header out (a control run: stale reads are
then possible and expected now and then).

Prints one JSON object: counts (writes, reads, stale, errors by kind), rates
over the measured wall time, GET and PUT latency percentiles in ms, and up to
5 examples of stale reads and errors. Exits 0 when it ran (the caller judges
the counts), 2 on bad arguments or when no request at all succeeded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class Worker(threading.Thread):
    def __init__(self, args, base, family_id: str, email: str, cookie: str, stop_at: float,
                 barrier: threading.Barrier):
        super().__init__(daemon=True)
        self.args = args
        self.base = base
        self.family_id = family_id
        self.email = email
        self.cookie = cookie
        self.stop_at = stop_at
        self.barrier = barrier
        self.writes = 0
        self.reads = 0
        self.stale = 0
        self.stale_examples: list[str] = []
        self.errors: dict[str, int] = {}
        self.error_examples: list[str] = []
        self.get_ms: list[float] = []
        self.put_ms: list[float] = []
        self.tokens_missing = 0
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=30)
        return self.conn

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_examples) < 5:
            self.error_examples.append(f"{kind}: {detail[:300]}")
        # Start over on a fresh connection after any error.
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        conn = self.connect()
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        return resp, raw, ms

    def run(self) -> None:
        path = f"/api/v1/families/{self.family_id}"
        base_headers = {"Accept": "application/json", "Cookie": self.cookie}
        n = 0
        tag = secrets.token_hex(3)
        self.barrier.wait()
        while time.monotonic() < self.stop_at:
            n += 1
            name = f"RYW {tag} {n}"
            body = json.dumps({"family_name": name, "email": self.email}).encode()
            try:
                resp, raw, ms = self.request("PUT", path, body,
                                             dict(base_headers, **{"Content-Type": "application/json"}))
            except (OSError, http.client.HTTPException) as exc:
                self.error("put_socket", f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)
                continue
            if resp.status != 200:
                self.error(f"put_{resp.status}", raw.decode(errors="replace"))
                time.sleep(0.1)
                continue
            try:
                written = json.loads(raw)
            except ValueError:
                self.error("put_body", raw.decode(errors="replace"))
                continue
            if written.get("family_name") != name:
                self.error("put_body", f"PUT answered {written.get('family_name')!r}, sent {name!r}")
                continue
            self.writes += 1
            self.put_ms.append(ms)
            token = resp.getheader("Coop-Read-After")
            headers = dict(base_headers)
            if not token:
                self.tokens_missing += 1
            elif not self.args.no_token:
                headers["Coop-Read-After"] = token
            for i in range(self.args.reads):
                try:
                    resp, raw, ms = self.request("GET", path, None, headers)
                except (OSError, http.client.HTTPException) as exc:
                    self.error("get_socket", f"{type(exc).__name__}: {exc}")
                    break
                if resp.status != 200:
                    self.error(f"get_{resp.status}", raw.decode(errors="replace"))
                    break
                try:
                    got = json.loads(raw)
                except ValueError:
                    self.error("get_body", raw.decode(errors="replace"))
                    break
                self.reads += 1
                self.get_ms.append(ms)
                if got.get("family_name") != name:
                    self.stale += 1
                    if len(self.stale_examples) < 5:
                        self.stale_examples.append(
                            f"read {i + 1} after the write {name!r} (version {written.get('version')}) "
                            f"returned {got.get('family_name')!r} (version {got.get('version')})")
            if self.args.pause > 0:
                time.sleep(self.args.pause)
        if self.conn is not None:
            self.conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--ids", required=True, help="family ids, one per line (bench/seed.py --ids-out)")
    ap.add_argument("--cookie-file", required=True, help="'coop_session=TOKEN' (bench/seed.py --cookie-out)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds")
    ap.add_argument("--reads", type=int, default=5, help="GETs after each PUT")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds of sleep after each round")
    ap.add_argument("--first", type=int, default=0, help="first line of the ids file to use")
    ap.add_argument("--no-token", action="store_true", help="do not send Coop-Read-After (control)")
    args = ap.parse_args()

    base = urllib.parse.urlsplit(args.base)
    with open(args.ids) as f:
        ids = [line.strip() for line in f if line.strip()]
    with open(args.cookie_file) as f:
        cookie = f.read().strip()
    if len(ids) < args.first + args.threads:
        print(f"ryw_driver.py: need {args.first + args.threads} ids, the file has {len(ids)}", file=sys.stderr)
        return 2

    barrier = threading.Barrier(args.threads + 1)
    # The clock starts when every thread is ready.
    workers = []
    for t in range(args.threads):
        n = args.first + t
        workers.append(Worker(args, base, ids[n], f"family-{n}@example.org", cookie, 0.0, barrier))
    for w in workers:
        w.start()
    started = time.monotonic()
    for w in workers:
        w.stop_at = started + args.duration
    barrier.wait()
    for w in workers:
        w.join(args.duration + 120)
    wall = time.monotonic() - started
    hung = sum(1 for w in workers if w.is_alive())

    get_ms = sorted(x for w in workers for x in w.get_ms)
    put_ms = sorted(x for w in workers for x in w.put_ms)
    errors: dict[str, int] = {}
    for w in workers:
        for k, v in w.errors.items():
            errors[k] = errors.get(k, 0) + v
    if hung:
        errors["hung_threads"] = hung
    writes = sum(w.writes for w in workers)
    reads = sum(w.reads for w in workers)

    def r(x):
        return None if x is None else round(x, 2)

    out = {
        "threads": args.threads,
        "duration_s": round(wall, 2),
        "token_sent": not args.no_token,
        "writes": writes,
        "reads": reads,
        "writes_per_s": round(writes / wall, 1),
        "reads_per_s": round(reads / wall, 1),
        "stale": sum(w.stale for w in workers),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "tokens_missing": sum(w.tokens_missing for w in workers),
        "get_p50_ms": r(percentile(get_ms, 50)),
        "get_p99_ms": r(percentile(get_ms, 99)),
        "get_max_ms": r(get_ms[-1] if get_ms else None),
        "put_p50_ms": r(percentile(put_ms, 50)),
        "put_p99_ms": r(percentile(put_ms, 99)),
        "stale_examples": [e for w in workers for e in w.stale_examples][:5],
        "error_examples": [e for w in workers for e in w.error_examples][:5],
    }
    print(json.dumps(out))
    return 0 if writes + reads > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
