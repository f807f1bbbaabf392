//! Password hashing off the async workers, bounded.
//!
//! argon2id takes tens of milliseconds and 19 MiB per hash by design. Run on
//! tokio's blocking pool unbounded, a burst of log-ins (or of sign-ups, which
//! need no account) would start hundreds of hashes at once: hundreds of
//! threads and gigabytes of memory, and every hash slower. So at most one hash
//! runs per core; a caller waits its turn up to `MAX_WAIT`, then gets
//! [`Busy`], which the faces answer with 503 and `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use coop_domain::{Password, PasswordHash};
use tokio::sync::Semaphore;

/// Longest a hash waits for a free slot: a few hashes' worth of queueing.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Every slot was busy for the whole wait.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

/// The hashing pool's bounds (COOP_PASSWORD_HASH_*).
#[derive(Debug, Clone, clap::Args)]
pub struct HashingSettings {
    /// Password hashes (log-in, sign-up, invite acceptance) run at once, each
    /// with 19 MiB. Default: one per core this process may use.
    #[arg(long = "password-hash-concurrency", env = "COOP_PASSWORD_HASH_CONCURRENCY",
          value_name = "COOP_PASSWORD_HASH_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// How long a hash waits for a free slot before the request is answered
    /// 503 with Retry-After.
    #[arg(long = "password-hash-wait", env = "COOP_PASSWORD_HASH_WAIT",
          value_name = "COOP_PASSWORD_HASH_WAIT", default_value = "2s",
          value_parser = coop_runtime::values::parse_duration)]
    pub max_wait: Duration,
}

#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    max_wait: Duration,
}

impl Default for Hasher {
    /// One slot per core this process may use.
    fn default() -> Self {
        Self::with_slots(cores(), MAX_WAIT)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Hasher {
    pub fn new(settings: &HashingSettings) -> Self {
        match settings.concurrency {
            Some(slots) => Self::with_slots(slots as usize, settings.max_wait),
            None => Self::with_slots(cores(), settings.max_wait),
        }
    }

    pub fn with_slots(slots: usize, max_wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            max_wait,
        }
    }

    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        self.run(move || password.hash_blocking()).await
    }

    /// See [`PasswordHash::verify_blocking`]: the same cost whether or not
    /// there is a stored hash.
    pub async fn verify(
        &self,
        stored: Option<PasswordHash>,
        candidate: String,
    ) -> Result<bool, HashError> {
        self.run(move || PasswordHash::verify_blocking(stored.as_ref(), &candidate))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.max_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("password_hash_rejected_total").increment(1);
                HashError::Busy(Busy)
            })?
            .map_err(|_| HashError::Failed("the hashing pool is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
        .map_err(HashError::Failed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Busy(Busy),
    #[error("password hashing failed: {0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_after_its_wait() {
        let hasher = Hasher::with_slots(1, Duration::from_millis(20));
        let held = hasher.slots.clone().acquire_owned().await.unwrap();
        let refused = hasher.verify(None, "anything".into()).await;
        assert!(matches!(refused, Err(HashError::Busy(_))), "{refused:?}");
        drop(held);
        assert!(!hasher.verify(None, "anything".into()).await.unwrap());
    }
}
