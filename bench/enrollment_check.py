#!/usr/bin/env python3
"""Check an enrollment-day run in the database (Python 3.11 stdlib; psql for PostgreSQL).

    enrollment_check.py --sqlite FILE       --placements placements.tsv
    enrollment_check.py --pg postgres://... --placements placements.tsv

Reads every class and enrollment of the database after the run (the servers
stopped) and the placements the load generator saw (class, child, state,
position, send and answer times in µs), and prints one JSON object:

  overbooked            sum over classes of max(0, children enrolled - capacity)
  seat_counter_mismatch classes whose seats_taken differs from the enrolled rows
  waitlist_violations   the sum of:
    duplicate_tickets     two waitlisted children of a class with one ticket
    ticket_gaps           tickets of a class not contiguous up to waitlist_next - 1,
                          or waitlist_length not the number of waitlisted rows
    waitlisted_while_free a waitlist in a class with a free seat (no drops in the run)
    position_mismatch     a waitlisted answer whose position is not the child's
                          rank by ticket in the database
    order_vs_observed     commit order contradicting what the client saw: a child
                          whose request was sent after another's answer arrived got
                          the lower ticket, or a seat although the other was
                          waitlisted (both in the same class)
  placements_missing    answers the client got that have no row in the database

Exit status 0 when overbooked and waitlist_violations are 0, else 1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import uuid
from collections import defaultdict


def as_id(value) -> str:
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    return str(value)


def load_sqlite(path: str):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    classes = db.execute(
        "SELECT id, capacity, seats_taken, waitlist_length, waitlist_next FROM classes").fetchall()
    enrollments = db.execute(
        "SELECT class_id, child_id, state, ticket FROM enrollments").fetchall()
    db.close()
    return classes, enrollments


def psql(dsn: str, sql: str):
    out = subprocess.run(["psql", dsn, "-qAtX", "-F", "\t", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def load_pg(dsn: str):
    classes = psql(dsn, "SELECT id, capacity, seats_taken, waitlist_length, waitlist_next FROM classes")
    enrollments = psql(dsn, "SELECT class_id, child_id, state, COALESCE(ticket::text, '') FROM enrollments")
    return classes, enrollments


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--sqlite")
    src.add_argument("--pg")
    ap.add_argument("--placements", required=True)
    args = ap.parse_args()

    raw_classes, raw_enrollments = load_sqlite(args.sqlite) if args.sqlite else load_pg(args.pg)
    classes = {}
    for cid, capacity, taken, wl_len, wl_next in raw_classes:
        classes[as_id(cid)] = dict(capacity=int(capacity), taken=int(taken),
                                   wl_len=int(wl_len), wl_next=int(wl_next))
    enrolled = defaultdict(set)
    tickets = defaultdict(dict)  # class -> child -> ticket
    for cid, child, state, ticket in raw_enrollments:
        cid, child = as_id(cid), as_id(child)
        if state == "enrolled":
            enrolled[cid].add(child)
        elif state == "waitlisted":
            tickets[cid][child] = int(ticket) if ticket not in (None, "") else None

    r = dict(overbooked=0, seat_counter_mismatch=0, duplicate_tickets=0, ticket_gaps=0,
             waitlisted_while_free=0, position_mismatch=0, order_vs_observed=0,
             placements_missing=0, classes=len(classes),
             enrolled=sum(len(s) for s in enrolled.values()),
             waitlisted=sum(len(t) for t in tickets.values()), full_classes=0)
    rank = {}  # (class, child) -> place in line by ticket
    for cid, c in classes.items():
        n = len(enrolled[cid])
        r["overbooked"] += max(0, n - c["capacity"])
        r["seat_counter_mismatch"] += int(n != c["taken"])
        r["full_classes"] += int(n >= c["capacity"])
        wl = tickets[cid]
        values = [t for t in wl.values() if t is not None]
        r["duplicate_tickets"] += len(values) - len(set(values)) + (len(wl) - len(values))
        if values:
            distinct = sorted(set(values))
            contiguous = distinct == list(range(c["wl_next"] - len(distinct), c["wl_next"]))
            r["ticket_gaps"] += int(not contiguous or c["wl_len"] != len(wl))
            r["waitlisted_while_free"] += int(n < c["capacity"])
        elif c["wl_len"] != 0:
            r["ticket_gaps"] += 1
        for place, (child, _) in enumerate(sorted(
                ((ch, t) for ch, t in wl.items() if t is not None), key=lambda x: x[1]), start=1):
            rank[(cid, child)] = place

    # What the client saw, per class.
    seen = defaultdict(list)
    with open(args.placements) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6:
                continue
            cid, child, state, position, sent, done = parts[:6]
            seen[cid].append((child, state, position, int(sent), int(done)))
    for cid, answers in seen.items():
        for child, state, position, _, _ in answers:
            if state == "waitlisted":
                if (cid, child) not in rank:
                    r["placements_missing"] += 1
                elif position != str(rank[(cid, child)]):
                    r["position_mismatch"] += 1
            elif state == "enrolled" and child not in enrolled[cid]:
                r["placements_missing"] += 1
        # Order: sort the class's answers by commit order (seats first, then tickets).
        ordered = []
        for child, state, _, sent, done in answers:
            if state == "enrolled":
                ordered.append((0, 0, sent, done))
            elif state == "waitlisted" and (cid, child) in rank:
                ordered.append((1, rank[(cid, child)], sent, done))
        ordered.sort()
        # A request placed at i is out of order if a request placed later had
        # already been answered before request i was even sent.
        later_min_done = float("inf")
        for group, place, sent, done in reversed(ordered):
            if group == 1 and later_min_done < sent:
                r["order_vs_observed"] += 1
            # Seats among themselves are unordered; only compare across places.
            later_min_done = min(later_min_done, done) if group == 1 else later_min_done
        # Seats given after a waitlisted answer arrived (FCFS broken).
        first_wait_done = min((d for g, _, _, d in ordered if g == 1), default=float("inf"))
        r["order_vs_observed"] += sum(1 for g, _, s, _ in ordered if g == 0 and s > first_wait_done)

    r["waitlist_violations"] = (r["duplicate_tickets"] + r["ticket_gaps"] + r["waitlisted_while_free"]
                                + r["position_mismatch"] + r["order_vs_observed"])
    print(json.dumps(r))
    return 0 if r["overbooked"] == 0 and r["waitlist_violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
