//! L2: the cache every instance shares, in Redis.
//!
//! Stale sets are prevented with leases (as in Facebook's memcache, NSDI 2013):
//! a reader that misses takes a short lease before it reads the database, and
//! may store its value only while it still holds that lease. A writer's
//! invalidation deletes the value *and* the lease, so a reader that read the
//! database before the write can no longer store what it read. Because the lease
//! is taken before the database read, a reader whose lease survives read after
//! the last invalidation, i.e. after the last write committed.
//!
//! The lease also prevents stampedes across instances: only its holder queries
//! the database; the others wait briefly for the value to appear.
//!
//! Redis failures never fail a request: the cache marks itself unavailable for
//! a moment and reads go to the database. Invalidations that could not be
//! delivered are remembered and delivered before the cache is used again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use redis::aio::ConnectionManager;

/// Channel on which every instance hears which keys to drop from its L1.
pub const CHANNEL: &str = "coop:cache:invalidations";
/// Message meaning "drop everything".
pub const CLEAR_ALL: &str = "*";
/// Prefix of every key the cache owns.
pub const PREFIX: &str = "coop:cache:";

/// A lease outlives any sane database read, and expires if its holder dies.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Bound on one cache round trip: a slow Redis must not slow reads much.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, Redis is left alone this long before it is tried again.
const BACKOFF: Duration = Duration::from_secs(1);
/// Undelivered invalidations remembered individually; past this, everything is cleared.
const MAX_PENDING: usize = 100_000;

/// Takes the lease if free, and returns the key's floor: the WAL position of
/// its last invalidating write, which a fill must read at or after (a replica
/// that has not replayed that write would put the old value back).
const LEASE_AND_FLOOR: &str = r"
local granted = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local floor = redis.call('GET', KEYS[2])
return {granted and 1 or 0, floor or ''}
";

/// How long a floor is kept: far longer than any replica lag we tolerate.
const FLOOR_TTL: Duration = Duration::from_secs(120);

const FILL_IF_LEASED: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
";

pub enum Lease {
    Granted(String),
    HeldByAnother,
}

/// A lease decision and the key's floor (see `LEASE_AND_FLOOR`).
pub struct LeaseReply {
    pub lease: Lease,
    pub floor: Option<u64>,
}

/// The cache could not talk to Redis.
#[derive(Debug)]
pub struct Unavailable;

#[derive(Default)]
struct Pending {
    /// Key → WAL position of the write that invalidated it, if known.
    keys: HashMap<String, Option<u64>>,
    clear_all: bool,
}

pub struct SharedCache {
    conn: ConnectionManager,
    ttl: Duration,
    fill_script: redis::Script,
    lease_script: redis::Script,
    unavailable_until: Mutex<Option<Instant>>,
    pending: tokio::sync::Mutex<Pending>,
    /// Mirrors "pending is not empty", so the hot path needs no lock.
    has_pending: AtomicBool,
}

impl SharedCache {
    pub fn new(conn: ConnectionManager, ttl: Duration) -> Self {
        Self {
            conn,
            ttl,
            fill_script: redis::Script::new(FILL_IF_LEASED),
            lease_script: redis::Script::new(LEASE_AND_FLOOR),
            unavailable_until: Mutex::new(None),
            pending: tokio::sync::Mutex::new(Pending::default()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// True when Redis may be used now. Delivers remembered invalidations
    /// first: no read may see a value that a write during an outage replaced.
    pub async fn usable(&self) -> bool {
        if self.backing_off() {
            return false;
        }
        if !self.has_pending.load(Ordering::SeqCst) {
            return true;
        }
        let mut pending = self.pending.lock().await;
        match self.deliver(&mut pending).await {
            Ok(()) => true,
            Err(Unavailable) => {
                self.back_off();
                false
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, Unavailable> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let value: Option<Vec<u8>> = self.run(&cmd).await?;
        Ok(value.map(Bytes::from))
    }

    pub async fn lease(&self, key: &str) -> Result<LeaseReply, Unavailable> {
        let token = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
        let mut invocation = self.lease_script.prepare_invoke();
        invocation
            .key(lease_key(key))
            .key(floor_key(key))
            .arg(&token)
            .arg(LEASE_TTL.as_millis() as u64);
        let mut conn = self.conn.clone();
        let reply = tokio::time::timeout(
            OP_TIMEOUT,
            invocation.invoke_async::<(i64, String)>(&mut conn),
        )
        .await;
        match reply {
            Ok(Ok((granted, floor))) => Ok(LeaseReply {
                lease: if granted == 1 {
                    Lease::Granted(token)
                } else {
                    Lease::HeldByAnother
                },
                floor: floor.parse().ok(),
            }),
            _ => {
                self.back_off();
                Err(Unavailable)
            }
        }
    }

    /// Stores `value` if the lease `token` is still held; false when an
    /// invalidation took the lease away (the value may be stale).
    pub async fn fill(&self, key: &str, token: &str, value: &[u8]) -> Result<bool, Unavailable> {
        let jitter = rand::thread_rng().gen_range(0.9..=1.1);
        let ttl_ms = (self.ttl.as_millis() as f64 * jitter).max(1.0) as u64;
        let mut invocation = self.fill_script.prepare_invoke();
        invocation
            .key(key)
            .key(lease_key(key))
            .arg(token)
            .arg(value)
            .arg(ttl_ms);
        let mut conn = self.conn.clone();
        let stored =
            tokio::time::timeout(OP_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await;
        match stored {
            Ok(Ok(stored)) => Ok(stored == 1),
            _ => {
                self.back_off();
                Err(Unavailable)
            }
        }
    }

    /// Deletes the values of `keys` and any leases, and tells every instance
    /// to drop its L1 copies, in one pipelined round trip (a write that
    /// changed several keys takes the pending set's lock once, not once per
    /// key). If Redis cannot be reached the keys are remembered and delivered
    /// as soon as it can.
    pub async fn invalidate(
        &self,
        keys: &[&str],
        written_at: Option<u64>,
    ) -> Result<(), Unavailable> {
        let mut pending = self.pending.lock().await;
        for key in keys {
            let floor = pending.keys.entry((*key).to_owned()).or_insert(None);
            *floor = (*floor).max(written_at);
        }
        if pending.keys.len() > MAX_PENDING {
            pending.keys.clear();
            pending.clear_all = true;
        }
        self.has_pending.store(true, Ordering::SeqCst);
        // Other instances keep trusting their L1 while their own subscription
        // is alive, so an undelivered invalidation leaves them stale: a write
        // ignores the read path's back-off and tries hard (a reconnect after a
        // Redis restart usually takes one failed command) before giving up.
        let mut delivered = Err(Unavailable);
        for attempt in 0..4 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            delivered = self.deliver(&mut pending).await;
            if delivered.is_ok() {
                break;
            }
        }
        if delivered.is_err() {
            self.back_off();
        }
        delivered
    }

    /// Sends every pending invalidation; on success the pending set is empty.
    async fn deliver(&self, pending: &mut Pending) -> Result<(), Unavailable> {
        let delivered = self.deliver_all(pending).await;
        self.has_pending.store(
            !pending.keys.is_empty() || pending.clear_all,
            Ordering::SeqCst,
        );
        delivered
    }

    async fn deliver_all(&self, pending: &mut Pending) -> Result<(), Unavailable> {
        if pending.clear_all {
            self.delete_everything().await?;
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(CHANNEL).arg(CLEAR_ALL);
            let _: i64 = self.run(&publish).await?;
            metrics::counter!("cache_invalidations_published_total").increment(1);
            pending.clear_all = false;
            pending.keys.clear();
            return Ok(());
        }
        let keys: Vec<(String, Option<u64>)> =
            pending.keys.iter().map(|(k, f)| (k.clone(), *f)).collect();
        for chunk in keys.chunks(500) {
            let mut pipe = redis::pipe();
            let mut del = redis::cmd("DEL");
            for (key, _) in chunk {
                del.arg(key).arg(lease_key(key));
            }
            pipe.add_command(del).ignore();
            for (key, floor) in chunk {
                if let Some(floor) = floor {
                    pipe.cmd("SET")
                        .arg(floor_key(key))
                        .arg(floor)
                        .arg("PX")
                        .arg(FLOOR_TTL.as_millis() as u64)
                        .ignore();
                }
                pipe.cmd("PUBLISH").arg(CHANNEL).arg(key).ignore();
            }
            let mut conn = self.conn.clone();
            match tokio::time::timeout(OP_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {
                    metrics::counter!("cache_invalidations_published_total")
                        .increment(chunk.len() as u64);
                    for (key, _) in chunk {
                        pending.keys.remove(key);
                    }
                }
                _ => return Err(Unavailable),
            }
        }
        Ok(())
    }

    /// Too many invalidations were missed to track: drop every cached value.
    async fn delete_everything(&self) -> Result<(), Unavailable> {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(format!("{PREFIX}*"))
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.run(&scan).await?;
            if !keys.is_empty() {
                let mut del = redis::cmd("DEL");
                del.arg(&keys);
                let _: i64 = self.run(&del).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Unavailable> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cache: Redis command failed");
                self.back_off();
                Err(Unavailable)
            }
            Err(_) => {
                self.back_off();
                Err(Unavailable)
            }
        }
    }

    fn backing_off(&self) -> bool {
        let until = self
            .unavailable_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    fn back_off(&self) {
        let mut until = self
            .unavailable_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *until = Some(Instant::now() + BACKOFF);
    }
}

fn lease_key(key: &str) -> String {
    format!("{key}:lease")
}

fn floor_key(key: &str) -> String {
    format!("{key}:floor")
}
