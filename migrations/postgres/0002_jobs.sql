-- Durable background work. A job is inserted in the same transaction as the
-- write that causes it, so it exists exactly when that write committed.
-- Times are Unix milliseconds (BIGINT) on both backends: the queue compares
-- them constantly and needs no calendar arithmetic.
CREATE TABLE jobs (
    id            UUID PRIMARY KEY,
    coop_id       UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    -- Names the job's effect: a rerun finds the effect already recorded.
    key           TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('ready', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    run_at        BIGINT NOT NULL,
    -- While running: the claim that owns the job and until when. Completions
    -- and heartbeats are fenced by the claim, so a worker whose lease ran out
    -- cannot overwrite what the next owner did.
    claim         UUID,
    lease_until   BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_key ON jobs (key);
CREATE INDEX jobs_ready ON jobs (run_at) WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_coop_state ON jobs (coop_id, state, created_at);

-- Effects that cannot be undone (an email handed to SMTP), recorded by key in
-- the transaction that completes the job.
CREATE TABLE job_effects (
    key      TEXT PRIMARY KEY,
    done_at  BIGINT NOT NULL
);

-- Invitations to create a family account. Only the token's SHA-256 is stored.
CREATE TABLE invites (
    token_hash  TEXT PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX invites_family ON invites (family_id);

CREATE TABLE calendar_events (
    id          UUID PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    -- Stable across reruns, and the iCalendar UID.
    key         TEXT NOT NULL UNIQUE,
    summary     TEXT NOT NULL,
    description TEXT NOT NULL,
    starts_on   DATE NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX calendar_events_family ON calendar_events (coop_id, family_id, starts_on);

-- Payments outlive the family they were for: no foreign key to families.
CREATE TABLE payments (
    id              UUID PRIMARY KEY,
    coop_id         UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id       UUID NOT NULL,
    amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
    currency        TEXT NOT NULL,
    description     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    provider_charge_id  TEXT,
    failure_reason  TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX payments_family ON payments (coop_id, family_id, created_at);

-- Dead jobs, for the queue-depth metric (ready and running use the indexes
-- above). A partial index costs nothing when a row outside it is written, so
-- enqueuing touches only the primary key, jobs_key, jobs_ready and jobs_coop_state.
CREATE INDEX jobs_dead ON jobs (updated_at) WHERE state = 'dead';
