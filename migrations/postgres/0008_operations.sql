-- Tracing: the W3C trace id (32 hex digits) of the request that queued a job,
-- so the worker's log lines for the job carry the same id as the request's.
-- NULL for jobs queued outside a request (tools, other jobs, older rows).
ALTER TABLE jobs ADD COLUMN trace_id TEXT;

-- Platform operators: the people who run Coop itself. Not members of any
-- co-op (no coop_id), so no co-op route serves them; they sign in through the
-- same log-in as everyone and see the operations page. Created by
-- `coop operators add EMAIL`; the password is NULL until set from the
-- one-time link that command prints.
CREATE TABLE operators (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL,
    password_hash  TEXT,
    created_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX operators_email_key ON operators (email);

-- An operator's one-time links to set the password: single-use and expiring,
-- only the token's hash stored, like password_resets.
CREATE TABLE operator_password_links (
    token_hash   TEXT PRIMARY KEY,
    operator_id  UUID NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX operator_password_links_operator_id ON operator_password_links (operator_id);
