//! Families, always scoped by the caller's co-op.

use sqlx::Row;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::Db;
use super::idempotency::{self, Claim};
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now;
use coop_domain::{Email, Name};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct FamilyRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub family_name: String,
    pub email: String,
    pub enrollment_date: Date,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str =
    "id, coop_id, family_name, email, enrollment_date, version, created_at, updated_at";

const INSERT_SQL: &str = "INSERT INTO families \
     (id, coop_id, family_name, email, enrollment_date, version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The family insert as a data-modifying CTE, followed by its jobs (one row
/// per array element; they share max_attempts and run_at). A holdable job of
/// a co-op whose founder has not confirmed their email is held, as
/// `jobs::INSERT_SQL` does.
const INSERT_WITH_JOBS_PG: &str = "WITH family AS (INSERT INTO families \
     (id, coop_id, family_name, email, enrollment_date, version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING coop_id) \
     INSERT INTO jobs (id, coop_id, kind, key, payload, state, attempts, max_attempts, run_at, created_at, updated_at, trace_id) \
     SELECT j.id, family.coop_id, j.kind, j.key, j.payload, 'ready', 0, $9, \
     CASE WHEN j.holdable AND EXISTS (SELECT 1 FROM coops c WHERE c.id = family.coop_id AND c.verified_at IS NULL) \
          THEN 9223372036854775807 ELSE $10 END, $10, $10, $16 \
     FROM family, UNNEST($11::uuid[], $12::text[], $13::text[], $14::text[], $15::bool[]) \
       AS j(id, kind, key, payload, holdable) \
     ON CONFLICT (key) DO NOTHING";

/// `INSERT_WITH_JOBS_PG` for a request with an Idempotency-Key: the family is
/// inserted only if the request still holds its key, which records the family's
/// id (`store::idempotency::RECORD_SQL`) in the same statement. Still one round
/// trip; answers how many families it inserted (0: the key was lost).
const INSERT_WITH_JOBS_CLAIMED_PG: &str = "WITH claim AS (UPDATE idempotency SET resource = $15 \
     WHERE scope = $16 AND key = $17 AND owner = $18 AND status IS NULL AND resource IS NULL \
     RETURNING 1), \
     family AS (INSERT INTO families \
     (id, coop_id, family_name, email, enrollment_date, version, created_at, updated_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM claim RETURNING coop_id), \
     jobs AS (INSERT INTO jobs (id, coop_id, kind, key, payload, state, attempts, max_attempts, run_at, created_at, updated_at, trace_id) \
     SELECT j.id, family.coop_id, j.kind, j.key, j.payload, 'ready', 0, $9, \
     CASE WHEN j.holdable AND EXISTS (SELECT 1 FROM coops c WHERE c.id = family.coop_id AND c.verified_at IS NULL) \
          THEN 9223372036854775807 ELSE $10 END, $10, $10, $20 \
     FROM family, UNNEST($11::uuid[], $12::text[], $13::text[], $14::text[], $19::bool[]) \
       AS j(id, kind, key, payload, holdable) \
     ON CONFLICT (key) DO NOTHING) \
     SELECT count(*) FROM family";

fn bind_family<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q FamilyRow,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Date: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    OffsetDateTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(row.id)
        .bind(row.coop_id)
        .bind(row.family_name.clone())
        .bind(row.email.clone())
        .bind(row.enrollment_date)
        .bind(row.version)
        .bind(row.created_at)
        .bind(row.updated_at)
}

pub struct FamilyFields<'a> {
    pub family_name: &'a Name,
    pub email: &'a Email,
    pub enrollment_date: Date,
}

pub enum UpdateOutcome {
    /// `needs_invite`: the email changed, its unused invites are revoked,
    /// and the family has no account yet: a new invite should go to the new
    /// address.
    Updated {
        row: FamilyRow,
        needs_invite: bool,
    },
    NotFound,
    VersionMismatch {
        current: i64,
    },
}

/// Inserts the family and, in the same transaction, the jobs its enrollment
/// causes (`jobs_for` sees the new row): both commit, or neither. Under an
/// Idempotency-Key `claim` they commit only if the claim still holds the key,
/// together with the record of the family's id on it; `None` when it did not
/// (nothing was written).
pub async fn insert(
    db: &Db,
    coop_id: Uuid,
    fields: &FamilyFields<'_>,
    jobs_for: impl FnOnce(&FamilyRow) -> Vec<NewJob>,
    claim: Option<&Claim>,
) -> Result<Option<(FamilyRow, Vec<NewJob>)>, sqlx::Error> {
    let at = now();
    let row = FamilyRow {
        id: Uuid::now_v7(),
        coop_id,
        family_name: fields.family_name.as_str().to_owned(),
        email: fields.email.as_str().to_owned(),
        enrollment_date: fields.enrollment_date,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let jobs = jobs_for(&row);
    match db {
        Db::Postgres(pool, endpoint) => {
            let mut conn = super::acquire(pool, endpoint).await?;
            // One statement, so one round trip and one commit: the family and
            // its jobs still commit together (a statement is atomic), and a
            // duplicate email fails both.
            let sql = match claim {
                Some(_) => INSERT_WITH_JOBS_CLAIMED_PG,
                None => INSERT_WITH_JOBS_PG,
            };
            let query = bind_family(sqlx::query(sql), &row)
                .bind(jobs.first().map_or(0, |j| j.max_attempts))
                .bind(jobs.first().map_or(0, |j| j.run_at))
                .bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
                .bind(jobs.iter().map(|j| j.kind).collect::<Vec<_>>())
                .bind(jobs.iter().map(|j| j.key.as_str()).collect::<Vec<_>>())
                .bind(jobs.iter().map(|j| j.payload.as_str()).collect::<Vec<_>>());
            let holdable: Vec<bool> = jobs.iter().map(|j| j.holdable).collect();
            match claim {
                None => {
                    query
                        .bind(holdable)
                        .bind(super::jobs::current_trace_id())
                        .execute(&mut *conn)
                        .await?;
                }
                Some(claim) => {
                    let inserted: i64 = query
                        .bind(idempotency::resource(&[row.id]))
                        .bind(&claim.scope)
                        .bind(&claim.key)
                        .bind(claim.owner)
                        .bind(holdable)
                        .bind(super::jobs::current_trace_id())
                        .fetch_one(&mut *conn)
                        .await?
                        .try_get(0)?;
                    if inserted == 0 {
                        return Ok(None);
                    }
                }
            }
        }
        Db::Sqlite(pool, endpoint) => {
            let _write_turn = super::write_turn(db).await;
            let mut conn = super::acquire(pool, endpoint).await?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            if let Some(claim) = claim
                && !crate::record_idempotent_work!(tx, claim, &idempotency::resource(&[row.id]))?
            {
                return Ok(None);
            }
            bind_family(sqlx::query(INSERT_SQL), &row)
                .execute(&mut *tx)
                .await?;
            for job in &jobs {
                crate::enqueue_job!(tx, job)?;
            }
            tx.commit().await?;
        }
    }
    Ok(Some((row, jobs)))
}

pub async fn get(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<FamilyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM families WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, FamilyRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// How many families the co-op has.
pub async fn count(db: &Db, coop_id: Uuid) -> Result<i64, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM families WHERE coop_id = $1")
            .bind(coop_id)
            .fetch_one(&mut *conn)
            .await
    })
}

/// Families whose name or email contains `text` (case-insensitive), in id
/// order after `after`: the coordinators' search.
pub async fn search(
    db: &Db,
    coop_id: Uuid,
    text: &str,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<FamilyRow>, sqlx::Error> {
    let pattern = format!(
        "%{}%",
        text.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let sql = format!(
        "SELECT {COLUMNS} FROM families WHERE coop_id = $1 AND ($2 OR id > $3) \
         AND (LOWER(family_name) LIKE $4 ESCAPE '\\' OR LOWER(email) LIKE $4 ESCAPE '\\') \
         ORDER BY id LIMIT $5"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, FamilyRow>(&sql)
            .bind(coop_id)
            .bind(after.is_none())
            .bind(after.unwrap_or_default())
            .bind(&pattern)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
    })
}

/// One page in id order (UUIDv7: creation order), starting after `after`.
pub async fn list(
    db: &Db,
    coop_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<FamilyRow>, sqlx::Error> {
    let sql = match after {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM families WHERE coop_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ),
        None => format!("SELECT {COLUMNS} FROM families WHERE coop_id = $1 ORDER BY id LIMIT $2"),
    };
    with_conn!(db, conn => {
        let mut query = sqlx::query_as::<_, FamilyRow>(&sql).bind(coop_id);
        if let Some(after) = after {
            query = query.bind(after);
        }
        query.bind(i64::from(limit)).fetch_all(&mut *conn).await
    })
}

/// Replaces the family's fields if it exists in this co-op and, when
/// `expected_version` is given, is still at that version (optimistic locking: the
/// compare and the write are one statement, so two writers cannot both win).
pub async fn update(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    fields: &FamilyFields<'_>,
    expected_version: Option<i64>,
) -> Result<UpdateOutcome, sqlx::Error> {
    let sql = format!(
        "UPDATE families SET family_name = $1, email = $2, enrollment_date = $3, \
         version = version + 1, updated_at = $4 \
         WHERE coop_id = $5 AND id = $6 AND ($7 OR version = $8) RETURNING {COLUMNS}"
    );
    let updated = with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT email FROM families WHERE coop_id = $1 AND id = $2")
                .bind(coop_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let row = sqlx::query_as::<_, FamilyRow>(&sql)
            .bind(fields.family_name.as_str())
            .bind(fields.email.as_str())
            .bind(fields.enrollment_date)
            .bind(now())
            .bind(coop_id)
            .bind(id)
            .bind(expected_version.is_none())
            .bind(expected_version.unwrap_or_default())
            .fetch_optional(&mut *tx)
            .await?;
        let mut needs_invite = false;
        if let Some(row) = &row
            && before.as_deref() != Some(row.email.as_str())
        {
            // The invites went to the old address, perhaps a mistyped one:
            // whoever reads it must not get the account. Revoked with the
            // change, in the same transaction.
            sqlx::query("DELETE FROM invites WHERE family_id = $1 AND used_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let has_account: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM users WHERE family_id = $1 AND role = 'family'")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            needs_invite = has_account.is_none();
        }
        tx.commit().await?;
        row.map(|row| (row, needs_invite))
    });
    match updated {
        Some((row, needs_invite)) => Ok(UpdateOutcome::Updated { row, needs_invite }),
        None => Ok(match get(db, coop_id, id).await? {
            Some(current) => UpdateOutcome::VersionMismatch {
                current: current.version,
            },
            None => UpdateOutcome::NotFound,
        }),
    }
}

pub enum DeleteOutcome {
    /// Gone, with these sessions (token hashes) of its account.
    Deleted {
        ended_sessions: Vec<String>,
    },
    NotFound,
    VersionMismatch {
        current: i64,
    },
    /// A child of the family holds a seat or a waitlist place: drop those first
    /// (a drop frees the seat for the waitlist; a deletion would not).
    HasEnrollments,
}

/// Removes the family with its account, the account's sessions and its
/// unused invites, in one transaction: nobody stays signed in to a family
/// that is gone, and its email can be enrolled again.
pub async fn delete(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<DeleteOutcome, sqlx::Error> {
    const SQL: &str = "DELETE FROM families WHERE coop_id = $1 AND id = $2 AND ($3 OR version = $4) \
         AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.family_id = $2 AND e.state <> 'dropped')";
    let deleted = with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let deleted = sqlx::query(SQL)
            .bind(coop_id)
            .bind(id)
            .bind(expected_version.is_none())
            .bind(expected_version.unwrap_or_default())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let mut ended = Vec::new();
        if deleted > 0 {
            ended = sqlx::query_scalar::<_, String>(
                "DELETE FROM sessions WHERE user_id IN \
                 (SELECT id FROM users WHERE coop_id = $1 AND family_id = $2) RETURNING token_hash",
            )
            .bind(coop_id)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM users WHERE coop_id = $1 AND family_id = $2")
                .bind(coop_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM invites WHERE family_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        (deleted > 0).then_some(ended)
    });
    if let Some(ended_sessions) = deleted {
        return Ok(DeleteOutcome::Deleted { ended_sessions });
    }
    Ok(match get(db, coop_id, id).await? {
        Some(current) if expected_version.is_none_or(|v| v == current.version) => {
            DeleteOutcome::HasEnrollments
        }
        Some(current) => DeleteOutcome::VersionMismatch {
            current: current.version,
        },
        None => DeleteOutcome::NotFound,
    })
}
