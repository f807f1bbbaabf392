//! Enrolling a child in a class, and dropping: seats are a hard limit under
//! any concurrency, on both backends and across any number of instances.
//!
//! Every change to a class's seats happens in a transaction that first locks
//! the class's row (PostgreSQL `SELECT … FOR UPDATE`; SQLite `BEGIN IMMEDIATE`,
//! its one writer), reads the counters, decides, and writes the enrollment and
//! the counters before committing. Transactions on one class therefore run one
//! after another, so:
//! - `seats_taken` never passes `capacity` (it is also a CHECK constraint);
//! - the waitlist ticket (`waitlist_next`, taken under the lock) orders the
//!   waitlist by commit order;
//! - a freed seat (a drop, a capacity raise) promotes the first ticket exactly
//!   once, with its email job and fee in the same commit.
//!
//! An enrollment also locks the child's row first (always child, then class:
//! one order, no deadlock), so two enrollments of one child cannot both pass
//! the schedule-conflict check.

use coop_domain::courses::{self, EnrollmentState, Meeting};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::Db;
use super::courses::{CLASS_COLUMNS, ClassRow};
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};

/// Row lock for a read inside a write transaction (SQLite's is the whole database).
fn for_update(db: &Db) -> &'static str {
    match db {
        Db::Postgres(..) => " FOR UPDATE",
        Db::Sqlite(..) => "",
    }
}

/// Counts the waitlisted tickets up to `$ticket` in `$class_id`: the place in line.
macro_rules! waitlist_position {
    ($tx:ident, $class_id:expr, $ticket:expr) => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM enrollments WHERE class_id = $1 AND state = 'waitlisted' AND ticket <= $2",
        )
        .bind($class_id)
        .bind($ticket)
        .fetch_one(&mut *$tx)
        .await
    };
}

macro_rules! add_ledger {
    ($tx:ident, $coop:expr, $family:expr, $enrollment:expr, $kind:expr, $cents:expr, $currency:expr, $description:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO ledger (id, coop_id, family_id, enrollment_id, kind, amount_cents, currency, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7())
        .bind($coop)
        .bind($family)
        .bind($enrollment)
        .bind($kind)
        .bind($cents)
        .bind($currency)
        .bind($description)
        .bind($at)
        .execute(&mut *$tx)
        .await
    };
}

/// Moves the first waitlisted children into the class's free seats: each gets
/// its seat, its fee line and its promotion email job in this transaction.
/// Evaluates to the promoted enrollments.
macro_rules! promote_waitlist {
    ($tx:ident, $class_id:expr, $now:expr, $promotion:expr) => {{
        let promotion: &Promotion<'_> = $promotion;
        let mut promoted: Vec<EnrollmentRow> = Vec::new();
        loop {
            let class: ClassRow = sqlx::query_as(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE id = $1"))
                .bind($class_id)
                .fetch_one(&mut *$tx)
                .await?;
            if class.seats_taken >= class.capacity || class.waitlist_length == 0 {
                break;
            }
            let next: Option<EnrollmentRow> = sqlx::query_as(&format!(
                "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE class_id = $1 AND state = 'waitlisted' \
                 ORDER BY ticket LIMIT 1"
            ))
            .bind($class_id)
            .fetch_optional(&mut *$tx)
            .await?;
            let Some(mut next) = next else { break };
            sqlx::query("UPDATE enrollments SET state = 'enrolled', ticket = NULL, updated_at = $2 WHERE id = $1")
                .bind(next.id)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(
                "UPDATE classes SET seats_taken = seats_taken + 1, waitlist_length = waitlist_length - 1, \
                 updated_at = $2 WHERE id = $1",
            )
            .bind($class_id)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            if class.fee_cents > 0 {
                let first_name: String = sqlx::query_scalar("SELECT first_name FROM children WHERE id = $1")
                    .bind(next.child_id)
                    .fetch_one(&mut *$tx)
                    .await?;
                add_ledger!($tx, class.coop_id, next.family_id, Some(next.id), "fee", class.fee_cents,
                    &class.currency, &(promotion.fee_description)(&class, &first_name), $now)?;
            }
            let job = (promotion.job)(class.coop_id, next.id);
            crate::enqueue_job!($tx, &job)?;
            next.state = EnrollmentState::Enrolled;
            next.ticket = None;
            next.updated_at = $now;
            promoted.push(next);
        }
        promoted
    }};
}

/// A family's balance in one currency: fees and credits, less what it paid
/// (payments that succeeded), plus what is being or was returned to it.
macro_rules! balance_in {
    ($tx:ident, $coop:expr, $family:expr, $currency:expr) => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE((SELECT CAST(SUM(amount_cents) AS BIGINT) FROM ledger WHERE coop_id = $1 AND family_id = $2 AND currency = $3), 0) \
             - COALESCE((SELECT CAST(SUM(amount_cents) AS BIGINT) FROM payments WHERE coop_id = $1 AND family_id = $2 AND currency = $3 AND state = 'succeeded'), 0) \
             + COALESCE((SELECT CAST(SUM(amount_cents) AS BIGINT) FROM refunds WHERE coop_id = $1 AND family_id = $2 AND currency = $3 AND state <> 'failed'), 0)",
        )
        .bind($coop)
        .bind($family)
        .bind($currency)
        .fetch_one(&mut *$tx)
        .await
    };
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct EnrollmentRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub class_id: Uuid,
    pub child_id: Uuid,
    pub family_id: Uuid,
    #[sqlx(try_from = "String")]
    pub state: EnrollmentState,
    pub ticket: Option<i64>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const ENROLLMENT_COLUMNS: &str =
    "id, coop_id, class_id, child_id, family_id, state, ticket, created_at, updated_at";

/// What `enroll` is asked.
pub struct Enroll<'a> {
    pub coop_id: Uuid,
    pub class_id: Uuid,
    pub child_id: Uuid,
    /// Families enroll only inside the registration window; coordinators may
    /// enroll at any time before the semester ends.
    pub enforce_window: bool,
    pub now: OffsetDateTime,
    /// The fee's ledger line for an enrollment that took a seat.
    pub fee_description: &'a (dyn Fn(&ClassRow, &str) -> String + Sync),
}

#[derive(Debug)]
pub enum EnrollOutcome {
    /// The child has a seat, or a place on the waitlist (`position`, 1 = next).
    Placed {
        enrollment: EnrollmentRow,
        position: Option<i64>,
        class: Box<ClassRow>,
        /// False when the child was already enrolled or waitlisted: nothing changed.
        changed: bool,
    },
    ChildNotFound,
    ClassNotFound,
    NotOpenYet {
        opens_at: OffsetDateTime,
    },
    Closed {
        closed_at: OffsetDateTime,
    },
    Ineligible(String),
    Conflict {
        class_id: Uuid,
        title: String,
    },
}

#[derive(sqlx::FromRow)]
struct LockedChild {
    family_id: Uuid,
    first_name: String,
    birth_date: Option<Date>,
    grade: Option<i32>,
}

#[derive(sqlx::FromRow)]
struct SemesterWindow {
    starts_on: Date,
    ends_on: Date,
    registration_opens_at: OffsetDateTime,
    registration_closes_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct OtherClass {
    id: Uuid,
    title: String,
    meetings: String,
}

/// The counters a seat decision reads, under the class's row lock.
#[derive(sqlx::FromRow)]
struct Seats {
    capacity: i32,
    seats_taken: i32,
    waitlist_length: i32,
    waitlist_next: i64,
}

/// What a seat decision writes: the enrollment (a new row, or the child's
/// dropped one again) and, for a seat, the fee.
struct Place<'a> {
    class_id: Uuid,
    enrollment_id: Uuid,
    coop_id: Uuid,
    child_id: Uuid,
    family_id: Uuid,
    /// The child has a (dropped) row in this class: it is reused.
    existing: bool,
    fee_cents: i64,
    currency: &'a str,
    /// The fee's ledger line, when the class has a fee.
    fee: Option<&'a str>,
    now: OffsetDateTime,
}

/// The decision and the class's counters after it.
#[derive(sqlx::FromRow)]
struct Placed {
    seat: bool,
    /// The waitlist ticket, when there was no seat.
    ticket: Option<i64>,
    capacity: i32,
    seats_taken: i32,
    waitlist_length: i32,
}

/// PostgreSQL: the seat decision and every write it makes in one statement,
/// so the class's row lock is held for that statement and the commit (two
/// round trips) instead of four or five. `decided` locks the row (waiting
/// for the transaction before ours, then reading what it committed) and
/// decides; the rest write the counters, the enrollment and the fee from that
/// one decision. The enrollment is written with the counters, so ticket
/// order stays commit order.
const PLACE_PG: &str = "WITH decided AS ( \
       SELECT id, capacity, seats_taken, waitlist_length, waitlist_next, seats_taken < capacity AS seat \
       FROM classes WHERE id = $1 FOR UPDATE \
     ), counted AS ( \
       UPDATE classes c SET \
         seats_taken = d.seats_taken + CASE WHEN d.seat THEN 1 ELSE 0 END, \
         waitlist_length = d.waitlist_length + CASE WHEN d.seat THEN 0 ELSE 1 END, \
         waitlist_next = d.waitlist_next + CASE WHEN d.seat THEN 0 ELSE 1 END, \
         updated_at = $2 \
       FROM decided d WHERE c.id = d.id \
       RETURNING d.seat, CASE WHEN d.seat THEN NULL ELSE d.waitlist_next END AS ticket, \
         c.capacity, c.seats_taken, c.waitlist_length \
     ), placed AS ( \
       {ENROLLMENT_WRITE} \
     ), fee AS ( \
       INSERT INTO ledger (id, coop_id, family_id, enrollment_id, kind, amount_cents, currency, description, created_at) \
       SELECT $7, $4, $6, $3, 'fee', $8, $9, $10, $2 FROM counted WHERE seat AND $10 IS NOT NULL \
     ) \
     SELECT seat, ticket, capacity, seats_taken, waitlist_length FROM counted";

const PLACE_PG_INSERT: &str = "INSERT INTO enrollments (id, coop_id, class_id, child_id, family_id, state, ticket, created_at, updated_at) \
       SELECT $3, $4, $1, $5, $6, CASE WHEN seat THEN 'enrolled' ELSE 'waitlisted' END, ticket, $2, $2 FROM counted";

const PLACE_PG_REUSE: &str = "UPDATE enrollments e SET state = CASE WHEN seat THEN 'enrolled' ELSE 'waitlisted' END, \
       ticket = counted.ticket, updated_at = $2 FROM counted WHERE e.id = $3";

macro_rules! place_in_one_statement {
    ($tx:ident, $place:expr) => {{
        let place: &Place<'_> = $place;
        let write = if place.existing {
            PLACE_PG_REUSE
        } else {
            PLACE_PG_INSERT
        };
        sqlx::query_as::<_, Placed>(&PLACE_PG.replace("{ENROLLMENT_WRITE}", write))
            .bind(place.class_id)
            .bind(place.now)
            .bind(place.enrollment_id)
            .bind(place.coop_id)
            .bind(place.child_id)
            .bind(place.family_id)
            .bind(Uuid::now_v7())
            .bind(place.fee_cents)
            .bind(place.currency)
            .bind(place.fee)
            .fetch_one(&mut *$tx)
            .await
    }};
}

/// SQLite: the same decision as statements one after another. `BEGIN
/// IMMEDIATE` already holds SQLite's one write lock for the whole
/// transaction, in process, so fewer statements here would shorten nothing
/// that another enrollment waits for across a network.
macro_rules! place_step_by_step {
    ($tx:ident, $place:expr, $seats_sql:expr) => {
        async {
            let place: &Place<'_> = $place;
            let seats: Seats = sqlx::query_as($seats_sql)
                .bind(place.class_id)
                .fetch_one(&mut *$tx)
                .await?;
            let seat = seats.seats_taken < seats.capacity;
            let ticket = (!seat).then_some(seats.waitlist_next);
            sqlx::query(
                "UPDATE classes SET seats_taken = $2, waitlist_length = $3, waitlist_next = $4, \
                 updated_at = $5 WHERE id = $1",
            )
            .bind(place.class_id)
            .bind(seats.seats_taken + i32::from(seat))
            .bind(seats.waitlist_length + i32::from(!seat))
            .bind(seats.waitlist_next + i64::from(!seat))
            .bind(place.now)
            .execute(&mut *$tx)
            .await?;
            let state = if seat { EnrollmentState::Enrolled } else { EnrollmentState::Waitlisted };
            if place.existing {
                sqlx::query("UPDATE enrollments SET state = $1, ticket = $2, updated_at = $3 WHERE id = $4")
                    .bind(state.as_str())
                    .bind(ticket)
                    .bind(place.now)
                    .bind(place.enrollment_id)
                    .execute(&mut *$tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO enrollments (id, coop_id, class_id, child_id, family_id, state, ticket, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(place.enrollment_id)
                .bind(place.coop_id)
                .bind(place.class_id)
                .bind(place.child_id)
                .bind(place.family_id)
                .bind(state.as_str())
                .bind(ticket)
                .bind(place.now)
                .execute(&mut *$tx)
                .await?;
            }
            if let (true, Some(description)) = (seat, place.fee) {
                add_ledger!($tx, place.coop_id, place.family_id, Some(place.enrollment_id), "fee",
                    place.fee_cents, place.currency, description, place.now)?;
            }
            Ok::<_, sqlx::Error>(Placed {
                seat,
                ticket,
                capacity: seats.capacity,
                seats_taken: seats.seats_taken + i32::from(seat),
                waitlist_length: seats.waitlist_length + i32::from(!seat),
            })
        }
        .await
    };
}

/// Enrolls a child in a class, or puts it on the waitlist (see the module
/// comment for why this is safe under any concurrency).
///
/// Everything that does not decide a seat (the child's and the class's
/// details, the window, eligibility, conflicts) is read before the class's
/// row is locked, and on PostgreSQL the decision with all it writes is one
/// statement (`PLACE_PG`), so the lock is held for that statement and the
/// commit: on enrollment day every transaction on a popular class waits for it.
pub async fn enroll(db: &Db, req: &Enroll<'_>) -> Result<EnrollOutcome, sqlx::Error> {
    let lock = for_update(db);
    let child_sql = format!(
        "SELECT family_id, first_name, birth_date, grade FROM children WHERE coop_id = $1 AND id = $2{lock}"
    );
    let class_sql = format!("SELECT {CLASS_COLUMNS} FROM classes WHERE coop_id = $1 AND id = $2");
    let seats_sql = format!(
        "SELECT capacity, seats_taken, waitlist_length, waitlist_next FROM classes WHERE id = $1{lock}"
    );
    let existing_sql = format!(
        "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE class_id = $1 AND child_id = $2"
    );
    let decided = with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        // The child's lock serializes this child's enrollments (the conflict check).
        let Some(child) = sqlx::query_as::<_, LockedChild>(&child_sql)
            .bind(req.coop_id)
            .bind(req.child_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(EnrollOutcome::ChildNotFound);
        };
        let Some(mut class) = sqlx::query_as::<_, ClassRow>(&class_sql)
            .bind(req.coop_id)
            .bind(req.class_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(EnrollOutcome::ClassNotFound);
        };
        let existing = sqlx::query_as::<_, EnrollmentRow>(&existing_sql)
            .bind(req.class_id)
            .bind(req.child_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(enrollment) = existing.clone().filter(|e| e.state != EnrollmentState::Dropped) {
            let position = match enrollment.ticket {
                Some(ticket) => Some(waitlist_position!(tx, req.class_id, ticket)?),
                None => None,
            };
            return Ok(EnrollOutcome::Placed { enrollment, position, class: Box::new(class), changed: false });
        }
        let window: SemesterWindow = sqlx::query_as(
            "SELECT starts_on, ends_on, registration_opens_at, registration_closes_at FROM semesters WHERE id = $1",
        )
        .bind(class.semester_id)
        .fetch_one(&mut *tx)
        .await?;
        if req.enforce_window {
            if req.now < window.registration_opens_at {
                return Ok(EnrollOutcome::NotOpenYet { opens_at: window.registration_opens_at });
            }
            if req.now > window.registration_closes_at {
                return Ok(EnrollOutcome::Closed { closed_at: window.registration_closes_at });
            }
        } else if req.now.date() > window.ends_on {
            return Ok(EnrollOutcome::Closed { closed_at: req.now });
        }
        if let Some(reason) = courses::ineligible(
            &class.eligibility(),
            &child.first_name,
            child.birth_date,
            child.grade,
            window.starts_on,
        ) {
            return Ok(EnrollOutcome::Ineligible(reason));
        }
        // The child's other classes that meet in an overlapping stretch of dates.
        let others: Vec<OtherClass> = sqlx::query_as(
            "SELECT c.id, c.title, c.meetings FROM enrollments e \
             JOIN classes c ON c.id = e.class_id JOIN semesters s ON s.id = c.semester_id \
             WHERE e.coop_id = $1 AND e.child_id = $2 AND e.state <> 'dropped' AND c.id <> $3 \
             AND s.starts_on <= $4 AND s.ends_on >= $5",
        )
        .bind(req.coop_id)
        .bind(req.child_id)
        .bind(req.class_id)
        .bind(window.ends_on)
        .bind(window.starts_on)
        .fetch_all(&mut *tx)
        .await?;
        let meetings = class.meetings();
        for other in others {
            let theirs: Vec<Meeting> = serde_json::from_str(&other.meetings).unwrap_or_default();
            if courses::schedules_overlap(&meetings, &theirs) {
                return Ok(EnrollOutcome::Conflict { class_id: other.id, title: other.title });
            }
        }

        // The seat decision, under the class's row lock until the commit.
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |e| e.id);
        let fee = (class.fee_cents > 0)
            .then(|| (req.fee_description)(&class, &child.first_name));
        let place = Place {
            class_id: req.class_id,
            enrollment_id: id,
            coop_id: req.coop_id,
            child_id: req.child_id,
            family_id: child.family_id,
            existing: existing.is_some(),
            fee_cents: class.fee_cents,
            currency: &class.currency,
            fee: fee.as_deref(),
            now: req.now,
        };
        let seats = if matches!(db, Db::Postgres(..)) {
            place_in_one_statement!(tx, &place)?
        } else {
            place_step_by_step!(tx, &place, &seats_sql)?
        };
        tx.commit().await?;
        let state = if seats.seat { EnrollmentState::Enrolled } else { EnrollmentState::Waitlisted };
        let enrollment = EnrollmentRow {
            id,
            coop_id: req.coop_id,
            class_id: req.class_id,
            child_id: req.child_id,
            family_id: child.family_id,
            state,
            ticket: seats.ticket,
            created_at: existing.as_ref().map_or(req.now, |e| e.created_at),
            updated_at: req.now,
        };
        class.capacity = seats.capacity;
        class.seats_taken = seats.seats_taken;
        class.waitlist_length = seats.waitlist_length;
        class.updated_at = req.now;
        (enrollment, class)
    });
    let (enrollment, class) = decided;
    // The place in line, read after the commit (outside the lock): a snapshot,
    // as any answer is once sent.
    let position = match enrollment.ticket {
        Some(ticket) => {
            Some(with_conn!(db, conn => waitlist_position!(conn, req.class_id, ticket)?))
        }
        None => None,
    };
    Ok(EnrollOutcome::Placed {
        enrollment,
        position,
        class: Box::new(class),
        changed: true,
    })
}

/// What a promotion adds besides the seat.
pub struct Promotion<'a> {
    /// The email job telling the family (keyed per promotion).
    pub job: &'a (dyn Fn(Uuid, Uuid) -> NewJob + Sync),
    pub fee_description: &'a (dyn Fn(&ClassRow, &str) -> String + Sync),
}

/// What a drop asks.
pub struct Drop<'a> {
    pub coop_id: Uuid,
    pub class_id: Uuid,
    pub child_id: Uuid,
    pub now: OffsetDateTime,
    pub promotion: Promotion<'a>,
    /// The refund job for money already paid (see `DropOutcome::Dropped`).
    pub refund_job: &'a (dyn Fn(Uuid, Uuid) -> NewJob + Sync),
}

#[derive(Debug)]
pub enum DropOutcome {
    Dropped {
        /// The class after the drop (and any promotions).
        class: Box<ClassRow>,
        dropped: EnrollmentRow,
        promoted: Vec<EnrollmentRow>,
        /// Provider refunds started for money the family had paid.
        refunds: Vec<Uuid>,
    },
    /// Dropped before: nothing to do.
    AlreadyDropped,
    NotEnrolled,
}

#[derive(sqlx::FromRow)]
struct PaidPayment {
    id: Uuid,
    amount_cents: i64,
    refunded_cents: i64,
}

/// Drops a child from a class; a freed seat goes to the first of the waitlist.
/// Before the semester starts, the fee is credited back: as a ledger line
/// while the family still owes it, and through the provider (a refund job)
/// for the part it had already paid.
pub async fn drop(db: &Db, req: &Drop<'_>) -> Result<DropOutcome, sqlx::Error> {
    let lock = for_update(db);
    let class_sql =
        format!("SELECT {CLASS_COLUMNS} FROM classes WHERE coop_id = $1 AND id = $2{lock}");
    let existing_sql = format!(
        "SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE class_id = $1 AND child_id = $2"
    );
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let Some(class) = sqlx::query_as::<_, ClassRow>(&class_sql)
            .bind(req.coop_id)
            .bind(req.class_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(DropOutcome::NotEnrolled);
        };
        let Some(mut enrollment) = sqlx::query_as::<_, EnrollmentRow>(&existing_sql)
            .bind(req.class_id)
            .bind(req.child_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(DropOutcome::NotEnrolled);
        };
        let was = enrollment.state;
        if was == EnrollmentState::Dropped {
            return Ok(DropOutcome::AlreadyDropped);
        }
        sqlx::query("UPDATE enrollments SET state = 'dropped', ticket = NULL, updated_at = $2 WHERE id = $1")
            .bind(enrollment.id)
            .bind(req.now)
            .execute(&mut *tx)
            .await?;
        let mut refunds = Vec::new();
        let mut promoted = Vec::new();
        if was == EnrollmentState::Waitlisted {
            sqlx::query("UPDATE classes SET waitlist_length = waitlist_length - 1, updated_at = $2 WHERE id = $1")
                .bind(req.class_id)
                .bind(req.now)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE classes SET seats_taken = seats_taken - 1, updated_at = $2 WHERE id = $1")
                .bind(req.class_id)
                .bind(req.now)
                .execute(&mut *tx)
                .await?;
            let starts_on: Date = sqlx::query_scalar("SELECT starts_on FROM semesters WHERE id = $1")
                .bind(class.semester_id)
                .fetch_one(&mut *tx)
                .await?;
            // The fee this enrollment charged, if it charged one.
            let fee: Option<i64> = sqlx::query_scalar(
                "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM ledger WHERE enrollment_id = $1",
            )
            .bind(enrollment.id)
            .fetch_one(&mut *tx)
            .await?;
            let fee = fee.unwrap_or(0);
            if req.now.date() < starts_on && fee > 0 {
                let owed = balance_in!(tx, req.coop_id, enrollment.family_id, &class.currency)?;
                add_ledger!(tx, req.coop_id, enrollment.family_id, Some(enrollment.id), "refund", -fee,
                    &class.currency, &format!("Refund: {} (dropped before the semester)", class.title), req.now)?;
                // What the family paid of this fee goes back through the provider.
                let mut to_return = fee - owed.clamp(0, fee);
                if to_return > 0 {
                    let paid: Vec<PaidPayment> = sqlx::query_as(
                        "SELECT p.id, p.amount_cents, COALESCE((SELECT CAST(SUM(r.amount_cents) AS BIGINT) FROM refunds r \
                         WHERE r.payment_id = p.id AND r.state <> 'failed'), 0) AS refunded_cents \
                         FROM payments p WHERE p.coop_id = $1 AND p.family_id = $2 AND p.currency = $3 \
                         AND p.state = 'succeeded' ORDER BY p.created_at DESC, p.id DESC",
                    )
                    .bind(req.coop_id)
                    .bind(enrollment.family_id)
                    .bind(&class.currency)
                    .fetch_all(&mut *tx)
                    .await?;
                    let at_ms = coop_domain::clock::unix_ms(req.now);
                    for payment in paid {
                        let available = payment.amount_cents - payment.refunded_cents;
                        if available <= 0 || to_return == 0 {
                            continue;
                        }
                        let amount = available.min(to_return);
                        to_return -= amount;
                        let refund_id = Uuid::now_v7();
                        sqlx::query(
                            "INSERT INTO refunds (id, coop_id, family_id, payment_id, amount_cents, currency, state, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
                        )
                        .bind(refund_id)
                        .bind(req.coop_id)
                        .bind(enrollment.family_id)
                        .bind(payment.id)
                        .bind(amount)
                        .bind(&class.currency)
                        .bind(at_ms)
                        .execute(&mut *tx)
                        .await?;
                        let job = (req.refund_job)(req.coop_id, refund_id);
                        crate::enqueue_job!(tx, &job)?;
                        refunds.push(refund_id);
                    }
                }
            }
            promoted = promote_waitlist!(tx, req.class_id, req.now, &req.promotion);
        }
        let class: ClassRow = sqlx::query_as(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE id = $1"))
            .bind(req.class_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        enrollment.state = EnrollmentState::Dropped;
        enrollment.ticket = None;
        enrollment.updated_at = req.now;
        Ok(DropOutcome::Dropped { class: Box::new(class), dropped: enrollment, promoted, refunds })
    })
}

pub enum UpdateClass {
    Updated {
        class: Box<ClassRow>,
        promoted: Vec<EnrollmentRow>,
    },
    NotFound,
    VersionMismatch {
        current: i64,
    },
    CapacityBelowSeats {
        seats_taken: i32,
    },
}

/// Replaces a class's fields under its row lock: capacity may not go below
/// the seats taken, and a raise promotes from the waitlist at once.
pub async fn update_class(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    new: &coop_domain::courses::NewClass,
    expected: Option<i64>,
    now: OffsetDateTime,
    promotion: &Promotion<'_>,
) -> Result<UpdateClass, sqlx::Error> {
    let lock = for_update(db);
    let class_sql =
        format!("SELECT {CLASS_COLUMNS} FROM classes WHERE coop_id = $1 AND id = $2{lock}");
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let Some(class) = sqlx::query_as::<_, ClassRow>(&class_sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(UpdateClass::NotFound);
        };
        if expected.is_some_and(|v| v != class.version) {
            return Ok(UpdateClass::VersionMismatch { current: class.version });
        }
        if new.capacity < class.seats_taken {
            return Ok(UpdateClass::CapacityBelowSeats { seats_taken: class.seats_taken });
        }
        sqlx::query(
            "UPDATE classes SET title = $1, description = $2, teacher_user_id = $3, capacity = $4, \
             fee_cents = $5, currency = $6, min_age = $7, max_age = $8, min_grade = $9, max_grade = $10, \
             meetings = $11, version = version + 1, updated_at = $12 WHERE id = $13",
        )
        .bind(new.title.as_str())
        .bind(&new.description)
        .bind(new.teacher_user_id)
        .bind(new.capacity)
        .bind(new.fee.cents)
        .bind(new.fee.currency.as_str())
        .bind(new.eligibility.min_age)
        .bind(new.eligibility.max_age)
        .bind(new.eligibility.min_grade)
        .bind(new.eligibility.max_grade)
        .bind(serde_json::to_string(&new.meetings).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let promoted = promote_waitlist!(tx, id, now, promotion);
        let class: ClassRow = sqlx::query_as(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UpdateClass::Updated { class: Box::new(class), promoted })
    })
}

/// One line of a roster.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct RosterLine {
    pub child_id: Uuid,
    pub first_name: String,
    pub family_id: Uuid,
    pub family_name: String,
    pub family_email: String,
    #[sqlx(try_from = "String")]
    pub state: EnrollmentState,
    pub ticket: Option<i64>,
}

/// The enrolled children (by name), then the waitlist in order.
pub async fn roster(
    db: &Db,
    coop_id: Uuid,
    class_id: Uuid,
) -> Result<Vec<RosterLine>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, RosterLine>(
            "SELECT e.child_id, ch.first_name, e.family_id, f.family_name, f.email AS family_email, e.state, e.ticket \
             FROM enrollments e JOIN children ch ON ch.id = e.child_id JOIN families f ON f.id = e.family_id \
             WHERE e.coop_id = $1 AND e.class_id = $2 AND e.state <> 'dropped' \
             ORDER BY CASE WHEN e.state = 'enrolled' THEN 0 ELSE 1 END, e.ticket, ch.first_name, e.child_id",
        )
        .bind(coop_id)
        .bind(class_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// One of a family's current enrollments (not dropped), with the child's
/// first name. The class's title and meetings and the place in line are not
/// here: they change with other families' writes, so the service takes them
/// from the class's own cache entries (see `coop_services::enrollments`).
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct FamilyEnrollmentRow {
    pub id: Uuid,
    pub class_id: Uuid,
    pub child_id: Uuid,
    pub first_name: String,
    #[sqlx(try_from = "String")]
    pub state: EnrollmentState,
    /// The waitlist ticket (waitlisted only).
    pub ticket: Option<i64>,
    pub updated_at: OffsetDateTime,
}

pub async fn of_family(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<FamilyEnrollmentRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, FamilyEnrollmentRow>(
            "SELECT e.id, e.class_id, e.child_id, ch.first_name, e.state, e.ticket, e.updated_at \
             FROM enrollments e JOIN children ch ON ch.id = e.child_id \
             WHERE e.coop_id = $1 AND e.family_id = $2 AND e.state <> 'dropped' ORDER BY e.id",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// The tickets of a class's waitlist, in order: a ticket's place in line is
/// the number of tickets up to it.
pub async fn waitlist_tickets(
    db: &Db,
    coop_id: Uuid,
    class_id: Uuid,
) -> Result<Vec<i64>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_scalar::<_, i64>(
            "SELECT ticket FROM enrollments WHERE coop_id = $1 AND class_id = $2 \
             AND state = 'waitlisted' AND ticket IS NOT NULL ORDER BY ticket",
        )
        .bind(coop_id)
        .bind(class_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// Whether any child of the family holds a seat or a waitlist place.
pub async fn family_has_active(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrollments WHERE coop_id = $1 AND family_id = $2 AND state <> 'dropped'",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    })
}

/// Whether a child holds a seat or a waitlist place.
pub async fn child_has_active(db: &Db, coop_id: Uuid, child_id: Uuid) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrollments WHERE coop_id = $1 AND child_id = $2 AND state <> 'dropped'",
        )
        .bind(coop_id)
        .bind(child_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    })
}

/// Deletes a child that holds no seat or waitlist place; false when it does
/// (or does not exist).
pub async fn delete_idle_child(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    child_id: Uuid,
) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let done = sqlx::query(
            "DELETE FROM children WHERE coop_id = $1 AND family_id = $2 AND id = $3 AND NOT EXISTS \
             (SELECT 1 FROM enrollments e WHERE e.child_id = $3 AND e.state <> 'dropped')",
        )
        .bind(coop_id)
        .bind(family_id)
        .bind(child_id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// An enrollment by id (for the promotion email job).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentDetail {
    pub coop_id: Uuid,
    pub family_id: Uuid,
    pub first_name: String,
    pub class_title: String,
    pub family_name: String,
    pub family_email: String,
    #[sqlx(try_from = "String")]
    pub state: EnrollmentState,
}

pub async fn detail(db: &Db, id: Uuid) -> Result<Option<EnrollmentDetail>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, EnrollmentDetail>(
            "SELECT e.coop_id, e.family_id, ch.first_name, c.title AS class_title, f.family_name, \
             f.email AS family_email, e.state FROM enrollments e JOIN children ch ON ch.id = e.child_id \
             JOIN classes c ON c.id = e.class_id JOIN families f ON f.id = e.family_id WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    })
}

/// A meeting of a child's class, for calendars.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduledClass {
    pub class_id: Uuid,
    pub title: String,
    pub meetings: String,
    pub child_id: Uuid,
    pub first_name: String,
    pub starts_on: Date,
    pub ends_on: Date,
    pub holidays: String,
}

/// Every class a family's children hold a seat in, with its semester's dates.
pub async fn schedule_of_family(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<ScheduledClass>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, ScheduledClass>(
            "SELECT c.id AS class_id, c.title, c.meetings, e.child_id, ch.first_name, s.starts_on, s.ends_on, s.holidays \
             FROM enrollments e JOIN classes c ON c.id = e.class_id JOIN semesters s ON s.id = c.semester_id \
             JOIN children ch ON ch.id = e.child_id \
             WHERE e.coop_id = $1 AND e.family_id = $2 AND e.state = 'enrolled' ORDER BY s.starts_on, c.id, ch.id",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_all(&mut *conn)
        .await
    })
}
