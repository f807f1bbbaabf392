-- The co-op's teaching: semesters, their classes, the families' children, and
-- seat-limited enrollment with waitlists; what families owe; announcements.

CREATE TABLE semesters (
    id                      UUID PRIMARY KEY,
    coop_id                 UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    starts_on               DATE NOT NULL,
    ends_on                 DATE NOT NULL,
    registration_opens_at   TIMESTAMPTZ NOT NULL,
    registration_closes_at  TIMESTAMPTZ NOT NULL,
    -- JSON array of YYYY-MM-DD dates without meetings (holidays).
    holidays                TEXT NOT NULL,
    version                 BIGINT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX semesters_coop ON semesters (coop_id, starts_on);

CREATE TABLE classes (
    id               UUID PRIMARY KEY,
    coop_id          UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    semester_id      UUID NOT NULL REFERENCES semesters (id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    teacher_user_id  UUID,
    capacity         INTEGER NOT NULL CHECK (capacity > 0),
    -- Counters kept in the row every enrollment locks, so the catalog reads
    -- one row per class and seats are a hard limit under any concurrency.
    seats_taken      INTEGER NOT NULL CHECK (seats_taken >= 0 AND seats_taken <= capacity),
    waitlist_length  INTEGER NOT NULL CHECK (waitlist_length >= 0),
    -- The next waitlist ticket: taken under the row lock, so ticket order is
    -- commit order.
    waitlist_next    BIGINT NOT NULL,
    fee_cents        BIGINT NOT NULL CHECK (fee_cents >= 0),
    currency         TEXT NOT NULL,
    min_age          INTEGER,
    max_age          INTEGER,
    min_grade        INTEGER,
    max_grade        INTEGER,
    -- JSON array of {weekday, starts_at, minutes, room}.
    meetings         TEXT NOT NULL,
    version          BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX classes_semester ON classes (coop_id, semester_id, id);
CREATE INDEX classes_teacher ON classes (coop_id, teacher_user_id);

CREATE TABLE children (
    id          UUID PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    first_name  TEXT NOT NULL,
    birth_date  DATE,
    -- 0 is kindergarten, -1 pre-K, 1..12 the school grades.
    grade       INTEGER,
    version     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX children_family ON children (coop_id, family_id, id);

CREATE TABLE enrollments (
    id          UUID PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    class_id    UUID NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    child_id    UUID NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('enrolled', 'waitlisted', 'dropped')),
    -- The waitlist ticket while waitlisted (first come, first served).
    ticket      BIGINT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
-- One row per child and class: a re-enrollment after a drop reuses it.
CREATE UNIQUE INDEX enrollments_class_child ON enrollments (class_id, child_id);
CREATE INDEX enrollments_waitlist ON enrollments (class_id, ticket) WHERE state = 'waitlisted';
CREATE INDEX enrollments_child ON enrollments (coop_id, child_id);
CREATE INDEX enrollments_family ON enrollments (coop_id, family_id);

-- What families owe: a fee when a child takes a seat (positive), a credit
-- when it is refunded (negative). Payments that succeeded count against it.
CREATE TABLE ledger (
    id             UUID PRIMARY KEY,
    coop_id        UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id      UUID NOT NULL,
    enrollment_id  UUID,
    kind           TEXT NOT NULL CHECK (kind IN ('fee', 'refund')),
    amount_cents   BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    description    TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_family ON ledger (coop_id, family_id, created_at);

-- Money returned through the provider, for a drop after the family paid.
CREATE TABLE refunds (
    id                  UUID PRIMARY KEY,
    coop_id             UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id           UUID NOT NULL,
    payment_id          UUID NOT NULL,
    amount_cents        BIGINT NOT NULL CHECK (amount_cents > 0),
    currency            TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    provider_refund_id  TEXT,
    failure_reason      TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX refunds_family ON refunds (coop_id, family_id, created_at);

CREATE TABLE announcements (
    id          UUID PRIMARY KEY,
    coop_id     UUID NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    class_id    UUID,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    author_id   UUID NOT NULL,
    -- Set once the fan-out has found every recipient.
    recipients  INTEGER,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX announcements_coop ON announcements (coop_id, created_at);

-- One row per recipient family, written by the fan-out in batches.
CREATE TABLE announcement_deliveries (
    announcement_id  UUID NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
    family_id        UUID NOT NULL,
    coop_id          UUID NOT NULL,
    email            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (announcement_id, family_id)
);
