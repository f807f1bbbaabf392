-- Whose session it is, so that "sign out everywhere", a password change and a
-- password reset can end all of a user's sessions. NULL only on sessions
-- started before this column existed (they expire on their own).
ALTER TABLE sessions ADD COLUMN user_id UUID;
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Password resets: single-use and expiring, like invites; only the token's
-- hash is stored, so a copy of the table yields no usable link.
CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX password_resets_user_id ON password_resets (user_id);

-- A family's calendar subscription: a secret address a calendar app polls
-- without a session. Only the token's hash is stored; a new link replaces
-- the old one (one per family).
CREATE TABLE calendar_feeds (
    family_id   UUID PRIMARY KEY REFERENCES families (id) ON DELETE CASCADE,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX calendar_feeds_token_hash ON calendar_feeds (token_hash);

-- Email changes waiting for the new address to confirm: single-use and
-- expiring; only the token's hash is stored.
CREATE TABLE email_changes (
    token_hash  TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
