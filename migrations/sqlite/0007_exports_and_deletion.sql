-- SQLite twin of postgres/0007 (UUIDs and the archive as BLOBs).
CREATE TABLE coop_exports (
    id            BLOB PRIMARY KEY,
    coop_id       BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    requested_by  BLOB NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'ready', 'expired', 'failed')),
    archive       BLOB,
    archive_bytes BIGINT,
    created_at    BIGINT NOT NULL,
    ready_at      BIGINT,
    expires_at    BIGINT
);
CREATE INDEX coop_exports_coop ON coop_exports (coop_id, created_at);
CREATE UNIQUE INDEX coop_exports_one_queued ON coop_exports (coop_id) WHERE state = 'queued';

CREATE TABLE coop_deletions (
    coop_id       BLOB PRIMARY KEY REFERENCES coops (id) ON DELETE CASCADE,
    requested_by  BLOB NOT NULL,
    requested_at  BIGINT NOT NULL,
    deletes_at    BIGINT NOT NULL,
    started_at    BIGINT
);
