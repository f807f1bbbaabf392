-- A co-op's documents (issue 17). The bytes are not here: they are an object
-- in the configured store (a folder under COOP_DATA_DIR, or an S3 bucket)
-- under `object_key`, written before this row commits. A row therefore
-- always has its object; an object without a row (a crash between the two)
-- is removed by the upload's own sweep job (queued before the first byte).
--
-- `class_id` and `family_id` carry no foreign key on purpose: a class or a
-- family removed later must not take the row with it (the object would be
-- left behind with nothing pointing at it); coordinators still see it.
CREATE TABLE documents (
    id             UUID PRIMARY KEY,
    coop_id        UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    -- The user who uploaded it (may rename and delete it, like coordinators).
    owner_id       UUID NOT NULL,
    -- Who may see it: the whole co-op, one class (its enrolled families and
    -- teacher), or one family (that family and the coordinators).
    visibility     TEXT NOT NULL CHECK (visibility IN ('coop', 'class', 'family')),
    class_id       UUID,
    family_id      UUID,
    name           TEXT NOT NULL,
    -- Taken from the content's first bytes, never from the client.
    content_type   TEXT NOT NULL,
    size_bytes     BIGINT NOT NULL,
    -- Hex SHA-256 of the content: the download's ETag.
    sha256         TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    -- Set by the thumbnail job for images.
    thumbnail_key  TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    CHECK ((visibility = 'class') = (class_id IS NOT NULL)),
    CHECK ((visibility = 'family') = (family_id IS NOT NULL))
);
CREATE INDEX documents_coop ON documents (coop_id, created_at);
