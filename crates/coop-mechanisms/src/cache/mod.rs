//! The read cache: cache-aside in two tiers. L1 is in-process (moka); L2 is
//! Redis, shared by every instance. A write invalidates after its commit: the L2
//! key is deleted and every instance is told to drop its L1 copy. The embedded
//! tier (one process) uses L1 alone.
//!
//! Written here rather than taken from a crate because no cache crate offers
//! what correctness needs across instances: leases against stale sets, L1
//! epochs against late inserts, and an L1 that is distrusted whenever the
//! invalidation stream may have lost messages.
//!
//! Services reach it only through `data::Data`: a read asks for a value by key
//! with a loader for the database, and a write's epilogue invalidates the keys
//! it changed after its commit.

mod bus;
mod keys;
mod l1;
mod l2;
mod settings;

pub use keys::CacheKey;
pub use settings::CacheSettings;

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use bus::Subscription;
use l1::LocalCache;
use l2::{Lease, LeaseReply, SharedCache};

#[derive(Clone)]
pub struct Cache(Option<Arc<Tiers>>);

struct Tiers {
    l1: Arc<LocalCache>,
    /// Redis, with the subscription that makes L1 trustworthy; `None` on the
    /// embedded tier, where this process is the only writer.
    shared: Option<Shared>,
    lease_wait: Duration,
    fill_delay: Duration,
}

struct Shared {
    l2: SharedCache,
    subscription: Arc<Subscription>,
    _subscriber: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a value could not be produced.
enum LoadError {
    NotFound,
    Database(StoreError),
}

impl Cache {
    pub fn disabled() -> Self {
        Self(None)
    }

    /// L1 only: for a single process that is the only writer. `fill_delay`:
    /// fault injection for tests (a pause between a database read and the
    /// fill), zero in production.
    pub fn local(config: &CacheSettings, fill_delay: Duration) -> Self {
        Self(Some(Arc::new(Tiers {
            l1: Arc::new(local_cache(config)),
            shared: None,
            lease_wait: config.cache_lease_wait,
            fill_delay,
        })))
    }

    /// L1 + Redis L2, with the invalidation subscriber running in the background.
    pub fn shared(
        config: &CacheSettings,
        fill_delay: Duration,
        client: redis::Client,
        conn: ConnectionManager,
    ) -> Self {
        let l1 = Arc::new(local_cache(config));
        let subscription = Arc::new(Subscription::default());
        let subscriber = tokio::spawn(bus::run(client, l1.clone(), subscription.clone()));
        Self(Some(Arc::new(Tiers {
            l1,
            shared: Some(Shared {
                l2: SharedCache::new(conn, config.cache_ttl),
                subscription,
                _subscriber: AbortOnDrop(subscriber),
            }),
            lease_wait: config.cache_lease_wait,
            fill_delay,
        })))
    }

    /// The value under `key`, from L1, L2 or (on a miss) `load`; `None` when
    /// `load` finds nothing (absence is not cached).
    pub async fn get_or_load<T, F, Fut>(
        &self,
        key: &CacheKey,
        load: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(Option<u64>) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        let shared = self.get_or_load_shared(key, load).await?;
        Ok(shared.map(|value| Arc::unwrap_or_clone(value)))
    }

    /// As `get_or_load`, but an L1 hit hands out the cached copy itself
    /// rather than a clone: the same `Arc` until the entry is dropped, so a
    /// caller may remember what it derived from it (the catalog's JSON of
    /// each class) and recognise it by pointer.
    pub async fn get_or_load_shared<T, F, Fut>(
        &self,
        key: &CacheKey,
        load: F,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(Option<u64>) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        let kind = key.kind();
        let key = key.as_str();
        let Some(tiers) = &self.0 else {
            metrics::counter!("cache_db_reads_total", "kind" => kind).increment(1);
            return load(None).await.map(|found| found.map(Arc::new));
        };
        let decode = |bytes: Bytes| -> Result<T, LoadError> {
            serde_json::from_slice(&bytes).map_err(|e| LoadError::Database(e.into()))
        };
        let fetched = if tiers.l1_trusted() {
            match tiers.l1.get(key).await {
                Some(entry) => {
                    metrics::counter!("cache_requests_total", "tier" => "l1", "result" => "hit", "kind" => kind).increment(1);
                    Ok(entry)
                }
                None => {
                    metrics::counter!("cache_requests_total", "tier" => "l1", "result" => "miss", "kind" => kind).increment(1);
                    let load = async {
                        let bytes = tiers.fetch(key, kind, load).await?;
                        let size = bytes.len();
                        let value: Arc<dyn Any + Send + Sync> = Arc::new(decode(bytes)?);
                        Ok(l1::Entry { value, size })
                    };
                    tiers
                        .l1
                        .get_or_load(key, load)
                        .await
                        .map_err(|shared: Arc<LoadError>| match Arc::try_unwrap(shared) {
                            Ok(err) => err,
                            Err(shared) => shared.duplicate(),
                        })
                }
            }
        } else {
            metrics::counter!("cache_bypass_total", "tier" => "l1", "reason" => "unsubscribed")
                .increment(1);
            match tiers.fetch(key, kind, load).await {
                Ok(bytes) => {
                    return decode(bytes)
                        .map(|value| Some(Arc::new(value)))
                        .or_else(LoadError::into_result);
                }
                Err(err) => Err(err),
            }
        };
        match fetched {
            Ok(entry) => match entry.value.downcast::<T>() {
                Ok(value) => Ok(Some(value)),
                // Two types under one key would be a programming error; treat
                // it as a miss rather than fail the request.
                Err(_) => Ok(load_type_mismatch(key)),
            },
            Err(err) => err.into_result(),
        }
    }

    /// Drops `keys` everywhere. Call after the write that changed them
    /// committed, with the WAL position it committed at when replicas are in
    /// use.
    pub async fn invalidate(&self, keys: &[CacheKey], written_at: Option<u64>) {
        let Some(tiers) = &self.0 else { return };
        if keys.is_empty() {
            return;
        }
        let keys: Vec<&str> = keys.iter().map(CacheKey::as_str).collect();
        if let Some(shared) = &tiers.shared
            && shared.l2.invalidate(&keys, written_at).await.is_err()
        {
            tracing::warn!(
                keys = %keys.join(" "),
                "cache: Redis unavailable; invalidation will be delivered when it returns"
            );
        }
        for key in keys {
            tiers.l1.invalidate(key).await;
        }
    }

    /// Publishes L1 size gauges; called when `/metrics` is scraped.
    pub fn record_metrics(&self) {
        if let Some(tiers) = &self.0 {
            metrics::gauge!("cache_l1_entries").set(tiers.l1.entry_count() as f64);
            metrics::gauge!("cache_l1_weighted_bytes").set(tiers.l1.weighted_size() as f64);
        }
    }

    pub fn describe(&self) -> &'static str {
        match &self.0 {
            None => "off",
            Some(tiers) if tiers.shared.is_some() => "L1 in-process + L2 Redis",
            Some(_) => "L1 in-process",
        }
    }
}

impl Tiers {
    /// L1 may be used only while no invalidation can have been missed.
    fn l1_trusted(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|s| s.subscription.is_alive())
    }

    /// L2, then the database (under a lease, so no stale value is stored).
    async fn fetch<T, F, Fut>(
        &self,
        key: &str,
        kind: &'static str,
        load: F,
    ) -> Result<Bytes, LoadError>
    where
        T: Serialize,
        F: FnOnce(Option<u64>) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        let Some(shared) = &self.shared else {
            return self.read_database(kind, None, load).await;
        };
        if !shared.l2.usable().await {
            metrics::counter!("cache_bypass_total", "tier" => "l2", "reason" => "redis_unavailable").increment(1);
            return self.read_database(kind, None, load).await;
        }
        match shared.l2.get(key).await {
            Ok(Some(bytes)) => {
                metrics::counter!("cache_requests_total", "tier" => "l2", "result" => "hit", "kind" => kind).increment(1);
                return Ok(bytes);
            }
            Ok(None) => {
                metrics::counter!("cache_requests_total", "tier" => "l2", "result" => "miss", "kind" => kind).increment(1);
            }
            Err(_) => return self.read_database(kind, None, load).await,
        }
        let Ok(LeaseReply { lease, floor }) = shared.l2.lease(key).await else {
            return self.read_database(kind, None, load).await;
        };
        match lease {
            Lease::Granted(token) => {
                let bytes = self.read_database(kind, floor, load).await?;
                if let Ok(false) = shared.l2.fill(key, &token, &bytes).await {
                    // An invalidation took our lease: what we read may be stale.
                    metrics::counter!("cache_fills_rejected_total").increment(1);
                }
                Ok(bytes)
            }
            Lease::HeldByAnother => {
                let waited = Instant::now();
                while waited.elapsed() < self.lease_wait {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if let Ok(Some(bytes)) = shared.l2.get(key).await {
                        metrics::counter!("cache_stampede_waits_total", "outcome" => "filled")
                            .increment(1);
                        return Ok(bytes);
                    }
                }
                metrics::counter!("cache_stampede_waits_total", "outcome" => "timed_out")
                    .increment(1);
                self.read_database(kind, floor, load).await
            }
        }
    }

    /// `floor`: the WAL position of the key's last invalidating write, which
    /// the read must not be older than.
    async fn read_database<T, F, Fut>(
        &self,
        kind: &'static str,
        floor: Option<u64>,
        load: F,
    ) -> Result<Bytes, LoadError>
    where
        T: Serialize,
        F: FnOnce(Option<u64>) -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        metrics::counter!("cache_db_reads_total", "kind" => kind).increment(1);
        let value = load(floor)
            .await
            .map_err(LoadError::Database)?
            .ok_or(LoadError::NotFound)?;
        let bytes = serde_json::to_vec(&value).map_err(|e| LoadError::Database(e.into()))?;
        if !self.fill_delay.is_zero() {
            tokio::time::sleep(self.fill_delay).await;
        }
        Ok(Bytes::from(bytes))
    }
}

fn load_type_mismatch<T>(key: &str) -> Option<T> {
    tracing::error!(key, "cache: a key holds a value of another type");
    None
}

impl LoadError {
    fn into_result<T>(self) -> Result<Option<T>, StoreError> {
        match self {
            Self::NotFound => Ok(None),
            Self::Database(err) => Err(err),
        }
    }

    /// Concurrent callers share one failed load; each gets its own error, of
    /// the same class.
    fn duplicate(&self) -> Self {
        match self {
            Self::NotFound => Self::NotFound,
            Self::Database(StoreError::Unavailable(err)) => {
                Self::Database(StoreError::Unavailable(sqlx::Error::Protocol(format!(
                    "shared load failed: {err}"
                ))))
            }
            Self::Database(other) => Self::Database(StoreError::Other(anyhow::anyhow!(
                "shared load failed: {other}"
            ))),
        }
    }
}

fn local_cache(config: &CacheSettings) -> LocalCache {
    LocalCache::new(
        config.cache_l1_ttl,
        config.cache_l1_max_entries,
        config.cache_l1_max_bytes,
    )
}
