#!/usr/bin/env python3
"""Grows a migrated, empty Coop SQLite file to FAMILIES families for
bench/transfer.sh: one co-op, a coordinator, a semester with two classes, and
per family a child, an enrollment, a fee in the ledger, a payment and a pending
job (due far in the future). Written straight into the file (the API would
take hours for 100,000 families); values have the forms Coop itself writes
(UUIDs as 16-byte BLOBs, times as RFC 3339 text, Unix milliseconds).

    bench/transfer_seed.py PATH/coop.sqlite3 FAMILIES
"""

import sqlite3
import sys

path, families = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
ts = "'2026-11-30T05:00:00.123456Z'"
ms = "1764478800123"
db.executescript(f"""
BEGIN;
INSERT INTO coops (id, name, created_at, verified_at) VALUES (randomblob(16), 'Bench Co-op', {ts}, {ms});
INSERT INTO users SELECT randomblob(16), id, 'coordinator@bench.example', 'Ada', '$argon2id$unused', 'coordinator', NULL, {ts} FROM coops;
INSERT INTO semesters SELECT randomblob(16), id, 'Fall', '2026-12-30', '2027-03-30', {ts}, '2026-12-10T05:00:00Z', '["2027-01-13"]', 1, {ts}, {ts} FROM coops;
INSERT INTO classes SELECT randomblob(16), coop_id, id, 'Watercolor', 'Paint', NULL, 30, 0, 0, 1, 4500, 'USD', NULL, NULL, NULL, NULL,
    '[{{"weekday":"monday","starts_at":"09:30","minutes":60,"room":"Hall"}}]', 1, {ts}, {ts} FROM semesters;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {families})
INSERT INTO families SELECT randomblob(16), c.id, 'Family ' || n.i, 'family' || n.i || '@bench.example', '2026-11-30', 1, {ts}, {ts} FROM n, coops c;
INSERT INTO children SELECT randomblob(16), coop_id, id, 'Child of ' || family_name, '2016-04-01', NULL, 1, {ts}, {ts} FROM families;
INSERT INTO enrollments SELECT randomblob(16), ch.coop_id, cl.id, ch.id, ch.family_id, 'dropped', NULL, {ts}, {ts}
    FROM children ch, (SELECT id FROM classes LIMIT 1) cl;
INSERT INTO ledger SELECT randomblob(16), coop_id, id, NULL, 'fee', 4500, 'USD', 'Fall fees', {ts} FROM families;
INSERT INTO payments SELECT randomblob(16), coop_id, id, 4500, 'USD', 'Fall fees', 'succeeded', 'ch_' || lower(hex(randomblob(6))), NULL, {ms}, {ms} FROM families;
INSERT INTO jobs (id, coop_id, kind, key, payload, state, attempts, max_attempts, run_at, claim,
                  lease_until, last_error, created_at, updated_at)
    SELECT randomblob(16), coop_id, 'welcome_email', 'bench-' || lower(hex(id)), '{{"family_id":"-"}}', 'ready', 0, 10,
    4102444800000, NULL, NULL, NULL, {ms}, {ms} FROM families;
COMMIT;
""")
rows = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
           for t in ["coops", "users", "semesters", "classes", "families", "children",
                     "enrollments", "ledger", "payments", "jobs"])
print(rows)
