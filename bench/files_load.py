#!/usr/bin/env python3
"""Upload and download throughput of Coop's documents (bench/files.sh).

CLIENTS threads each upload FILES documents of SIZE bytes (a PDF header and
bytes generated as they are sent: nothing is held whole), then each downloads
every document it uploaded, reading and counting the bytes. Prints one JSON
line: MB/s up and down (decimal megabytes over the phase's wall time), errors.
Standard library only.
"""

import argparse
import http.client
import json
import os
import threading
import time
import uuid

CHUNK = 256 * 1024


def upload(host, port, cookie, size, name):
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="visibility"\r\n\r\ncoop\r\n'
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.putrequest("POST", "/api/v1/documents")
    conn.putheader("Cookie", cookie)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    first = b"%PDF-1.7\n"
    conn.send(first)
    left = size - len(first)
    block = os.urandom(CHUNK)
    while left > 0:
        n = min(left, CHUNK)
        conn.send(block[:n])
        left -= n
    conn.send(tail)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {body[:200]!r}")
    return json.loads(body)["document_id"]


def download(host, port, cookie, doc_id, size):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", f"/api/v1/documents/{doc_id}/content", headers={"Cookie": cookie})
    response = conn.getresponse()
    got = 0
    while True:
        chunk = response.read(CHUNK)
        if not chunk:
            break
        got += len(chunk)
    conn.close()
    if response.status != 200 or got != size:
        raise RuntimeError(f"download answered {response.status} with {got} of {size} bytes")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--files", type=int, default=2, help="uploads per client")
    parser.add_argument("--size", type=int, default=16_000_000, help="bytes per file")
    args = parser.parse_args()

    ids = [[] for _ in range(args.clients)]
    errors = []

    def run(phase, work):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - started

    def up(i):
        for n in range(args.files):
            try:
                ids[i].append(upload(args.host, args.port, args.cookie, args.size, f"bench-{i}-{n}.pdf"))
            except Exception as e:  # noqa: BLE001 — counted and reported
                errors.append(str(e))

    def down(i):
        for doc_id in ids[i]:
            try:
                download(args.host, args.port, args.cookie, doc_id, args.size)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))

    up_s = run("upload", up)
    uploaded = sum(len(x) for x in ids)
    down_s = run("download", down)
    total_mb = uploaded * args.size / 1e6
    print(json.dumps({
        "uploads": uploaded,
        "upload_mb_s": round(total_mb / up_s, 1),
        "download_mb_s": round(total_mb / down_s, 1),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }))


if __name__ == "__main__":
    main()
