-- Verified sign-up. A co-op works from the moment it is founded, but until
-- its founder confirms the address (the link emailed to it), the jobs that
-- would email anyone else wait ("held": run_at at the largest BIGINT, see
-- store/jobs.rs); confirming releases them. Co-ops founded before this
-- migration count as confirmed.
ALTER TABLE coops ADD COLUMN verified_at BIGINT;
UPDATE coops SET verified_at = (extract(epoch FROM now()) * 1000)::BIGINT;

-- Confirmation links of founders: single-use and expiring; only the
-- token's hash is stored, like invites and password resets.
CREATE TABLE signup_verifications (
    token_hash  TEXT PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX signup_verifications_coop_id ON signup_verifications (coop_id);
