-- SQLite twin of migrations/postgres/0003_idempotency_lease.sql (UUIDs as BLOBs).
-- An in-flight Idempotency-Key reservation belongs to one request (`owner`)
-- until `lease_until` (Unix milliseconds). A repeat that finds the lease passed
-- takes the reservation over, so a request whose instance died does not block
-- its key for the whole retention period.
--
-- `resource` is written by the work itself, in the same transaction, and only
-- while the writer still owns the reservation: it says that the work committed
-- and what it created. A takeover that finds it answers with that resource
-- instead of doing the work a second time; a writer that lost its reservation
-- cannot commit. Rows reserved before this migration have no lease: their lease
-- is counted from created_at (see store::idempotency).
ALTER TABLE idempotency ADD COLUMN owner BLOB;
ALTER TABLE idempotency ADD COLUMN lease_until BIGINT;
ALTER TABLE idempotency ADD COLUMN resource TEXT;
