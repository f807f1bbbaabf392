-- SQLite twin of migrations/postgres/0004_courses.sql (BLOBs as BLOBs, times as text).
-- The co-op's teaching: semesters, their classes, the families' children, and
-- seat-limited enrollment with waitlists; what families owe; announcements.

CREATE TABLE semesters (
    id                      BLOB PRIMARY KEY,
    coop_id                 BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    starts_on               TEXT NOT NULL,
    ends_on                 TEXT NOT NULL,
    registration_opens_at   TEXT NOT NULL,
    registration_closes_at  TEXT NOT NULL,
    -- JSON array of YYYY-MM-DD dates without meetings (holidays).
    holidays                TEXT NOT NULL,
    version                 INTEGER NOT NULL,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE INDEX semesters_coop ON semesters (coop_id, starts_on);

CREATE TABLE classes (
    id               BLOB PRIMARY KEY,
    coop_id          BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    semester_id      BLOB NOT NULL REFERENCES semesters (id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    teacher_user_id  BLOB,
    capacity         INTEGER NOT NULL CHECK (capacity > 0),
    -- Counters kept in the row every enrollment locks, so the catalog reads
    -- one row per class and seats are a hard limit under any concurrency.
    seats_taken      INTEGER NOT NULL CHECK (seats_taken >= 0 AND seats_taken <= capacity),
    waitlist_length  INTEGER NOT NULL CHECK (waitlist_length >= 0),
    -- The next waitlist ticket: taken under the row lock, so ticket order is
    -- commit order.
    waitlist_next    INTEGER NOT NULL,
    fee_cents        INTEGER NOT NULL CHECK (fee_cents >= 0),
    currency         TEXT NOT NULL,
    min_age          INTEGER,
    max_age          INTEGER,
    min_grade        INTEGER,
    max_grade        INTEGER,
    -- JSON array of {weekday, starts_at, minutes, room}.
    meetings         TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX classes_semester ON classes (coop_id, semester_id, id);
CREATE INDEX classes_teacher ON classes (coop_id, teacher_user_id);

CREATE TABLE children (
    id          BLOB PRIMARY KEY,
    coop_id     BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL REFERENCES families (id) ON DELETE CASCADE,
    first_name  TEXT NOT NULL,
    birth_date  TEXT,
    -- 0 is kindergarten, -1 pre-K, 1..12 the school grades.
    grade       INTEGER,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX children_family ON children (coop_id, family_id, id);

CREATE TABLE enrollments (
    id          BLOB PRIMARY KEY,
    coop_id     BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    class_id    BLOB NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    child_id    BLOB NOT NULL REFERENCES children (id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('enrolled', 'waitlisted', 'dropped')),
    -- The waitlist ticket while waitlisted (first come, first served).
    ticket      INTEGER,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- One row per child and class: a re-enrollment after a drop reuses it.
CREATE UNIQUE INDEX enrollments_class_child ON enrollments (class_id, child_id);
CREATE INDEX enrollments_waitlist ON enrollments (class_id, ticket) WHERE state = 'waitlisted';
CREATE INDEX enrollments_child ON enrollments (coop_id, child_id);
CREATE INDEX enrollments_family ON enrollments (coop_id, family_id);

-- What families owe: a fee when a child takes a seat (positive), a credit
-- when it is refunded (negative). Payments that succeeded count against it.
CREATE TABLE ledger (
    id             BLOB PRIMARY KEY,
    coop_id        BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id      BLOB NOT NULL,
    enrollment_id  BLOB,
    kind           TEXT NOT NULL CHECK (kind IN ('fee', 'refund')),
    amount_cents   INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    description    TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX ledger_family ON ledger (coop_id, family_id, created_at);

-- Money returned through the provider, for a drop after the family paid.
CREATE TABLE refunds (
    id                  BLOB PRIMARY KEY,
    coop_id             BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    family_id           BLOB NOT NULL,
    payment_id          BLOB NOT NULL,
    amount_cents        INTEGER NOT NULL CHECK (amount_cents > 0),
    currency            TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    provider_refund_id  TEXT,
    failure_reason      TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX refunds_family ON refunds (coop_id, family_id, created_at);

CREATE TABLE announcements (
    id          BLOB PRIMARY KEY,
    coop_id     BLOB NOT NULL REFERENCES coops (id) ON DELETE CASCADE,
    class_id    BLOB,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    author_id   BLOB NOT NULL,
    -- Set once the fan-out has found every recipient.
    recipients  INTEGER,
    created_at  TEXT NOT NULL
);
CREATE INDEX announcements_coop ON announcements (coop_id, created_at);

-- One row per recipient family, written by the fan-out in batches.
CREATE TABLE announcement_deliveries (
    announcement_id  BLOB NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
    family_id        BLOB NOT NULL,
    coop_id          BLOB NOT NULL,
    email            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (announcement_id, family_id)
);
