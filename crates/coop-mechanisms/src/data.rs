//! The read path and the write epilogue, assembled once for every service.
//!
//! A service owns a resource and says, for each read, which consistency it
//! needs:
//! - [`Data::cached`]: cache (L1, then L2) → a replica that has replayed the
//!   caller's last write → the primary. For hot reads of single values.
//! - [`Data::read`]: a replica at the caller's read-your-writes floor, else the
//!   primary. For lists and other values not worth caching.
//! - [`Data::primary`]: the primary, for reads that must see every commit by
//!   anyone (a check that decides a write, a single-use token).
//!
//! After a write commits, [`Data::committed`] runs the epilogue: it asks the
//! primary for the write's WAL position (with replicas), invalidates the cache
//! keys the write changed (the invalidation carries the position, so no cache
//! fill comes from a replica behind it), and raises the request's
//! [`ReadAfter`] so the caller's next reads (and the response's read-your-writes
//! token) are at least that fresh. A service cannot forget a step: there is no
//! other way to finish a write.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, CacheKey};
use crate::store::replicas::{self, Lsn, ReplicaSet};
use crate::store::{Db, StoreError};

/// Where a request's reads must be at or after (its client's last write, and
/// the writes the request made itself), and what it wrote.
///
/// Cheap to clone: clones share the position, so a write made through one is
/// seen by reads through any other (the handler's copy and the middleware's
/// that stamps the response).
#[derive(Clone, Default, Debug)]
pub struct ReadAfter(Arc<Positions>);

#[derive(Default, Debug)]
struct Positions {
    /// 0: no floor.
    floor: AtomicU64,
    /// 0: nothing written yet.
    written: AtomicU64,
}

impl ReadAfter {
    /// Reads at or after `floor` (the client's read-your-writes token, or the
    /// position kept with its session).
    pub fn at(floor: Option<Lsn>) -> Self {
        let positions = Positions::default();
        if let Some(lsn) = floor {
            positions.floor.store(lsn, Ordering::Relaxed);
        }
        Self(Arc::new(positions))
    }

    /// The position the next read must have replayed, if any.
    pub fn floor(&self) -> Option<Lsn> {
        let floor = self
            .0
            .floor
            .load(Ordering::Acquire)
            .max(self.0.written.load(Ordering::Acquire));
        (floor > 0).then_some(floor)
    }

    /// Raises the floor (e.g. with the position kept in the caller's session,
    /// learnt after the request began).
    pub fn raise(&self, lsn: Lsn) {
        self.0.floor.fetch_max(lsn, Ordering::AcqRel);
    }

    /// The position of this request's last write, when it made one through a
    /// service and replicas are in use.
    pub fn written(&self) -> Option<Lsn> {
        let written = self.0.written.load(Ordering::Acquire);
        (written > 0).then_some(written)
    }

    fn wrote(&self, lsn: Lsn) {
        self.0.written.fetch_max(lsn, Ordering::AcqRel);
    }
}

/// The database (primary and replicas) and the cache in front of it.
#[derive(Clone)]
pub struct Data {
    primary: Db,
    replicas: Option<Arc<ReplicaSet>>,
    cache: Cache,
}

impl Data {
    pub fn new(primary: Db, replicas: Option<Arc<ReplicaSet>>, cache: Cache) -> Self {
        Self {
            primary,
            replicas,
            cache,
        }
    }

    /// The primary: for writes, and for reads that must see every commit.
    pub fn primary(&self) -> &Db {
        &self.primary
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn replicas(&self) -> Option<&ReplicaSet> {
        self.replicas.as_deref()
    }

    /// A cached value: L1, L2, then `load` on a replica that has replayed both
    /// the caller's floor and the key's last invalidating write, else on the
    /// primary. `None` when `load` finds nothing (absence is not cached).
    pub async fn cached<T, F, Fut>(
        &self,
        key: &CacheKey,
        after: &ReadAfter,
        load: F,
    ) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<Option<T>, sqlx::Error>>,
    {
        let floor = after.floor();
        self.cache
            .get_or_load(key, |invalidated_at| async move {
                let min = floor.max(invalidated_at);
                replicas::read(&self.primary, self.replicas.as_deref(), min, &load)
                    .await
                    .map_err(StoreError::from)
            })
            .await
    }

    /// As `cached`, sharing the cached copy instead of cloning it (see
    /// `Cache::get_or_load_shared`): for hot reads of many entries at once.
    pub async fn cached_shared<T, F, Fut>(
        &self,
        key: &CacheKey,
        after: &ReadAfter,
        load: F,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<Option<T>, sqlx::Error>>,
    {
        let floor = after.floor();
        self.cache
            .get_or_load_shared(key, |invalidated_at| async move {
                let min = floor.max(invalidated_at);
                replicas::read(&self.primary, self.replicas.as_deref(), min, &load)
                    .await
                    .map_err(StoreError::from)
            })
            .await
    }

    /// An uncached read on a replica at the caller's floor, else the primary.
    pub async fn read<T, F, Fut>(&self, after: &ReadAfter, load: F) -> Result<T, StoreError>
    where
        F: Fn(Db) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        replicas::read(&self.primary, self.replicas.as_deref(), after.floor(), load)
            .await
            .map_err(StoreError::from)
    }

    /// The write epilogue, after a commit: the write's WAL position (with
    /// replicas), the invalidation of every key it changed, and the caller's
    /// read-your-writes floor raised to it.
    pub async fn committed(&self, after: &ReadAfter, changed: &[CacheKey]) {
        let written_at = replicas::position_after_write(self.replicas.as_deref()).await;
        self.cache.invalidate(changed, written_at).await;
        if let Some(lsn) = written_at {
            after.wrote(lsn);
        }
    }

    /// Pool, cache and replica gauges; called when `/metrics` is scraped.
    pub fn record_metrics(&self) {
        self.primary.record_pool_metrics();
        self.cache.record_metrics();
        if let Some(replicas) = &self.replicas {
            replicas.record_metrics();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_later_of_the_client_s_and_the_request_s_own_writes() {
        let after = ReadAfter::at(Some(10));
        assert_eq!(after.floor(), Some(10));
        assert_eq!(after.written(), None);
        let shared = after.clone();
        shared.wrote(7);
        assert_eq!(after.floor(), Some(10), "an older write does not lower it");
        shared.wrote(12);
        assert_eq!(after.floor(), Some(12));
        assert_eq!(after.written(), Some(12));
        assert_eq!(ReadAfter::default().floor(), None);
    }
}
