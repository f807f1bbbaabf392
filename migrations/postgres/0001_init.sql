-- Every tenant-owned row carries coop_id: it scopes every query today and is the
-- shard key tomorrow.
CREATE TABLE coops (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id             UUID PRIMARY KEY,
    coop_id        UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('coordinator', 'family')),
    family_id      UUID,
    created_at     TIMESTAMPTZ NOT NULL
);
-- Log-in is by email alone, so an email names one user across all co-ops.
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE families (
    id               UUID PRIMARY KEY,
    coop_id          UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_name      TEXT NOT NULL,
    email            TEXT NOT NULL,
    enrollment_date  DATE NOT NULL,
    version          BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX families_coop_email_key ON families (coop_id, email);
-- Keyset pagination walks (coop_id, id); ids are UUIDv7, so this is creation order.
CREATE UNIQUE INDEX families_coop_id_id ON families (coop_id, id);

-- Sessions live here only when no Redis is configured.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Idempotency-Key records: a reservation (status NULL) while the first request
-- runs, then the response it produced, replayed for 24 hours.
CREATE TABLE idempotency (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER,
    headers       TEXT,
    body          BYTEA,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created_at ON idempotency (created_at);
