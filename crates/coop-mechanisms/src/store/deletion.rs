//! A co-op's deletion: the schedule (`coop_deletions`) and the batches that
//! remove every row of the co-op once its grace period is over.
//!
//! Each batch is one short transaction: it deletes at most `limit` rows of
//! the first table that still has rows of the co-op and queues the next
//! batch's job in the same commit, so a co-op of any size never holds a long
//! transaction or a lock for long, and a worker that dies mid-way leaves a
//! job that simply goes on from where the committed batches got to. The
//! order matters: accounts first (with their sessions and idempotency
//! records), so nobody can sign in once the deletion has begun, then each
//! table before the tables its foreign keys name; the co-op's own row last,
//! which takes this schedule and the co-op's remaining jobs with it.

use uuid::Uuid;

use super::Db;
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeletionRow {
    pub coop_id: Uuid,
    pub requested_by: Uuid,
    pub requested_at: i64,
    pub deletes_at: i64,
    /// Set once the first batch ran: no longer cancellable.
    pub started_at: Option<i64>,
}

pub async fn get(db: &Db, coop_id: Uuid) -> Result<Option<DeletionRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, DeletionRow>(
            "SELECT coop_id, requested_by, requested_at, deletes_at, started_at \
             FROM coop_deletions WHERE coop_id = $1",
        )
        .bind(coop_id)
        .fetch_optional(&mut *conn)
        .await
    })
}

/// Schedules the deletion (asked for at `requested_at`, which names this
/// schedule in its jobs) with its jobs (the deletion itself at
/// `deletes_at`, the notices now), together. `None` when one is scheduled
/// already (that one stands).
pub async fn schedule(
    db: &Db,
    coop_id: Uuid,
    requested_by: Uuid,
    requested_at: i64,
    deletes_at: i64,
    jobs: &[NewJob],
) -> Result<Option<DeletionRow>, sqlx::Error> {
    let now = requested_at;
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let inserted = sqlx::query(
            "INSERT INTO coop_deletions (coop_id, requested_by, requested_at, deletes_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (coop_id) DO NOTHING",
        )
        .bind(coop_id)
        .bind(requested_by)
        .bind(now)
        .bind(deletes_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        for job in jobs {
            crate::enqueue_job!(tx, job)?;
        }
        tx.commit().await?;
        Ok(Some(DeletionRow {
            coop_id,
            requested_by,
            requested_at: now,
            deletes_at,
            started_at: None,
        }))
    })
}

pub enum CancelOutcome {
    Cancelled,
    NotScheduled,
    /// The deletion has begun: too late.
    Started,
}

/// Cancels a deletion that has not begun. Its job stays queued and finds
/// nothing to do (see [`begin`]).
pub async fn cancel(db: &Db, coop_id: Uuid) -> Result<CancelOutcome, sqlx::Error> {
    let removed = with_write_conn!(db, conn => {
        sqlx::query("DELETE FROM coop_deletions WHERE coop_id = $1 AND started_at IS NULL")
            .bind(coop_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    if removed > 0 {
        return Ok(CancelOutcome::Cancelled);
    }
    Ok(match get(db, coop_id).await? {
        Some(_) => CancelOutcome::Started,
        None => CancelOutcome::NotScheduled,
    })
}

/// Marks the deletion begun if it is due and was scheduled at
/// `requested_at` (the job's own schedule, not one cancelled and asked for
/// again since). False: nothing to do.
pub async fn begin(db: &Db, coop_id: Uuid, requested_at: i64) -> Result<bool, sqlx::Error> {
    let now = coop_domain::clock::now_ms();
    with_write_conn!(db, conn => {
        let done = sqlx::query(
            "UPDATE coop_deletions SET started_at = COALESCE(started_at, $3) \
             WHERE coop_id = $1 AND requested_at = $2 AND deletes_at <= $3",
        )
        .bind(coop_id)
        .bind(requested_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// What one batch removed, for the caches.
#[derive(Debug, Default)]
pub struct Removed {
    /// The table it took rows from; `None` once the co-op's row itself is gone.
    pub table: Option<&'static str>,
    pub rows: u64,
    /// Token hashes of the sessions ended.
    pub sessions: Vec<String>,
    /// Ids of the rows removed, for tables whose rows are cached.
    pub ids: Vec<Uuid>,
}

/// The tables removed by plain batches, in order (accounts go first, by
/// [`delete_users`]; jobs and the co-op's row last). Each entry: the table
/// and the column that names a row; rows are cached for those with `id`.
const TABLES: &[(&str, &str)] = &[
    ("invites", "token_hash"),
    ("signup_verifications", "token_hash"),
    ("coop_exports", "id"),
    // Empty by now: the deletion job removes documents, objects first, before
    // each batch (see `jobs::effects`); listed so no row can outlive the co-op.
    ("documents", "id"),
    ("announcement_deliveries", "(announcement_id, family_id)"),
    ("announcements", "id"),
    ("calendar_feeds", "family_id"),
    ("calendar_events", "id"),
    ("ledger", "id"),
    ("refunds", "id"),
    ("payments", "id"),
    ("enrollments", "id"),
    ("children", "id"),
    ("classes", "id"),
    ("semesters", "id"),
    ("families", "id"),
];

/// One batch of the deletion of `coop_id` (at most `limit` rows), with
/// `next` queued in the same commit when rows remain. The removal of the
/// queue's rows passes over the deletion's own jobs (`next.kind`): each
/// batch would otherwise find its predecessor to remove, and never end;
/// they go with the co-op's row.
pub async fn delete_batch(
    db: &Db,
    coop_id: Uuid,
    limit: u32,
    next: &NewJob,
) -> Result<Removed, sqlx::Error> {
    let limit = i64::from(limit.max(1));
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let mut removed = Removed::default();
        // Accounts: with each, its sessions and its idempotency records (the
        // answers replayed to it hold the co-op's data); password resets,
        // email changes and sign-up links go with it (ON DELETE CASCADE).
        let users: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE coop_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(coop_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            for user in &users {
                let ended: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash",
                )
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
                removed.sessions.extend(ended);
                sqlx::query("DELETE FROM idempotency WHERE scope = $1")
                    .bind(format!("user:{user}"))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
            removed.table = Some("users");
            removed.rows = users.len() as u64;
        }
        if removed.table.is_none() {
            for (table, key) in TABLES {
                let returning = if *key == "id" { " RETURNING id" } else { "" };
                // A composite key is a row value on the left, a column list inside.
                let columns = key.trim_start_matches('(').trim_end_matches(')');
                let sql = format!(
                    "DELETE FROM {table} WHERE {key} IN \
                     (SELECT {columns} FROM {table} WHERE coop_id = $1 LIMIT $2){returning}"
                );
                let rows = if returning.is_empty() {
                    sqlx::query(&sql)
                        .bind(coop_id)
                        .bind(limit)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                } else {
                    let ids: Vec<Uuid> = sqlx::query_scalar(&sql)
                        .bind(coop_id)
                        .bind(limit)
                        .fetch_all(&mut *tx)
                        .await?;
                    let n = ids.len() as u64;
                    removed.ids = ids;
                    n
                };
                if rows > 0 {
                    removed.table = Some(table);
                    removed.rows = rows;
                    break;
                }
            }
        }
        if removed.table.is_none() {
            // The queue: each job with the records of the effects it had
            // (an email's record is keyed by the job's key, or by the key
            // and a recipient: `key.user`).
            let jobs: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT id, key FROM jobs WHERE coop_id = $1 AND kind <> $2 ORDER BY id LIMIT $3",
            )
            .bind(coop_id)
            .bind(next.kind)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            for (id, key) in &jobs {
                sqlx::query(
                    "DELETE FROM job_effects WHERE key = $1 \
                     OR substr(key, 1, length($1) + 1) = $1 || '.'",
                )
                .bind(key)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if !jobs.is_empty() {
                removed.table = Some("jobs");
                removed.rows = jobs.len() as u64;
            }
        }
        match removed.table {
            Some(_) => {
                crate::enqueue_job!(tx, next)?;
            }
            None => {
                // Nothing of the co-op is left but its row, this schedule and
                // this job (with its effect records): they go together.
                sqlx::query(
                    "DELETE FROM job_effects WHERE key IN (SELECT key FROM jobs WHERE coop_id = $1)",
                )
                .bind(coop_id)
                .execute(&mut *tx)
                .await?;
                removed.rows = sqlx::query("DELETE FROM coops WHERE id = $1")
                    .bind(coop_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(removed)
    })
}
