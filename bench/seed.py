#!/usr/bin/env python3
"""Seed a running Coop through its HTTP API (Python 3.11 stdlib only).

Creates a co-op and its coordinator, logs in, enrolls N families over a few
keep-alive connections in parallel, writes the family ids one per line, and
checks that a few of them read back with 200.

    seed.py --base http://127.0.0.1:PORT --families 10000 \
            --ids-out ids.txt --cookie-out cookie.txt [--coop-id-out coop-id.txt]

Prints a one-line summary; exits non-zero on any unexpected response.
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


class Fail(Exception):
    pass


def connect(base: urllib.parse.SplitResult) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(base.hostname, base.port, timeout=30)


def call(conn, method, path, body=None, headers=None):
    """One request on a keep-alive connection: (status, headers, parsed body)."""
    hdrs = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, resp, parsed


def expect(status, want, what, parsed):
    if status != want:
        raise Fail(f"{what}: expected {want}, got {status}: {str(parsed)[:500]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--families", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--ids-out", required=True)
    ap.add_argument("--cookie-out", required=True, help="file for 'coop_session=TOKEN'")
    ap.add_argument("--coop-id-out", help="file for the new co-op's id")
    args = ap.parse_args()

    base = urllib.parse.urlsplit(args.base)
    run = secrets.token_hex(4)
    email = f"bench-{run}@example.org"
    password = "bench-password-123"
    started = time.monotonic()

    conn = connect(base)
    status, _, body = call(conn, "POST", "/api/v1/coops", {
        "name": "Bench Co-op",
        "coordinator": {"name": "Bench Coordinator", "email": email, "password": password},
    })
    # 202: the co-op works at once; its emails wait for the confirmation
    # link, which a benchmark has no use for.
    expect(status, 202, "POST /api/v1/coops", body)

    status, resp, body = call(conn, "POST", "/api/v1/auth/login",
                              {"email": email, "password": password})
    expect(status, 200, "POST /api/v1/auth/login", body)
    if not isinstance(body, dict) or "coop_id" not in body.get("user", {}):
        raise Fail(f"POST /api/v1/auth/login: no user.coop_id in {body!r}")
    coop_id = body["user"]["coop_id"]
    token = None
    for value in resp.headers.get_all("Set-Cookie") or []:
        first = value.split(";", 1)[0].strip()
        name, _, val = first.partition("=")
        if name == "coop_session" and val:
            token = val
    if not token:
        raise Fail("login: no coop_session cookie in Set-Cookie")
    cookie = f"coop_session={token}"
    auth = {"Cookie": cookie}

    # Families are split by index across threads; each thread keeps one connection.
    ids: list[str | None] = [None] * args.families
    errors: list[str] = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        c = connect(base)
        try:
            for n in range(start, args.families, args.threads):
                if errors:
                    return
                st, _, b = call(c, "POST", "/api/v1/families",
                                {"family_name": f"Family {n}",
                                 "email": f"family-{n}@example.org"}, auth)
                if st != 201 or not isinstance(b, dict) or "family_id" not in b:
                    raise Fail(f"POST /api/v1/families #{n}: {st} {str(b)[:500]}")
                ids[n] = b["family_id"]
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            c.close()

    seed_start = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seed_secs = time.monotonic() - seed_start
    if errors:
        raise Fail("seeding families failed: " + "; ".join(errors[:3]))

    with open(args.ids_out, "w") as f:
        f.writelines(f"{i}\n" for i in ids)
    with open(args.cookie_out, "w") as f:
        f.write(cookie + "\n")
    if args.coop_id_out:
        with open(args.coop_id_out, "w") as f:
            f.write(str(coop_id) + "\n")

    # Sanity: a few reads with the cookie are 200 and return the right family.
    for i in (ids[0], ids[len(ids) // 2], ids[-1]):
        st, _, b = call(conn, "GET", f"/api/v1/families/{i}", headers=auth)
        expect(st, 200, f"GET /api/v1/families/{i}", b)
        if not isinstance(b, dict) or b.get("family_id") != i:
            raise Fail(f"GET /api/v1/families/{i}: unexpected body {str(b)[:300]}")
    # And without the cookie it is refused.
    st, _, b = call(conn, "GET", f"/api/v1/families/{ids[0]}")
    expect(st, 401, "GET /api/v1/families/{id} without a cookie", b)
    conn.close()

    print(f"seeded {args.families} families in {seed_secs:.1f}s "
          f"({args.families / seed_secs:.0f}/s, {args.threads} threads); "
          f"total {time.monotonic() - started:.1f}s; coordinator {email}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Fail, OSError, http.client.HTTPException) as exc:
        print(f"seed.py: {exc}", file=sys.stderr)
        sys.exit(1)
