//! Reads from streaming replicas, without breaking read-your-writes.
//!
//! A monitor polls the primary's WAL position (`pg_current_wal_lsn()`) and each
//! replica's replayed position (`pg_last_wal_replay_lsn()`) every 75 ms. A
//! replica's lag is how long ago the primary first reported WAL that the
//! replica has not replayed yet; more than `COOP_MAX_REPLICA_LAG`, or no answer,
//! takes it out of the read set until it is back.
//!
//! A client that wrote carries the primary's WAL position after its write (see
//! `http::read_after`); its reads go only to replicas that have replayed that
//! far, else to the primary. This is stronger and cheaper than "read from the
//! primary for N seconds after a write": the client is sent back to replicas as
//! soon as one has caught up, and never to one that has not.
//!
//! The monitor's view is up to 75 ms old, and a read right after a write nearly
//! always comes sooner than that, while a streaming replica on a fast network
//! has usually replayed the write within a millisecond. So when no replica is
//! known to have replayed a read's position, one is asked on the spot (one
//! query, `CHECK_TIMEOUT` at most) before the read falls back to the primary.
//!
//! Written here because no crate routes by WAL position.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::DatabaseSettings;
use super::{Db, Endpoint, postgres_options, postgres_pool};

/// A WAL position (PostgreSQL's `pg_lsn` as a number).
pub type Lsn = u64;

/// The floor of a read that must go to the primary: the `sticky`
/// read-your-writes mode ("the primary for a while after a write"). No replica
/// ever replays this far, so none is asked.
pub const PRIMARY_ONLY: Lsn = Lsn::MAX;

const POLL_EVERY: Duration = Duration::from_millis(75);
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a read waits for a replica to say how far it has replayed (its turn
/// behind a concurrent check of the same replica included) before it goes to
/// the primary. A replica on the same network answers within a millisecond or
/// two; 25 ms allows for a busy moment while bounding what a read that ends up
/// on the primary anyway loses by asking.
const CHECK_TIMEOUT: Duration = Duration::from_millis(25);
const CURRENT_LSN: &str = "SELECT pg_current_wal_lsn()::text";
const REPLAYED_LSN: &str = "SELECT pg_last_wal_replay_lsn()::text";
/// Consecutive failed polls before the primary counts as down (one blip is not an outage).
const PRIMARY_DOWN_AFTER: u32 = 2;
/// How much WAL-position history is kept to compute lag in seconds.
const HISTORY: Duration = Duration::from_secs(120);

pub struct ReplicaSet {
    primary: Db,
    primary_pool: PgPool,
    replicas: Vec<Replica>,
    max_lag: Duration,
    next: AtomicUsize,
    /// (when first seen, primary WAL position), oldest first.
    history: Mutex<VecDeque<(Instant, Lsn)>>,
}

struct Replica {
    db: Db,
    pool: PgPool,
    endpoint: Arc<Endpoint>,
    /// The furthest position the replica was seen to have replayed (by the
    /// monitor or an on-demand check); 0 when unknown.
    replayed: AtomicU64,
    healthy: AtomicBool,
    /// Held while an on-demand check of this replica runs: reads that need one
    /// at the same moment take turns, and most find their answer in what the
    /// check before them stored, so a burst of reads costs the replica one query.
    checking: tokio::sync::Mutex<()>,
}

impl ReplicaSet {
    /// Pools for the configured replicas (connected lazily: a replica that is
    /// down at start is simply not used until it answers).
    pub fn new(config: &DatabaseSettings, primary: &Db) -> anyhow::Result<Option<Arc<Self>>> {
        if config.replica_urls.is_empty() {
            return Ok(None);
        }
        let Db::Postgres(primary_pool, _) = primary else {
            anyhow::bail!(
                "COOP_REPLICA_URLS needs a postgres:// COOP_DATABASE_URL (replicas stream from a PostgreSQL primary)"
            );
        };
        let mut replicas = Vec::new();
        for url in &config.replica_urls {
            let options = postgres_options(url, config)?;
            let name = format!("{}:{}", options.get_host(), options.get_port());
            let pool = postgres_pool(config).connect_lazy_with(options);
            let endpoint = Endpoint::new(name);
            // Unhealthy until the first poll says otherwise.
            replicas.push(Replica {
                db: Db::Postgres(pool.clone(), endpoint.clone()),
                pool,
                endpoint,
                replayed: AtomicU64::new(0),
                healthy: AtomicBool::new(false),
                checking: tokio::sync::Mutex::new(()),
            });
        }
        Ok(Some(Arc::new(Self {
            primary: primary.clone(),
            primary_pool: primary_pool.clone(),
            replicas,
            max_lag: config.max_replica_lag,
            next: AtomicUsize::new(0),
            history: Mutex::new(VecDeque::new()),
        })))
    }

    /// Where a read goes: a healthy replica that has replayed `min_lsn`, round
    /// robin, else the primary. When none is known to have (see the module
    /// comment), one healthy replica, in turn, is asked how far it is now.
    pub async fn reader(&self, min_lsn: Option<Lsn>) -> Db {
        let healthy: Vec<&Replica> = self
            .replicas
            .iter()
            .filter(|r| r.healthy.load(Ordering::SeqCst))
            .collect();
        if healthy.is_empty() {
            return self.on_primary();
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(min) = min_lsn else {
            return on_replica(healthy[turn % healthy.len()]);
        };
        let caught_up: Vec<&Replica> = healthy
            .iter()
            .copied()
            .filter(|r| r.replayed.load(Ordering::SeqCst) >= min)
            .collect();
        if !caught_up.is_empty() {
            return on_replica(caught_up[turn % caught_up.len()]);
        }
        if min != PRIMARY_ONLY {
            let asked = healthy[turn % healthy.len()];
            if asked.has_replayed(min).await {
                return on_replica(asked);
            }
        }
        metrics::counter!("db_read_your_writes_fallbacks_total").increment(1);
        self.on_primary()
    }

    fn on_primary(&self) -> Db {
        metrics::counter!("db_reads_total", "endpoint" => "primary").increment(1);
        self.primary.clone()
    }

    /// Marks the replica behind `db` unhealthy (a read on it just failed) and
    /// forgets how far it had replayed (see `Replica::lost`).
    pub fn report_failure(&self, db: &Db) {
        if let Db::Postgres(_, endpoint) = db {
            for replica in &self.replicas {
                if Arc::ptr_eq(&replica.endpoint, endpoint) {
                    replica.lost();
                }
            }
        }
    }

    pub fn is_primary(&self, db: &Db) -> bool {
        matches!((db, &self.primary), (Db::Postgres(_, a), Db::Postgres(_, b)) if Arc::ptr_eq(a, b))
    }

    /// The primary's WAL position now: after a commit, a position every read
    /// of that write's results must wait for.
    pub async fn current_lsn(&self) -> Result<Lsn, sqlx::Error> {
        let text: String = crate::with_conn!(&self.primary, conn => {
            sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&mut *conn).await?
        });
        parse_lsn(&text).ok_or_else(|| sqlx::Error::Protocol(format!("unexpected LSN {text:?}")))
    }

    /// Polls forever; run it as a background task.
    pub async fn monitor(self: Arc<Self>) {
        let mut primary_failures = 0u32;
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let primary = poll(query_lsn(&self.primary_pool, CURRENT_LSN));
            let replicas = futures_util::future::join_all(
                self.replicas.iter().map(|r| poll(r.replayed_now())),
            );
            let (primary, replicas) = tokio::join!(primary, replicas);

            let Db::Postgres(_, primary_endpoint) = &self.primary else {
                return;
            };
            match primary {
                Some(lsn) => {
                    primary_failures = 0;
                    primary_endpoint.set_up(true);
                    self.remember(lsn);
                }
                None => {
                    primary_failures += 1;
                    if primary_failures >= PRIMARY_DOWN_AFTER && primary_endpoint.is_up() {
                        tracing::warn!(
                            "primary database is not answering: writes fail fast until it is back"
                        );
                        primary_endpoint.set_up(false);
                    }
                }
            }
            metrics::gauge!("db_primary_up").set(if primary_endpoint.is_up() { 1.0 } else { 0.0 });

            for (replica, replayed) in self.replicas.iter().zip(replicas) {
                let name = replica.endpoint.name.clone();
                let healthy = match replayed {
                    Some(replayed) => {
                        // An on-demand check may have stored a later position
                        // while this poll was under way.
                        replica.replayed.fetch_max(replayed, Ordering::SeqCst);
                        let (lag_bytes, lag) = self.lag(replayed);
                        metrics::gauge!("db_replica_lag_bytes", "replica" => name.clone())
                            .set(lag_bytes as f64);
                        metrics::gauge!("db_replica_lag_seconds", "replica" => name.clone())
                            .set(lag.as_secs_f64());
                        lag <= self.max_lag
                    }
                    None => {
                        // As in `Replica::lost` (the flag is set just below,
                        // where its change is logged).
                        replica.replayed.store(0, Ordering::SeqCst);
                        false
                    }
                };
                let was = replica.healthy.swap(healthy, Ordering::SeqCst);
                if was != healthy {
                    tracing::warn!(replica = %name, healthy, "replica read set changed");
                }
                metrics::gauge!("db_replica_healthy", "replica" => name).set(if healthy {
                    1.0
                } else {
                    0.0
                });
            }
        }
    }

    fn remember(&self, lsn: Lsn) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.back().is_none_or(|&(_, last)| lsn > last) {
            history.push_back((Instant::now(), lsn));
        }
        while history.len() > 1
            && history
                .front()
                .is_some_and(|(at, _)| at.elapsed() > HISTORY)
        {
            history.pop_front();
        }
    }

    /// (bytes, time) a replica that replayed up to `replayed` is behind.
    fn lag(&self, replayed: Lsn) -> (u64, Duration) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let latest = history.back().map_or(0, |&(_, lsn)| lsn);
        if replayed >= latest {
            return (0, Duration::ZERO);
        }
        // The first moment the primary had WAL this replica still lacks.
        let since = history
            .iter()
            .find(|&&(_, lsn)| lsn > replayed)
            .map_or(Duration::ZERO, |(at, _)| at.elapsed());
        (latest - replayed, since)
    }

    pub fn record_metrics(&self) {
        for replica in &self.replicas {
            replica.db.record_pool_metrics();
        }
    }

    /// (replica, healthy) for `/ready`.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.replicas
            .iter()
            .map(|r| (r.endpoint.name.clone(), r.healthy.load(Ordering::SeqCst)))
            .collect()
    }
}

/// After a write committed: the WAL position reads of it must wait for, or
/// `None` without replicas (every read sees every write) or when the primary
/// cannot say (logged; readers then get no read-your-writes floor).
pub async fn position_after_write(replicas: Option<&ReplicaSet>) -> Option<Lsn> {
    match replicas?.current_lsn().await {
        Ok(lsn) => Some(lsn),
        Err(err) => {
            tracing::warn!(error = %err, "could not read the WAL position after a write");
            None
        }
    }
}

/// The result of an on-demand check, as counted in `db_replay_checks_total`.
#[derive(Clone, Copy)]
enum Check {
    /// The replica said it has replayed the position.
    CaughtUp,
    /// A check that ran while this one waited its turn found it far enough.
    Shared,
    /// The replica said it has not replayed the position yet.
    Behind,
    /// No answer within `CHECK_TIMEOUT`, or an error.
    Failed,
}

impl Check {
    fn label(self) -> &'static str {
        match self {
            Check::CaughtUp => "caught_up",
            Check::Shared => "shared",
            Check::Behind => "behind",
            Check::Failed => "failed",
        }
    }
}

impl Replica {
    /// Whether the replica has replayed `min`, asking it if nobody has seen it
    /// do so yet (`CHECK_TIMEOUT` at most, waiting included).
    async fn has_replayed(&self, min: Lsn) -> bool {
        let check = tokio::time::timeout(CHECK_TIMEOUT, self.check(min))
            .await
            .unwrap_or(Check::Failed);
        metrics::counter!("db_replay_checks_total", "outcome" => check.label()).increment(1);
        matches!(check, Check::CaughtUp | Check::Shared)
    }

    async fn check(&self, min: Lsn) -> Check {
        let _turn = self.checking.lock().await;
        // The check that held the lock (or the monitor) may have stored a
        // position far enough while this one waited.
        if self.replayed.load(Ordering::SeqCst) >= min {
            return Check::Shared;
        }
        match self.replayed_now().await {
            Some(replayed) => {
                // `fetch_max`: a check or poll that finished after a later one
                // must not move the position back.
                self.replayed.fetch_max(replayed, Ordering::SeqCst);
                if replayed >= min {
                    Check::CaughtUp
                } else {
                    Check::Behind
                }
            }
            None => Check::Failed,
        }
    }

    /// How far the replica has replayed, asked now: the monitor's poll and the
    /// on-demand check ask the same question.
    async fn replayed_now(&self) -> Option<Lsn> {
        query_lsn(&self.pool, REPLAYED_LSN).await
    }

    /// The replica stopped answering: out of the read set, and what it was
    /// seen to have replayed is forgotten. A replica that crashed replays again
    /// from its last restart point, so it can come back behind where it was;
    /// until the monitor has seen it again, no read may count on the old position.
    fn lost(&self) {
        self.healthy.store(false, Ordering::SeqCst);
        self.replayed.store(0, Ordering::SeqCst);
    }
}

fn on_replica(replica: &Replica) -> Db {
    metrics::counter!("db_reads_total", "endpoint" => "replica").increment(1);
    replica.db.clone()
}

/// One WAL position. Straight from the pool: the health flag must not stop its
/// own probe.
async fn query_lsn(pool: &PgPool, sql: &'static str) -> Option<Lsn> {
    let text: Option<String> = sqlx::query_scalar(sql).fetch_one(pool).await.ok()?;
    parse_lsn(&text?)
}

async fn poll(probe: impl Future<Output = Option<Lsn>>) -> Option<Lsn> {
    tokio::time::timeout(POLL_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
}

/// Runs a read where `replicas` routes it; a replica that fails mid-read is
/// marked unhealthy and the read is retried on the primary, so losing a replica
/// fails no read.
pub async fn read<T, F, Fut>(
    primary: &Db,
    replicas: Option<&ReplicaSet>,
    min_lsn: Option<Lsn>,
    run: F,
) -> Result<T, sqlx::Error>
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let Some(replicas) = replicas else {
        return run(primary.clone()).await;
    };
    let db = replicas.reader(min_lsn).await;
    match run(db.clone()).await {
        Err(err) if !replicas.is_primary(&db) && super::is_connection_error(&err) => {
            replicas.report_failure(&db);
            metrics::counter!("db_replica_read_retries_total").increment(1);
            run(primary.clone()).await
        }
        other => other,
    }
}

/// `16/B374D848` → a number that orders like the WAL.
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (high, low) = text.trim().split_once('/')?;
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    (high <= u64::from(u32::MAX) && low <= u64::from(u32::MAX)).then_some((high << 32) | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica whose server refuses connections: a check that queries it fails.
    fn unreachable_replica() -> Replica {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://coop@127.0.0.1:1/none")
            .unwrap();
        let endpoint = Endpoint::new("127.0.0.1:1");
        Replica {
            db: Db::Postgres(pool.clone(), endpoint.clone()),
            pool,
            endpoint,
            replayed: AtomicU64::new(10),
            healthy: AtomicBool::new(true),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    #[tokio::test]
    async fn a_check_that_waited_its_turn_uses_what_the_one_before_stored() {
        let replica = unreachable_replica();
        let before = replica.checking.lock().await;
        let (waited, ()) = tokio::join!(replica.check(20), async {
            tokio::task::yield_now().await;
            replica.replayed.fetch_max(25, Ordering::SeqCst);
            drop(before);
        });
        assert!(matches!(waited, Check::Shared));
        assert_eq!(replica.replayed.load(Ordering::SeqCst), 25);
    }

    #[tokio::test]
    async fn a_replica_that_does_not_answer_is_not_read_from() {
        let replica = unreachable_replica();
        let started = Instant::now();
        assert!(!replica.has_replayed(20).await);
        assert!(started.elapsed() < CHECK_TIMEOUT * 4);
        assert_eq!(
            replica.replayed.load(Ordering::SeqCst),
            10,
            "a failed check leaves the position as it was"
        );
        // Held by a check that never ends: the wait itself is bounded.
        let _stuck = replica.checking.lock().await;
        let started = Instant::now();
        assert!(!replica.has_replayed(20).await);
        assert!(started.elapsed() < CHECK_TIMEOUT * 4);
    }

    #[test]
    fn lsns_parse_and_order_like_the_wal() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/2/3"), None);
    }
}
