//! Database access. One `Db` value hides which backend the configuration chose:
//! SQLite for the embedded tier, PostgreSQL for the distributed one. Queries are
//! written once where the SQL is portable (SQLite accepts `$1` placeholders and
//! `RETURNING`) and expanded for both pool types by `with_conn!`; the sqlx `Any`
//! driver is not used because it cannot carry UUIDs, dates or timestamps.

pub mod accounts;
pub mod announcements;
pub mod calendar;
pub mod coops;
pub mod courses;
pub mod deletion;
pub mod documents;
pub mod enrollments;
mod error;
pub mod exports;
pub mod families;
pub mod idempotency;
pub mod invites;
pub mod jobs;
pub mod ledger;
pub mod operators;
pub mod payments;
pub mod replicas;
pub mod sessions;
mod settings;

pub use error::{OnUnique, StoreError};
pub use settings::{DatabaseSettings, DatabaseUrl};

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, PgPool, Pool, SqlitePool};

use coop_runtime::values::redact_url;

/// A pool of connections to one database server, and which server it is.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool, Arc<Endpoint>),
    Sqlite(SqlitePool, Arc<Endpoint>),
}

/// `BEGIN` for a write transaction. On SQLite it takes the write lock at once
/// (`IMMEDIATE`): a deferred transaction that reads and then writes cannot
/// upgrade its lock once another connection has committed since its read
/// (`SQLITE_BUSY_SNAPSHOT`, 517, which no busy timeout waits out), and the
/// request failed. There is one writer at a time on SQLite anyway, so taking
/// the lock first costs nothing; PostgreSQL locks rows as it goes.
pub(crate) fn begin_write(db: &Db) -> &'static str {
    match db {
        Db::Postgres(..) => "BEGIN",
        Db::Sqlite(..) => "BEGIN IMMEDIATE",
    }
}

/// A database server as the health monitor sees it, and the turn its writers
/// take (SQLite, see [`write_turn`]).
#[derive(Debug)]
pub struct Endpoint {
    /// `primary`, or a replica's host:port: the `endpoint` label of pool metrics.
    pub name: String,
    up: AtomicBool,
    writers: tokio::sync::Mutex<()>,
    /// Requests waiting for the writers' turn, and a wake-up for background
    /// work that lets them go first.
    requests_waiting: AtomicUsize,
    requests_served: tokio::sync::Notify,
    turns: AtomicU8,
}

/// How SQLite's writers take turns. Only the default is a setting; the others
/// are the benchmark variants that measure what it gives (`COOP_SQLITE_WRITERS`
/// in the test knobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteTurns {
    /// One writer at a time in arrival order, requests before background work.
    #[default]
    RequestsFirst = 0,
    /// One writer at a time in arrival order, background work included.
    Fifo = 1,
    /// No turns: every writer polls SQLite's lock with its busy handler.
    BusyHandler = 2,
}

impl Endpoint {
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            up: AtomicBool::new(true),
            writers: tokio::sync::Mutex::new(()),
            requests_waiting: AtomicUsize::new(0),
            requests_served: tokio::sync::Notify::new(),
            turns: AtomicU8::new(WriteTurns::default() as u8),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// The embedded tier's one writer at a time, in arrival order. SQLite lets one
/// connection write at once; the others, left to themselves, poll the lock
/// with SQLite's busy handler, which sleeps 1, 2, 5, … up to 100 ms between
/// tries and lets a newcomer overtake a writer that has waited long: under a
/// burst of writes that made the slowest requests wait hundreds of
/// milliseconds. A FIFO async lock taken *before* a connection is borrowed
/// hands the write lock over without sleeping, in order, and leaves the pool's
/// other connections to readers. PostgreSQL locks rows itself: `None` there.
///
/// Background work (code run inside [`in_background`]: the in-process job
/// worker) lets waiting requests go first, for at most [`BACKGROUND_YIELD`]
/// per write, so a burst of requests is not queued behind the jobs it made and
/// the jobs still make progress under a steady load.
///
/// Held by [`with_write_conn!`] for the whole write; a holder must not write
/// through a second connection of the same database (it would wait for itself).
pub async fn write_turn(db: &Db) -> Option<tokio::sync::MutexGuard<'_, ()>> {
    let Db::Sqlite(_, endpoint) = db else {
        return None;
    };
    let turns = endpoint.turns.load(Ordering::Relaxed);
    if turns == WriteTurns::BusyHandler as u8 {
        return None;
    }
    let started = Instant::now();
    let background = BACKGROUND.try_with(|_| ()).is_ok();
    let turn = if background {
        if turns == WriteTurns::RequestsFirst as u8 {
            endpoint.let_requests_go_first().await;
        }
        endpoint.writers.lock().await
    } else {
        let _waiting = RequestWaiting::new(endpoint);
        endpoint.writers.lock().await
    };
    metrics::histogram!("db_write_turn_wait_seconds", "by" => if background { "background" } else { "request" })
        .record(started.elapsed().as_secs_f64());
    Some(turn)
}

/// How long one background write waits for requests to finish writing before
/// it queues with them (so jobs are never starved).
pub const BACKGROUND_YIELD: Duration = Duration::from_millis(50);

tokio::task_local! {
    static BACKGROUND: ();
}

/// Runs `work` as background work: its SQLite writes let requests go first
/// (see [`write_turn`]).
pub async fn in_background<F: Future>(work: F) -> F::Output {
    BACKGROUND.scope((), work).await
}

impl Endpoint {
    async fn let_requests_go_first(&self) {
        let deadline = tokio::time::Instant::now() + BACKGROUND_YIELD;
        loop {
            // Registered before the check: a wake-up between the two is kept.
            let served = self.requests_served.notified();
            if self.requests_waiting.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, served).await.is_err() {
                return;
            }
        }
    }
}

/// Counts a request waiting for the writers' turn while it lives (also when
/// the request is cancelled while waiting).
struct RequestWaiting<'a>(&'a Endpoint);

impl<'a> RequestWaiting<'a> {
    fn new(endpoint: &'a Endpoint) -> Self {
        endpoint.requests_waiting.fetch_add(1, Ordering::SeqCst);
        Self(endpoint)
    }
}

impl Drop for RequestWaiting<'_> {
    fn drop(&mut self) {
        if self.0.requests_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.requests_served.notify_waiters();
        }
    }
}

/// `with_conn!` for a body that writes: on SQLite it first waits for the
/// writers' turn ([`write_turn`]), then borrows a connection.
#[macro_export]
macro_rules! with_write_conn {
    ($db:expr, $conn:ident => $body:expr) => {{
        let _write_turn = $crate::store::write_turn($db).await;
        $crate::with_conn!($db, $conn => $body)
    }};
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend
/// `$db` is. The body is compiled once per backend, so it may use any query whose
/// parameter and column types both drivers support.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Postgres(pool, endpoint) => {
                #[allow(unused_mut)]
                let mut $conn = $crate::store::acquire(pool, endpoint).await?;
                $body
            }
            $crate::store::Db::Sqlite(pool, endpoint) => {
                #[allow(unused_mut)]
                let mut $conn = $crate::store::acquire(pool, endpoint).await?;
                $body
            }
        }
    };
}

impl Db {
    /// Opens the pool (creating the SQLite file and its folder if needed).
    pub async fn connect(config: &DatabaseSettings) -> anyhow::Result<Self> {
        match config.database() {
            DatabaseUrl::Postgres(url) => {
                let options = postgres_options(&url, config)
                    .context("COOP_DATABASE_URL is not a valid PostgreSQL URL")?;
                let pool = postgres_pool(config)
                    .connect_with(options)
                    .await
                    .with_context(|| {
                        format!(
                            "could not connect to PostgreSQL at {} (COOP_DATABASE_URL)",
                            redact_url(&url)
                        )
                    })?;
                Ok(Self::Postgres(pool, Endpoint::new("primary")))
            }
            DatabaseUrl::Sqlite(url) => {
                let options = SqliteConnectOptions::from_str(&url)
                    .context("COOP_DATABASE_URL is not a valid sqlite:// URL")?
                    .create_if_missing(true)
                    // WAL lets readers run beside the single writer; NORMAL sync is
                    // durable across process crashes (not power loss) in WAL mode.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                if let Some(parent) = options
                    .get_filename()
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!(
                            "could not create the data folder {} (COOP_DATA_DIR)",
                            parent.display()
                        )
                    })?;
                    // A folder (and database) made by an earlier version, or
                    // by hand, may be readable by everyone: not any more.
                    make_private(parent, 0o700);
                    make_private(options.get_filename(), 0o600);
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(config.db_pool_size.min(8))
                    .acquire_timeout(config.db_acquire_timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("could not open the SQLite database {url}"))?;
                Ok(Self::Sqlite(pool, Endpoint::new("primary")))
            }
        }
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock while
    /// it migrates, so instances that start together apply each migration once.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Postgres(pool, _) => sqlx::migrate!("../../migrations/postgres").run(pool).await,
            Self::Sqlite(pool, _) => sqlx::migrate!("../../migrations/sqlite").run(pool).await,
        }
        .context("applying database migrations")
    }

    /// How SQLite's writers take turns (see [`write_turn`]); no effect on
    /// PostgreSQL.
    pub fn set_write_turns(&self, turns: WriteTurns) {
        if let Self::Sqlite(_, endpoint) = self {
            endpoint.turns.store(turns as u8, Ordering::Relaxed);
        }
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_conn!(self, conn => {
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
        });
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(..) => "postgres",
            Self::Sqlite(..) => "sqlite",
        }
    }

    /// Publishes pool gauges; called when `/metrics` is scraped.
    pub fn record_pool_metrics(&self) {
        match self {
            Self::Postgres(pool, endpoint) => record_pool(pool, &endpoint.name),
            Self::Sqlite(pool, endpoint) => record_pool(pool, &endpoint.name),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Postgres(pool, _) => pool.close().await,
            Self::Sqlite(pool, _) => pool.close().await,
        }
    }
}

/// Takes a connection from `pool`, counting the acquisitions that had to wait
/// because every connection was busy and the pool was full. Fails at once when
/// the health monitor has seen the server down, so callers get a prompt 503
/// instead of waiting out the acquire timeout.
pub async fn acquire<DB: Database>(
    pool: &Pool<DB>,
    endpoint: &Endpoint,
) -> Result<PoolConnection<DB>, sqlx::Error> {
    if !endpoint.is_up() {
        return Err(endpoint_down(endpoint));
    }
    let label = endpoint.name.clone();
    let saturated = pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections();
    if saturated {
        metrics::counter!("db_pool_waits_total", "endpoint" => label.clone()).increment(1);
    }
    let started = Instant::now();
    // While we wait (a full pool, or a server that stopped answering), the
    // health monitor may declare the server down: then give up at once rather
    // than wait out the acquire timeout.
    let acquiring = pool.acquire();
    tokio::pin!(acquiring);
    let conn = loop {
        tokio::select! {
            biased;
            conn = &mut acquiring => break conn,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                if !endpoint.is_up() {
                    break Err(endpoint_down(endpoint));
                }
            }
        }
    };
    metrics::histogram!("db_pool_acquire_seconds", "endpoint" => label.clone())
        .record(started.elapsed().as_secs_f64());
    if matches!(conn, Err(sqlx::Error::PoolTimedOut)) {
        metrics::counter!("db_pool_timeouts_total", "endpoint" => label).increment(1);
    }
    conn
}

fn endpoint_down(endpoint: &Endpoint) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("database {} is down", endpoint.name),
    ))
}

fn record_pool<DB: Database>(pool: &Pool<DB>, endpoint: &str) {
    let endpoint = endpoint.to_owned();
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "endpoint" => endpoint.clone(), "state" => "open")
        .set(size);
    metrics::gauge!("db_pool_connections", "endpoint" => endpoint.clone(), "state" => "idle")
        .set(idle);
    metrics::gauge!("db_pool_connections", "endpoint" => endpoint.clone(), "state" => "in_use")
        .set(size - idle);
    metrics::gauge!("db_pool_max_connections", "endpoint" => endpoint)
        .set(pool.options().get_max_connections() as f64);
}

/// Errors that mean the server did not answer (as opposed to a query error).
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    ) || err
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code.starts_with("57P") || code.starts_with("08"))
}

/// Connection options shared by the primary and the replicas: every statement
/// is bounded by the configured timeout.
pub fn postgres_options(
    url: &str,
    config: &DatabaseSettings,
) -> Result<PgConnectOptions, sqlx::Error> {
    let timeout_ms = config.db_statement_timeout.as_millis().to_string();
    Ok(PgConnectOptions::from_str(url)?
        .application_name("coop")
        .options([("statement_timeout", timeout_ms.as_str())]))
}

pub fn postgres_pool(config: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(config.db_acquire_timeout)
}

/// The error classes callers act on: an outage (answer 503 and retry later), a
/// unique-constraint violation (a conflict the caller names), anything else.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// Tightens an existing file's or folder's mode to `mode` (best effort: a
/// folder we do not own stays as it is, with a warning).
fn make_private(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.permissions().mode() & 0o077 == 0 {
        return;
    }
    if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %err, "could not make it private to this account");
    }
}
