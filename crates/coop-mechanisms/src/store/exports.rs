//! A co-op's exports: the `coop_exports` rows (state and archive) and the
//! reading of every exported table.
//!
//! The archive's bytes are kept in the database, in `coop_exports.archive`:
//! it is the one store that both tiers and every instance and worker share
//! (the embedded tier has no other, the distributed tier no object storage
//! yet), so any instance can serve a download the moment the job that built
//! it commits, and `coop transfer` and `coop backup` carry it like any row.
//! An archive is compressed CSV and JSON, a few megabytes even for a large
//! co-op; it is read only by its download, and the expiry job sets it to
//! NULL, so it never weighs on other queries.
//!
//! What is exported is listed once, in [`TABLES`]: each table's columns with
//! their meaning, from which the archive's files and its README are both
//! made, so the README cannot describe a column the files do not have.

use serde_json::Value;
use uuid::Uuid;

use super::Db;
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};

/// How a column is read, and how it appears in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// A UUID.
    Id,
    Text,
    /// Text holding JSON: a JSON value in the `.json` file, its text in the CSV.
    Json,
    I32,
    I64,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A time, RFC 3339 in UTC.
    Timestamp,
    /// A time kept as Unix milliseconds, shown as RFC 3339 in UTC.
    UnixMs,
}

pub struct ExportColumn {
    pub name: &'static str,
    pub kind: ColumnKind,
    /// What the column means, for the archive's README.
    pub about: &'static str,
}

pub struct ExportTable {
    /// The files' name (`families` → `families.csv`, `families.json`).
    pub file: &'static str,
    pub table: &'static str,
    pub about: &'static str,
    pub columns: &'static [ExportColumn],
    /// The rows of the co-op `$1`, in a stable order.
    pub filter: &'static str,
}

const fn col(name: &'static str, kind: ColumnKind, about: &'static str) -> ExportColumn {
    ExportColumn { name, kind, about }
}

use ColumnKind::*;

/// Every table a co-op's export holds, in the order a reader meets them.
/// Left out on purpose: password hashes, the hashes of invite, reset,
/// confirmation and calendar-feed links (secrets, useless outside Coop),
/// sessions, the job queue and idempotency records (machinery, not data).
pub const TABLES: &[ExportTable] = &[
    ExportTable {
        file: "coop",
        table: "coops",
        about: "The co-op itself (one row).",
        columns: &[
            col("id", Id, "The co-op's id."),
            col("name", Text, "The co-op's name."),
            col("created_at", Timestamp, "When it was founded."),
            col(
                "verified_at",
                UnixMs,
                "When its founder confirmed their email (empty: not yet).",
            ),
        ],
        filter: "id = $1 ORDER BY id",
    },
    ExportTable {
        file: "users",
        table: "users",
        about: "The co-op's accounts: coordinators and families (no passwords or password hashes).",
        columns: &[
            col("id", Id, "The account's id."),
            col("email", Text, "The address it signs in with."),
            col("name", Text, "The person's or family's name."),
            col("role", Text, "`coordinator` or `family`."),
            col(
                "family_id",
                Id,
                "For a family account: its family (families.id).",
            ),
            col("created_at", Timestamp, "When the account was made."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "families",
        table: "families",
        about: "The families enrolled in the co-op.",
        columns: &[
            col("id", Id, "The family's id."),
            col("family_name", Text, "The family's name."),
            col("email", Text, "The family's email."),
            col("enrollment_date", Date, "The day it joined the co-op."),
            col("version", I64, "Counts the changes made to the row."),
            col("created_at", Timestamp, "When it was added."),
            col("updated_at", Timestamp, "When it last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "children",
        table: "children",
        about: "The families' children.",
        columns: &[
            col("id", Id, "The child's id."),
            col("family_id", Id, "Their family (families.id)."),
            col("first_name", Text, "The child's first name."),
            col("birth_date", Date, "Date of birth (empty if not given)."),
            col(
                "grade",
                I32,
                "School grade: -1 pre-K, 0 kindergarten, 1 to 12 (empty if not given).",
            ),
            col("version", I64, "Counts the changes made to the row."),
            col("created_at", Timestamp, "When the child was added."),
            col("updated_at", Timestamp, "When the row last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "semesters",
        table: "semesters",
        about: "Semesters: their dates, registration window and holidays.",
        columns: &[
            col("id", Id, "The semester's id."),
            col("name", Text, "Its name."),
            col("starts_on", Date, "First day."),
            col("ends_on", Date, "Last day."),
            col(
                "registration_opens_at",
                Timestamp,
                "When families may start enrolling.",
            ),
            col(
                "registration_closes_at",
                Timestamp,
                "When family enrollment closes.",
            ),
            col(
                "holidays",
                Json,
                "Days without meetings: a JSON array of YYYY-MM-DD dates.",
            ),
            col("version", I64, "Counts the changes made to the row."),
            col("created_at", Timestamp, "When it was created."),
            col("updated_at", Timestamp, "When it last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "classes",
        table: "classes",
        about: "Classes, with their meetings.",
        columns: &[
            col("id", Id, "The class's id."),
            col("semester_id", Id, "Its semester (semesters.id)."),
            col("title", Text, "Its title."),
            col("description", Text, "Its description."),
            col(
                "teacher_user_id",
                Id,
                "The account that teaches it (users.id; empty: none).",
            ),
            col("capacity", I32, "Seats."),
            col("seats_taken", I32, "Seats held by enrolled children."),
            col("waitlist_length", I32, "Children on the waitlist."),
            col(
                "waitlist_next",
                I64,
                "The next waitlist ticket number (internal counter).",
            ),
            col("fee_cents", I64, "The fee per child, in cents."),
            col("currency", Text, "The fee's currency (ISO 4217)."),
            col("min_age", I32, "Youngest age admitted (empty: no limit)."),
            col("max_age", I32, "Oldest age admitted (empty: no limit)."),
            col("min_grade", I32, "Lowest grade admitted (empty: no limit)."),
            col(
                "max_grade",
                I32,
                "Highest grade admitted (empty: no limit).",
            ),
            col(
                "meetings",
                Json,
                "When it meets: a JSON array of {weekday, starts_at, minutes, room}.",
            ),
            col("version", I64, "Counts the changes made to the row."),
            col("created_at", Timestamp, "When it was created."),
            col("updated_at", Timestamp, "When it last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "enrollments",
        table: "enrollments",
        about: "Children in classes: enrolled, waitlisted or dropped.",
        columns: &[
            col("id", Id, "The enrollment's id."),
            col("class_id", Id, "The class (classes.id)."),
            col("child_id", Id, "The child (children.id)."),
            col("family_id", Id, "The child's family (families.id)."),
            col("state", Text, "`enrolled`, `waitlisted` or `dropped`."),
            col(
                "ticket",
                I64,
                "While waitlisted: the place in line (lower goes first).",
            ),
            col("created_at", Timestamp, "When the child first enrolled."),
            col("updated_at", Timestamp, "When the state last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "ledger",
        table: "ledger",
        about: "What families owe: a fee when a child takes a seat, a credit (negative) when it is refunded.",
        columns: &[
            col("id", Id, "The entry's id."),
            col("family_id", Id, "The family (families.id)."),
            col(
                "enrollment_id",
                Id,
                "The enrollment it is for (enrollments.id).",
            ),
            col("kind", Text, "`fee` or `refund`."),
            col("amount_cents", I64, "Amount in cents (negative: a credit)."),
            col("currency", Text, "Currency (ISO 4217)."),
            col("description", Text, "What it is for."),
            col("created_at", Timestamp, "When it was recorded."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "payments",
        table: "payments",
        about: "Payments charged to families through the payment provider.",
        columns: &[
            col("id", Id, "The payment's id."),
            col("family_id", Id, "The family (families.id)."),
            col("amount_cents", I64, "Amount in cents."),
            col("currency", Text, "Currency (ISO 4217)."),
            col("description", Text, "What it is for."),
            col("state", Text, "`pending`, `succeeded` or `failed`."),
            col(
                "provider_charge_id",
                Text,
                "The payment provider's id for the charge.",
            ),
            col("failure_reason", Text, "Why it failed, when it did."),
            col("created_at", UnixMs, "When it was made."),
            col("updated_at", UnixMs, "When its state last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "refunds",
        table: "refunds",
        about: "Money returned through the payment provider, for a class dropped after paying.",
        columns: &[
            col("id", Id, "The refund's id."),
            col("family_id", Id, "The family (families.id)."),
            col("payment_id", Id, "The payment refunded (payments.id)."),
            col("amount_cents", I64, "Amount in cents."),
            col("currency", Text, "Currency (ISO 4217)."),
            col("state", Text, "`pending`, `succeeded` or `failed`."),
            col(
                "provider_refund_id",
                Text,
                "The payment provider's id for the refund.",
            ),
            col("failure_reason", Text, "Why it failed, when it did."),
            col("created_at", UnixMs, "When it was made."),
            col("updated_at", UnixMs, "When its state last changed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "announcements",
        table: "announcements",
        about: "Announcements coordinators sent to the co-op or to one class.",
        columns: &[
            col("id", Id, "The announcement's id."),
            col(
                "class_id",
                Id,
                "To this class's families only (empty: the whole co-op).",
            ),
            col("subject", Text, "Subject."),
            col("body", Text, "Text."),
            col("author_id", Id, "Who sent it (users.id)."),
            col(
                "recipients",
                I32,
                "How many families it went to (empty: still being sent).",
            ),
            col("created_at", Timestamp, "When it was sent."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "announcement_deliveries",
        table: "announcement_deliveries",
        about: "One row per family an announcement was emailed to.",
        columns: &[
            col(
                "announcement_id",
                Id,
                "The announcement (announcements.id).",
            ),
            col("family_id", Id, "The family (families.id)."),
            col("email", Text, "The address it went to."),
            col("state", Text, "`pending`, `sent` or `failed`."),
            col("updated_at", UnixMs, "When the state last changed."),
        ],
        filter: "coop_id = $1 ORDER BY announcement_id, family_id",
    },
    ExportTable {
        file: "calendar_events",
        table: "calendar_events",
        about: "Entries on families' calendars (enrollment day, orientation, check-in).",
        columns: &[
            col("id", Id, "The entry's id."),
            col("family_id", Id, "The family (families.id)."),
            col("key", Text, "A stable name for the entry."),
            col("summary", Text, "Title."),
            col("description", Text, "Text."),
            col("starts_on", Date, "The day."),
            col("created_at", UnixMs, "When it was added."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
    ExportTable {
        file: "documents",
        table: "documents",
        about: "Documents shared in the co-op: their details only. The files themselves are \
                not in this archive (it would grow without bound); download each from \
                /api/v1/documents/ID/content while the co-op exists.",
        columns: &[
            col("id", Id, "The document's id."),
            col("owner_id", Id, "Who uploaded it (users.id)."),
            col(
                "visibility",
                Text,
                "Who may see it: `coop` (everyone), `class` (class_id's families and teacher) or `family` (family_id's).",
            ),
            col("class_id", Id, "With `class`: the class (classes.id)."),
            col("family_id", Id, "With `family`: the family (families.id)."),
            col("name", Text, "Its name."),
            col("content_type", Text, "Its type, found in its content."),
            col("size_bytes", I64, "Its size in bytes."),
            col("sha256", Text, "Hex SHA-256 of its content."),
            col("created_at", UnixMs, "When it was uploaded."),
            col("updated_at", UnixMs, "When it was last renamed."),
        ],
        filter: "coop_id = $1 ORDER BY id",
    },
];

/// Every table of [`TABLES`] for the co-op, in that order: each row a JSON
/// value per column (strings for ids, text, dates and times; numbers;
/// parsed JSON; null). All are read in one read-only transaction, so the
/// files agree with each other (no enrollment of a child the children file
/// lacks) however busy the co-op is while its export is built.
pub async fn read_all(db: &Db, coop_id: Uuid) -> Result<Vec<Vec<Vec<Value>>>, sqlx::Error> {
    let begin = match db {
        Db::Postgres(..) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        // A read transaction in WAL mode reads one snapshot from its first read.
        Db::Sqlite(..) => "BEGIN",
    };
    with_conn!(db, conn => {
        use sqlx::Row;
        let mut tx = sqlx::Connection::begin_with(&mut *conn, begin).await?;
        let mut tables = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                columns.join(", "),
                table.table,
                table.filter
            );
            let rows = sqlx::query(&sql).bind(coop_id).fetch_all(&mut *tx).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut values = Vec::with_capacity(table.columns.len());
                for (i, column) in table.columns.iter().enumerate() {
                    values.push(match column.kind {
                        Id => json_of(row.try_get::<Option<uuid::Uuid>, _>(i)?.map(|u| u.to_string())),
                        Text => json_of(row.try_get::<Option<String>, _>(i)?),
                        Json => row
                            .try_get::<Option<String>, _>(i)?
                            .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)))
                            .unwrap_or(Value::Null),
                        I32 => json_of(row.try_get::<Option<i32>, _>(i)?),
                        I64 => json_of(row.try_get::<Option<i64>, _>(i)?),
                        Date => json_of(row.try_get::<Option<time::Date>, _>(i)?.map(date_text)),
                        Timestamp => json_of(
                            row.try_get::<Option<time::OffsetDateTime>, _>(i)?.map(time_text),
                        ),
                        UnixMs => json_of(
                            row.try_get::<Option<i64>, _>(i)?
                                .map(|ms| time_text(coop_domain::clock::from_unix_ms(ms))),
                        ),
                    });
                }
                out.push(values);
            }
            tables.push(out);
        }
        tx.commit().await?;
        Ok(tables)
    })
}

fn json_of<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn date_text(date: time::Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    date.format(format).unwrap_or_default()
}

fn time_text(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An export as the API shows it (the archive itself is read on its own).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub requested_by: Uuid,
    /// `queued`, `ready`, `expired` or `failed`.
    pub state: String,
    pub archive_bytes: Option<i64>,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str =
    "id, coop_id, requested_by, state, archive_bytes, created_at, ready_at, expires_at";

/// Records a queued export with the job that builds it, together. Fails
/// with a unique violation (`coop_exports_one_queued`) when the co-op has
/// an export in progress already.
pub async fn create(
    db: &Db,
    id: Uuid,
    coop_id: Uuid,
    requested_by: Uuid,
    build: &NewJob,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        sqlx::query(
            "INSERT INTO coop_exports (id, coop_id, requested_by, state, created_at) \
             VALUES ($1, $2, $3, 'queued', $4)",
        )
        .bind(id)
        .bind(coop_id)
        .bind(requested_by)
        .bind(coop_domain::clock::now_ms())
        .execute(&mut *tx)
        .await?;
        crate::enqueue_job!(tx, build)?;
        tx.commit().await?;
    });
    Ok(())
}

pub async fn get(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<ExportRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM coop_exports WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, ExportRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// The co-op's exports, newest first (the last 50).
pub async fn list(db: &Db, coop_id: Uuid) -> Result<Vec<ExportRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM coop_exports WHERE coop_id = $1 ORDER BY created_at DESC, id DESC LIMIT 50"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, ExportRow>(&sql)
            .bind(coop_id)
            .fetch_all(&mut *conn)
            .await
    })
}

/// The archive's bytes (`None` until built and after it expired).
pub async fn archive(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    with_conn!(db, conn => {
        let found: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT archive FROM coop_exports WHERE coop_id = $1 AND id = $2",
        )
        .bind(coop_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(found.flatten())
    })
}

/// Stores the built archive and queues what follows (the email, the
/// expiry), together; false when the export is no longer queued (a rerun
/// of a job that finished already).
pub async fn finish(
    db: &Db,
    id: Uuid,
    archive: &[u8],
    ready_at: i64,
    expires_at: i64,
    then: &[NewJob],
) -> Result<bool, sqlx::Error> {
    let now = ready_at;
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let done = sqlx::query(
            "UPDATE coop_exports SET state = 'ready', archive = $2, archive_bytes = $3, \
             ready_at = $4, expires_at = $5 WHERE id = $1 AND state = 'queued'",
        )
        .bind(id)
        .bind(archive)
        .bind(archive.len() as i64)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for job in then {
            crate::enqueue_job!(tx, job)?;
        }
        tx.commit().await?;
        Ok(true)
    })
}

/// The build gave up: the export is `failed`, and the co-op may ask again.
pub async fn fail(db: &Db, id: Uuid) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query("UPDATE coop_exports SET state = 'failed' WHERE id = $1 AND state = 'queued'")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Drops an expired export's bytes (the row stays, `expired`).
pub async fn expire(db: &Db, id: Uuid) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "UPDATE coop_exports SET state = 'expired', archive = NULL WHERE id = $1 AND state = 'ready'",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// What the "your export is ready" email needs.
#[derive(Debug, sqlx::FromRow)]
pub struct ReadyNotice {
    pub email: String,
    pub name: String,
    pub coop_name: String,
    pub expires_at: Option<i64>,
    pub state: String,
}

pub async fn ready_notice(db: &Db, id: Uuid) -> Result<Option<ReadyNotice>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, ReadyNotice>(
            "SELECT u.email, u.name, c.name AS coop_name, e.expires_at, e.state \
             FROM coop_exports e JOIN users u ON u.id = e.requested_by JOIN coops c ON c.id = e.coop_id \
             WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    })
}
