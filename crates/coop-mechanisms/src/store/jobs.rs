//! The job queue's SQL. Jobs are rows in the application's own database, so a
//! job is enqueued in the transaction of the write that causes it (see
//! `enqueue_job!`) and exists exactly when that write committed.
//!
//! A worker *claims* ready jobs (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
//! concurrent workers never block on or double-claim a row) with a fresh claim
//! id and a lease. Every later change to a running job is fenced by that claim
//! id: a worker whose lease ran out (and whose job someone else now owns) finds
//! its heartbeat, completion or failure affects no row.

use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};

pub use coop_domain::clock::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Ready,
    Running,
    Done,
    Dead,
    /// Ready, but waiting for its co-op's founder to confirm their email
    /// (not a stored state: a ready job whose run time is [`HELD_RUN_AT`]).
    Held,
}

impl JobState {
    pub const ALL: [JobState; 4] = [Self::Ready, Self::Running, Self::Done, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Held => "held",
        }
    }

    /// A state as people name it (`held` too, which is not stored).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Self::Held])
            .find(|s| s.as_str() == raw)
    }
}

impl JobRow {
    /// The state as people see it: a held job is not simply ready.
    pub fn visible_state(&self) -> JobState {
        if self.state == JobState::Ready && self.run_at == HELD_RUN_AT {
            JobState::Held
        } else {
            self.state
        }
    }
}

impl TryFrom<String> for JobState {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| format!("unknown job state {raw:?}"))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub kind: String,
    pub key: String,
    pub payload: String,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: i64,
    pub claim: Option<Uuid>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The W3C trace id of the request that queued the job, if one did: the
    /// worker's span for the job carries it, so its log lines share the id.
    pub trace_id: Option<String>,
}

const COLUMNS: &str = "id, coop_id, kind, key, payload, state, attempts, max_attempts, run_at, \
                       claim, lease_until, last_error, created_at, updated_at, trace_id";

/// A job to insert alongside the write that causes it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub kind: &'static str,
    pub key: String,
    pub payload: String,
    pub max_attempts: i32,
    pub run_at: i64,
    /// Whether the job waits while its co-op's founder has not confirmed
    /// their email (it would email someone else in the co-op's name).
    pub holdable: bool,
}

/// The `run_at` of a held job: a ready job that is never due until
/// `release_held_jobs!` sets its time. (A run time, not a new state, so the
/// claim, retry and lease logic needs no exception for it.)
pub const HELD_RUN_AT: i64 = i64::MAX;

/// A job whose key exists already is the same job: inserting it again is a
/// no-op. A holdable job of a co-op that is not confirmed yet is held.
pub const INSERT_SQL: &str = "INSERT INTO jobs \
     (id, coop_id, kind, key, payload, state, attempts, max_attempts, run_at, created_at, updated_at, \
      trace_id) \
     VALUES ($1, $2, $3, $4, $5, 'ready', 0, $6, \
       CASE WHEN $8 AND EXISTS (SELECT 1 FROM coops WHERE id = $2 AND verified_at IS NULL) \
            THEN 9223372036854775807 ELSE $7 END, \
       $7, $7, $9) ON CONFLICT (key) DO NOTHING";

/// The trace id a job inserted now should carry: the one of the request this
/// task serves (the HTTP edge sets it, see `coop_runtime::trace_context`), so
/// that no caller has to pass it down through the services.
pub fn current_trace_id() -> Option<String> {
    coop_runtime::trace_context::current().filter(|id| coop_runtime::trace_context::is_trace_id(id))
}

/// Inserts `$job` (a `&NewJob`) on `$tx`, an open transaction of either backend,
/// so the job commits or rolls back with the caller's write. A macro because the
/// body must be compiled once per backend, like `with_conn!`.
#[macro_export]
macro_rules! enqueue_job {
    ($tx:expr, $job:expr) => {{
        let job: &$crate::store::jobs::NewJob = $job;
        sqlx::query($crate::store::jobs::INSERT_SQL)
            .bind(job.id)
            .bind(job.coop_id)
            .bind(job.kind)
            .bind(&job.key)
            .bind(&job.payload)
            .bind(job.max_attempts)
            .bind(job.run_at)
            .bind(job.holdable)
            .bind($crate::store::jobs::current_trace_id())
            .execute(&mut *$tx)
            .await
    }};
}

/// Inserts jobs on their own (for tests and tools; writes use `enqueue_job!`).
pub async fn enqueue(db: &Db, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        for job in jobs {
            crate::enqueue_job!(tx, job)?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Claims up to `limit` ready jobs whose time has come, oldest first, for
/// `lease_ms`. Each claimed job's attempt counter goes up by one here, so a job
/// that crashes its worker every time still runs out of attempts.
pub async fn claim(db: &Db, limit: u32, lease_ms: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    let now = now_ms();
    let claim = Uuid::now_v7();
    let pick = match db {
        // SKIP LOCKED: a row another worker is claiming right now is passed over,
        // not waited for.
        Db::Postgres(..) => {
            "SELECT id FROM jobs WHERE state = 'ready' AND run_at <= $3 \
             ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED"
        }
        // SQLite has one writer at a time: the UPDATE below is already exclusive.
        Db::Sqlite(..) => {
            "SELECT id FROM jobs WHERE state = 'ready' AND run_at <= $3 ORDER BY run_at LIMIT $4"
        }
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, claim = $1, \
         lease_until = $2, updated_at = $3 WHERE id IN ({pick}) RETURNING {COLUMNS}"
    );
    with_write_conn!(db, conn => {
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(claim)
            .bind(now + lease_ms)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
    })
}

/// Returns jobs whose lease ran out (their worker died or hung) to the queue,
/// or to `dead` when that was their last attempt. Returns how many.
pub async fn reclaim_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    with_write_conn!(db, conn => {
        let done = sqlx::query(
            "UPDATE jobs SET \
               state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'ready' END, \
               claim = NULL, lease_until = NULL, run_at = $1, updated_at = $1, \
               last_error = 'the worker running it stopped answering (lease expired)' \
             WHERE state = 'running' AND lease_until < $1",
        )
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    })
}

/// Extends a running job's lease. False: the claim is no longer ours.
pub async fn heartbeat(db: &Db, id: Uuid, claim: Uuid, lease_ms: i64) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    fenced(
        db,
        "UPDATE jobs SET lease_until = $3, updated_at = $4, last_error = COALESCE($5, last_error) \
         WHERE id = $1 AND claim = $2 AND state = 'running'",
        id,
        claim,
        now + lease_ms,
        now,
        None,
    )
    .await
}

pub async fn complete(db: &Db, id: Uuid, claim: Uuid) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    fenced(
        db,
        "UPDATE jobs SET state = 'done', claim = NULL, lease_until = NULL, last_error = $5, \
         run_at = $3, updated_at = $4 WHERE id = $1 AND claim = $2 AND state = 'running'",
        id,
        claim,
        now,
        now,
        None,
    )
    .await
}

/// A failed attempt: back to the queue at `retry_at`, or `dead` when `None`.
pub async fn fail(
    db: &Db,
    id: Uuid,
    claim: Uuid,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let (sql, run_at) = match retry_at {
        Some(at) => (
            "UPDATE jobs SET state = 'ready', run_at = $3, claim = NULL, lease_until = NULL, \
             last_error = $5, updated_at = $4 WHERE id = $1 AND claim = $2 AND state = 'running'",
            at,
        ),
        None => (
            "UPDATE jobs SET state = 'dead', run_at = $3, claim = NULL, lease_until = NULL, \
             last_error = $5, updated_at = $4 WHERE id = $1 AND claim = $2 AND state = 'running'",
            now,
        ),
    };
    fenced(db, sql, id, claim, run_at, now, Some(error)).await
}

/// Puts a running job back without counting the attempt: the breaker was open
/// (no call was made) or the worker is shutting down.
pub async fn release(
    db: &Db,
    id: Uuid,
    claim: Uuid,
    run_at: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    fenced(
        db,
        "UPDATE jobs SET state = 'ready', run_at = $3, attempts = attempts - 1, claim = NULL, \
         lease_until = NULL, last_error = $5, updated_at = $4 \
         WHERE id = $1 AND claim = $2 AND state = 'running'",
        id,
        claim,
        run_at,
        now_ms(),
        Some(reason),
    )
    .await
}

/// Runs one of the claim-fenced updates above; true when it still owned the job.
async fn fenced(
    db: &Db,
    sql: &str,
    id: Uuid,
    claim: Uuid,
    value: i64,
    now: i64,
    text: Option<&str>,
) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let done = sqlx::query(sql)
            .bind(id)
            .bind(claim)
            .bind(value)
            .bind(now)
            .bind(text)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// True when the effect named `key` happened already (a previous run did it).
pub async fn effect_done(db: &Db, key: &str) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let found: Option<i64> = sqlx::query_scalar("SELECT done_at FROM job_effects WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.is_some())
    })
}

/// A co-op's jobs, newest first, optionally of one state and kind.
pub async fn list(
    db: &Db,
    coop_id: Uuid,
    state: Option<JobState>,
    kind: Option<&str>,
    limit: u32,
) -> Result<Vec<JobRow>, sqlx::Error> {
    // `held` is a ready job at HELD_RUN_AT, and `ready` one that is not.
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs WHERE coop_id = $1 AND ($2 OR state = $3) \
         AND ($4 OR kind = $5) \
         AND ($7 = '' OR ($7 = 'held') = (run_at = 9223372036854775807)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    );
    let stored = state.map(|s| match s {
        JobState::Held => JobState::Ready,
        other => other,
    });
    let readiness = match state {
        Some(JobState::Held) => "held",
        Some(JobState::Ready) => "ready",
        _ => "",
    };
    with_conn!(db, conn => {
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(coop_id)
            .bind(stored.is_none())
            .bind(stored.map(JobState::as_str).unwrap_or(""))
            .bind(kind.is_none())
            .bind(kind.unwrap_or(""))
            .bind(i64::from(limit))
            .bind(readiness)
            .fetch_all(&mut *conn)
            .await
    })
}

pub async fn get(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

pub enum RetryOutcome {
    /// Boxed: a row is large beside the other outcomes.
    Retried(Box<JobRow>),
    NotDead(JobState),
    NotFound,
}

/// Gives a dead job a fresh set of attempts, to run now.
pub async fn retry_dead(db: &Db, coop_id: Uuid, id: Uuid) -> Result<RetryOutcome, sqlx::Error> {
    let now = now_ms();
    let sql = format!(
        "UPDATE jobs SET state = 'ready', attempts = 0, run_at = $3, updated_at = $3 \
         WHERE coop_id = $1 AND id = $2 AND state = 'dead' RETURNING {COLUMNS}"
    );
    let retried = with_write_conn!(db, conn => {
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?
    });
    Ok(match retried {
        Some(row) => RetryOutcome::Retried(Box::new(row)),
        None => match get(db, coop_id, id).await? {
            Some(row) => RetryOutcome::NotDead(row.state),
            None => RetryOutcome::NotFound,
        },
    })
}

/// Queue depth by (state, kind) for every unfinished state, and the run time
/// of the oldest job that is ready and due.
pub struct QueueStats {
    pub depth: Vec<(String, String, i64)>,
    pub oldest_due_run_at: Option<i64>,
}

pub async fn stats(db: &Db) -> Result<QueueStats, sqlx::Error> {
    let now = now_ms();
    with_conn!(db, conn => {
        // `done` rows pile up until housekeeping purges them, so they are not
        // counted here; each state counted has a partial index of its own.
        let depth: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT CASE WHEN run_at = 9223372036854775807 THEN 'held' ELSE state END, kind, COUNT(*) \
             FROM jobs WHERE state = 'ready' GROUP BY 1, kind \
             UNION ALL \
             SELECT state, kind, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY state, kind \
             UNION ALL \
             SELECT state, kind, COUNT(*) FROM jobs WHERE state = 'dead' GROUP BY state, kind",
        )
        .fetch_all(&mut *conn)
        .await?;
        let oldest_due_run_at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(run_at) FROM jobs WHERE state = 'ready' AND run_at <= $1",
        )
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        Ok(QueueStats { depth, oldest_due_run_at })
    })
}

/// Makes the co-op's held jobs due now: its founder confirmed their email.
/// Runs in the confirming transaction (`$tx`), like `enqueue_job!`.
#[macro_export]
macro_rules! release_held_jobs {
    ($tx:expr, $coop_id:expr, $now:expr) => {{
        sqlx::query(
            "UPDATE jobs SET run_at = $2, updated_at = $2 \
             WHERE coop_id = $1 AND state = 'ready' AND run_at = 9223372036854775807",
        )
        .bind($coop_id)
        .bind($now)
        .execute(&mut *$tx)
        .await
    }};
}

/// Deletes finished jobs and effect records older than `older_than_ms`.
pub async fn purge_finished(db: &Db, older_than_ms: i64) -> Result<u64, sqlx::Error> {
    let cutoff = now_ms() - older_than_ms;
    with_write_conn!(db, conn => {
        let jobs = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1")
            .bind(cutoff)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM job_effects WHERE done_at < $1")
            .bind(cutoff)
            .execute(&mut *conn)
            .await?;
        Ok(jobs.rows_affected())
    })
}

/// Claims one ready job by id (for running it inline), if nobody has.
pub async fn claim_one(db: &Db, id: Uuid, lease_ms: i64) -> Result<Option<JobRow>, sqlx::Error> {
    let now = now_ms();
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, claim = $1, \
         lease_until = $2, updated_at = $3 WHERE id = $4 AND state = 'ready' AND run_at <= $3 \
         RETURNING {COLUMNS}"
    );
    with_write_conn!(db, conn => {
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(Uuid::now_v7())
            .bind(now + lease_ms)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// A connection taken before an irreversible effect, so that recording the
/// effect afterwards is one quick INSERT: the time between the effect and its
/// record is the window in which a worker crash repeats the effect.
///
/// On PostgreSQL the record is committed with `synchronous_commit = off`: the
/// commit returns once the WAL is written, without waiting for the disk flush.
/// A worker crash cannot lose it (the server has it); only a crash of the
/// database server itself in the next fraction of a second could, which would
/// repeat the email, the same harm as the window it shrinks. That flush is
/// most of a commit's time here, so it would otherwise dominate the window.
///
/// Dropped without `record` (the send failed, or the job was cancelled), the
/// connection is closed rather than returned to the pool with that setting.
pub struct EffectRecorder {
    conn: Option<RecorderConn>,
}

enum RecorderConn {
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

const RECORD_EFFECT: &str =
    "INSERT INTO job_effects (key, done_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

impl EffectRecorder {
    pub async fn take(db: &Db) -> Result<Self, sqlx::Error> {
        let conn = match db {
            Db::Postgres(pool, endpoint) => {
                let mut conn = super::acquire(pool, endpoint).await?;
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut *conn)
                    .await?;
                RecorderConn::Postgres(conn)
            }
            // SQLite in WAL mode with synchronous=NORMAL does not flush at commit.
            Db::Sqlite(pool, endpoint) => {
                RecorderConn::Sqlite(super::acquire(pool, endpoint).await?)
            }
        };
        Ok(Self { conn: Some(conn) })
    }

    pub async fn record(mut self, key: &str) -> Result<(), sqlx::Error> {
        match self.conn.as_mut() {
            Some(RecorderConn::Postgres(conn)) => {
                sqlx::query(RECORD_EFFECT)
                    .bind(key)
                    .bind(now_ms())
                    .execute(&mut **conn)
                    .await?;
                sqlx::query("RESET synchronous_commit")
                    .execute(&mut **conn)
                    .await?;
            }
            Some(RecorderConn::Sqlite(conn)) => {
                sqlx::query(RECORD_EFFECT)
                    .bind(key)
                    .bind(now_ms())
                    .execute(&mut **conn)
                    .await?;
            }
            None => {}
        }
        // Restored to the defaults: back to the pool as usual.
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for EffectRecorder {
    fn drop(&mut self) {
        if let Some(RecorderConn::Postgres(conn)) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
