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
//! Written here because no crate routes by WAL position.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{Db, Endpoint, postgres_options, postgres_pool};
use crate::config::Config;

/// A WAL position (PostgreSQL's `pg_lsn` as a number).
pub type Lsn = u64;

/// The floor of a read that must go to the primary: the `sticky`
/// read-your-writes mode ("the primary for a while after a write"). No replica
/// ever replays this far.
pub const PRIMARY_ONLY: Lsn = Lsn::MAX;

const POLL_EVERY: Duration = Duration::from_millis(75);
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
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
    replayed: AtomicU64,
    healthy: AtomicBool,
}

impl ReplicaSet {
    /// Pools for the configured replicas (connected lazily: a replica that is
    /// down at start is simply not used until it answers).
    pub fn new(config: &Config, primary: &Db) -> anyhow::Result<Option<Arc<Self>>> {
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
    /// robin, else the primary.
    pub fn reader(&self, min_lsn: Option<Lsn>) -> Db {
        let eligible: Vec<&Replica> = self
            .replicas
            .iter()
            .filter(|r| r.healthy.load(Ordering::SeqCst))
            .filter(|r| min_lsn.is_none_or(|min| r.replayed.load(Ordering::SeqCst) >= min))
            .collect();
        if eligible.is_empty() {
            if min_lsn.is_some()
                && self
                    .replicas
                    .iter()
                    .any(|r| r.healthy.load(Ordering::SeqCst))
            {
                metrics::counter!("db_read_your_writes_fallbacks_total").increment(1);
            }
            metrics::counter!("db_reads_total", "endpoint" => "primary").increment(1);
            return self.primary.clone();
        }
        let pick = eligible[self.next.fetch_add(1, Ordering::Relaxed) % eligible.len()];
        metrics::counter!("db_reads_total", "endpoint" => "replica").increment(1);
        pick.db.clone()
    }

    /// Marks the replica behind `db` unhealthy (a read on it just failed).
    pub fn report_failure(&self, db: &Db) {
        if let Db::Postgres(_, endpoint) = db {
            for replica in &self.replicas {
                if Arc::ptr_eq(&replica.endpoint, endpoint) {
                    replica.healthy.store(false, Ordering::SeqCst);
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
            let primary = poll(&self.primary_pool, "SELECT pg_current_wal_lsn()::text");
            let replicas = futures_util::future::join_all(
                self.replicas
                    .iter()
                    .map(|r| poll(&r.pool, "SELECT pg_last_wal_replay_lsn()::text")),
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
                        replica.replayed.store(replayed, Ordering::SeqCst);
                        let (lag_bytes, lag) = self.lag(replayed);
                        metrics::gauge!("db_replica_lag_bytes", "replica" => name.clone())
                            .set(lag_bytes as f64);
                        metrics::gauge!("db_replica_lag_seconds", "replica" => name.clone())
                            .set(lag.as_secs_f64());
                        lag <= self.max_lag
                    }
                    None => false,
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

async fn poll(pool: &PgPool, sql: &'static str) -> Option<Lsn> {
    // Straight from the pool: the health flag must not stop its own probe.
    let probe = async {
        let text: Option<String> = sqlx::query_scalar(sql).fetch_one(pool).await.ok()?;
        parse_lsn(&text?)
    };
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
    let db = replicas.reader(min_lsn);
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

    #[test]
    fn lsns_parse_and_order_like_the_wal() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("1/0") > parse_lsn("0/FFFFFFFF"));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/2/3"), None);
    }
}
