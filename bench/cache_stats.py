#!/usr/bin/env python3
"""Arithmetic for bench/cache.sh (Python 3 stdlib only).

    cache_stats.py delta BEFORE AFTER [BEFORE AFTER ...]
        Prometheus text scrapes of /metrics, a before/after pair per instance.
        Prints `key=value` lines (split at the last "="): the counter deltas
        bench/cache.sh reports,
        each summed over every label combination and over the instances
        (`inst<i>_...` keys per pair), `missing=` the required metric names no
        scrape had, and `extra.<series>=` every other nonzero cache_* delta.

    cache_stats.py ideal N S WARMUP_REQUESTS MEASURED_REQUESTS
        Expected database reads of an ideal shared cache that starts empty and
        never evicts, when requests draw ids independently from Zipf(S) over N
        ids: the ids first asked for during the measured requests, i.e.
        D(W + M) - D(W) with D(R) = sum_k 1 - (1 - p_k)^R.
"""

from __future__ import annotations

import math
import re
import sys

FAMILY_ROUTE = "/api/v1/families/{id}"
REQUIRED = ("cache_db_reads_total", "cache_requests_total", "http_requests_total")

LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    series = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = LINE.match(line)
            if not m:
                continue
            name, labels, value = m.groups()
            try:
                v = float(value)
            except ValueError:
                continue
            key = (name, tuple(sorted(LABEL.findall(labels or ""))))
            series[key] = v
    return series


def delta(before: dict, after: dict) -> dict:
    # A counter that first appears in `after` started at 0.
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def total(d: dict, name: str, **want: str) -> float:
    s = 0.0
    for (n, labels), v in d.items():
        if n != name:
            continue
        lab = dict(labels)
        if all(lab.get(k) == w for k, w in want.items()):
            s += v
    return s


def fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def cmd_delta(paths: list[str]) -> None:
    if len(paths) % 2 or not paths:
        sys.exit("delta needs BEFORE AFTER pairs")
    merged: dict = {}
    seen_names: set[str] = set()
    out: list[tuple[str, float]] = []
    for i in range(0, len(paths), 2):
        before, after = parse(paths[i]), parse(paths[i + 1])
        seen_names.update(n for n, _ in after)
        d = delta(before, after)
        inst = f"inst{i // 2}"
        out.append((f"{inst}_requests", total(d, "http_requests_total", route=FAMILY_ROUTE, status="200")))
        out.append((f"{inst}_db_reads", total(d, "cache_db_reads_total")))
        out.append((f"{inst}_l1_hit", total(d, "cache_requests_total", tier="l1", result="hit")))
        out.append((f"{inst}_l1_miss", total(d, "cache_requests_total", tier="l1", result="miss")))
        for k, v in d.items():
            merged[k] = merged.get(k, 0.0) + v
    d = merged
    out += [
        ("requests", total(d, "http_requests_total", route=FAMILY_ROUTE, status="200")),
        ("route_total", total(d, "http_requests_total", route=FAMILY_ROUTE)),
        ("db_reads", total(d, "cache_db_reads_total")),
        ("db_reads_family", total(d, "cache_db_reads_total", kind="family")),
        ("db_reads_session", total(d, "cache_db_reads_total", kind="session")),
        ("l1_hit", total(d, "cache_requests_total", tier="l1", result="hit")),
        ("l1_miss", total(d, "cache_requests_total", tier="l1", result="miss")),
        ("l2_hit", total(d, "cache_requests_total", tier="l2", result="hit")),
        ("l2_miss", total(d, "cache_requests_total", tier="l2", result="miss")),
        ("l1_hit_family", total(d, "cache_requests_total", tier="l1", result="hit", kind="family")),
        ("l1_miss_family", total(d, "cache_requests_total", tier="l1", result="miss", kind="family")),
    ]
    # Responses on the family route other than 200, by status.
    non200 = {}
    for (n, labels), v in d.items():
        lab = dict(labels)
        if n == "http_requests_total" and lab.get("route") == FAMILY_ROUTE and lab.get("status") != "200" and v:
            non200[lab.get("status", "?")] = non200.get(lab.get("status", "?"), 0.0) + v
    # Slow responses, from Coop's latency histogram (buckets are cumulative).
    count = total(d, "http_request_duration_seconds_count", route=FAMILY_ROUTE, status="200")
    for le, name in (("0.1", "over_100ms"), ("0.25", "over_250ms")):
        within = total(d, "http_request_duration_seconds_bucket", route=FAMILY_ROUTE, status="200", le=le)
        out.append((name, count - within))
    out.append(("non200", sum(non200.values())))
    out.append(("non200_detail", " ".join(f"{s}:{fmt(v)}" for s, v in sorted(non200.items())) or "none"))
    # Requests on any other route (apart from the scrapes themselves).
    other = {}
    for (n, labels), v in d.items():
        lab = dict(labels)
        if n == "http_requests_total" and lab.get("route") not in (FAMILY_ROUTE, "/metrics") and v:
            key = f"{lab.get('method', '?')} {lab.get('route', '?')} {lab.get('status', '?')}"
            other[key] = other.get(key, 0.0) + v
    out.append(("other_routes", "; ".join(f"{k}: {fmt(v)}" for k, v in sorted(other.items())) or "none"))
    missing = [n for n in REQUIRED if n not in seen_names]
    out.append(("missing", " ".join(missing) or "none"))
    for k, v in out:
        print(f"{k}={v if isinstance(v, str) else fmt(v)}")
    # Every other cache counter that moved (bypasses, stampede waits, rejected fills...).
    for (n, labels), v in sorted(d.items()):
        if n.startswith("cache_") and n not in ("cache_db_reads_total", "cache_requests_total") \
                and n.endswith("_total") and v:
            lab = ",".join(f'{k}="{w}"' for k, w in labels)
            print(f"extra.{n}{{{lab}}}={fmt(v)}")


def cmd_ideal(n: int, s: float, warm: float, measured: float) -> None:
    h = sum(k ** -s for k in range(1, n + 1))

    def distinct(r: float) -> float:
        # 1 - (1 - p)^r, computed stably for small p.
        return sum(-math.expm1(r * math.log1p(-(k ** -s) / h)) for k in range(1, n + 1))

    d0, d1 = distinct(warm), distinct(warm + measured)
    print(f"h={h:.4f}")
    print(f"rank1_share={1 / h:.5f}")
    print(f"distinct_before={d0:.0f}")
    print(f"distinct_after={d1:.0f}")
    print(f"reads={d1 - d0:.0f}")
    print(f"reads_per_100={100 * (d1 - d0) / measured if measured else 0:.2f}")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "delta":
        cmd_delta(sys.argv[2:])
    elif sys.argv[1] == "ideal" and len(sys.argv) == 6:
        cmd_ideal(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
