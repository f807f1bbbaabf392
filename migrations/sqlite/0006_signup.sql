-- SQLite twin of postgres/0006 (UUIDs as BLOBs).
ALTER TABLE coops ADD COLUMN verified_at BIGINT;
UPDATE coops SET verified_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000;

CREATE TABLE signup_verifications (
    token_hash  TEXT PRIMARY KEY,
    coop_id     BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX signup_verifications_coop_id ON signup_verifications (coop_id);
