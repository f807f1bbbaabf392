-- SQLite twin of postgres/0009 (UUIDs as BLOBs); see there for the why.
CREATE TABLE documents (
    id             BLOB PRIMARY KEY,
    coop_id        BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    owner_id       BLOB NOT NULL,
    visibility     TEXT NOT NULL CHECK (visibility IN ('coop', 'class', 'family')),
    class_id       BLOB,
    family_id      BLOB,
    name           TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    size_bytes     BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    thumbnail_key  TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CHECK ((visibility = 'class') = (class_id IS NOT NULL)),
    CHECK ((visibility = 'family') = (family_id IS NOT NULL))
);
CREATE INDEX documents_coop ON documents (coop_id, created_at);
