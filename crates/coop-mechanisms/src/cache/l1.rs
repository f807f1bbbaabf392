//! L1: the in-process cache (moka), bounded by entries and bytes.
//!
//! Invalidation races: a reader may fetch a value (from L2 or the database)
//! just before a write's invalidation reaches this instance, and insert it just
//! after. To stop that old value from lingering, every invalidation bumps an
//! epoch (per key stripe, plus a global one for "clear everything"); a reader
//! notes the epoch before it fetches and drops its insert if the epoch moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::any::Any;

const STRIPES: usize = 1024;

/// A decoded value (so a hit costs no parsing) and its encoded size in bytes.
#[derive(Clone)]
pub struct Entry {
    pub value: Arc<dyn Any + Send + Sync>,
    pub size: usize,
}

pub struct LocalCache {
    entries: moka::future::Cache<Arc<str>, Entry>,
    stripes: Box<[AtomicU64]>,
    global: AtomicU64,
}

/// A reading of the epochs a key depends on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Epoch(u64, u64);

impl LocalCache {
    pub fn new(ttl: Duration, max_entries: u64, max_bytes: u64) -> Self {
        // Weighing each entry at least max_bytes / max_entries bounds both the
        // bytes held and the number of entries with moka's single capacity.
        let floor = (max_bytes / max_entries).max(1);
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &Arc<str>, entry: &Entry| {
                let weight = (key.len() + entry.size) as u64;
                u32::try_from(weight.max(floor)).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        Self {
            entries,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
        }
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).await
    }

    pub fn epoch(&self, key: &str) -> Epoch {
        Epoch(
            self.global.load(Ordering::SeqCst),
            self.stripe(key).load(Ordering::SeqCst),
        )
    }

    /// Runs `load` once for concurrent callers of the same key (single flight)
    /// and caches its value, unless an invalidation arrived meanwhile.
    pub async fn get_or_load<E, F>(&self, key: &str, load: F) -> Result<Entry, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Entry, E>>,
    {
        let before = self.epoch(key);
        let key: Arc<str> = Arc::from(key);
        let value = self.entries.try_get_with(key.clone(), load).await?;
        if self.epoch(&key) != before {
            self.entries.invalidate(&key).await;
        }
        Ok(value)
    }

    pub async fn invalidate(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key).await;
    }

    pub fn clear(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        &self.stripes[(hash as usize) % STRIPES]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &'static str) -> Entry {
        Entry {
            value: Arc::new(text),
            size: text.len(),
        }
    }

    fn text(entry: Option<Entry>) -> Option<&'static str> {
        entry.map(|e| *e.value.downcast_ref::<&'static str>().unwrap())
    }

    fn cache() -> LocalCache {
        LocalCache::new(Duration::from_secs(60), 1_000, 1_000_000)
    }

    #[tokio::test]
    async fn a_value_loaded_across_an_invalidation_is_not_kept() {
        let l1 = cache();
        let value = l1
            .get_or_load::<(), _>("k", async {
                // The invalidation lands while the loader holds the old value.
                l1.invalidate("k").await;
                Ok(entry("old"))
            })
            .await
            .unwrap();
        assert_eq!(
            text(Some(value)),
            Some("old"),
            "the caller still gets its answer"
        );
        assert!(
            l1.get("k").await.is_none(),
            "but the cache does not keep it"
        );
    }

    #[tokio::test]
    async fn a_clear_during_a_load_also_wins() {
        let l1 = cache();
        let _ = l1
            .get_or_load::<(), _>("k", async {
                l1.clear();
                Ok(entry("old"))
            })
            .await;
        assert!(l1.get("k").await.is_none());
    }

    #[tokio::test]
    async fn undisturbed_loads_are_cached_and_run_once() {
        let l1 = cache();
        let calls = AtomicU64::new(0);
        let load = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(entry("v"))
        };
        let (a, b, c) = tokio::join!(
            l1.get_or_load("k", load()),
            l1.get_or_load("k", load()),
            l1.get_or_load("k", load())
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        assert_eq!(text(l1.get("k").await), Some("v"));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let l1 = cache();
        let failed = l1
            .get_or_load("k", async { Err::<Entry, _>("db down") })
            .await;
        assert!(failed.is_err());
        assert!(l1.get("k").await.is_none());
    }

    #[tokio::test]
    async fn the_entry_bound_holds() {
        let l1 = LocalCache::new(Duration::from_secs(60), 10, 1_000_000);
        for i in 0..100 {
            let key = format!("k{i}");
            let _ = l1
                .get_or_load::<(), _>(&key, async { Ok(entry("v")) })
                .await;
        }
        l1.entries.run_pending_tasks().await;
        assert!(l1.entry_count() <= 10, "{} entries", l1.entry_count());
    }
}
