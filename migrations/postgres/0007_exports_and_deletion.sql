-- A co-op's export: one archive (zip) of its data, built by a job and kept
-- here until it expires. The bytes live in the database because it is the
-- one store every instance and worker of both tiers shares (there is no
-- object storage yet); an archive is a few megabytes even for a large co-op.
CREATE TABLE coop_exports (
    id            UUID PRIMARY KEY,
    coop_id       UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    -- The coordinator who asked, and is emailed when it is ready.
    requested_by  UUID NOT NULL,
    -- queued → ready → expired, or failed when the job gave up.
    state         TEXT NOT NULL CHECK (state IN ('queued', 'ready', 'expired', 'failed')),
    archive       BYTEA,
    archive_bytes BIGINT,
    created_at    BIGINT NOT NULL,
    ready_at      BIGINT,
    -- Set when the archive is built: the download works until then.
    expires_at    BIGINT
);
CREATE INDEX coop_exports_coop ON coop_exports (coop_id, created_at);
-- At most one export in progress per co-op, however many instances take requests.
CREATE UNIQUE INDEX coop_exports_one_queued ON coop_exports (coop_id) WHERE state = 'queued';

-- A co-op's deletion, scheduled by a coordinator: until `deletes_at` the
-- co-op works (and a coordinator may cancel); then jobs delete everything of
-- it in batches, this row last (it goes with the co-op's own row).
CREATE TABLE coop_deletions (
    coop_id       UUID PRIMARY KEY REFERENCES coops (id) ON DELETE CASCADE,
    requested_by  UUID NOT NULL,
    requested_at  BIGINT NOT NULL,
    deletes_at    BIGINT NOT NULL,
    -- Set by the first deletion job: from then on it cannot be cancelled.
    started_at    BIGINT
);
