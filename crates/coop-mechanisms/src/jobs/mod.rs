//! Durable background work: the queue's worker, retries with backoff, and the
//! queue's metrics. The queue's SQL is in `store::jobs`; what each kind of job
//! does is the services' business ([`JobRunner`]).
//!
//! Effects must be idempotent by the job's key: a job can run more than once
//! (a worker that dies mid-job leaves it to be reclaimed when its lease ends).

mod settings;
pub mod worker;

use std::future::Future;
use std::time::{Duration, Instant};

pub use settings::JobSettings;

use crate::providers::mail::SendError;
use crate::store::jobs::{JobRow, now_ms};

/// What runs a claimed job: the services' catalogue of job kinds.
pub trait JobRunner: Send + Sync + 'static {
    fn run(&self, job: &JobRow) -> impl Future<Output = Outcome> + Send;
}

/// How a run of a job ended.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Failed; worth another attempt after a backoff.
    Retry(String),
    /// Not attempted: a breaker is open. Run again at `until`, without
    /// counting an attempt.
    Deferred {
        until: Instant,
        reason: String,
    },
    /// Failed in a way no retry can fix.
    Dead(String),
    /// Done, and its effect removed the job's own row with everything else
    /// of its co-op (the last batch of a co-op's deletion): there is no row
    /// left to record the outcome on, and none is missing.
    Removed,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Done | Self::Removed => "done",
            Self::Retry(_) => "retry",
            Self::Deferred { .. } => "deferred",
            Self::Dead(_) => "dead",
        }
    }
}

impl From<sqlx::Error> for Outcome {
    fn from(err: sqlx::Error) -> Self {
        Self::Retry(format!("database: {err}"))
    }
}

impl From<SendError> for Outcome {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Open { retry_at } => Self::Deferred {
                until: retry_at,
                reason: "the SMTP circuit breaker is open".into(),
            },
            SendError::Transient(message) => Self::Retry(message),
            SendError::Permanent(message) => Self::Dead(message),
        }
    }
}

/// Publishes queue depth by state and kind (every one of `kinds`, zero when
/// none) and the age of the oldest due job; called when `/metrics` is scraped
/// (by `coop serve` and `coop worker`).
pub async fn record_queue_metrics(db: &crate::store::Db, kinds: &[&'static str]) {
    let stats =
        match tokio::time::timeout(Duration::from_secs(1), crate::store::jobs::stats(db)).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "reading queue depth failed");
                return;
            }
            Err(_) => {
                tracing::warn!("reading queue depth timed out");
                return;
            }
        };
    use crate::store::jobs::JobState;
    for state in [
        JobState::Ready,
        JobState::Held,
        JobState::Running,
        JobState::Dead,
    ] {
        for &kind in kinds {
            let count = stats
                .depth
                .iter()
                .find(|(s, k, _)| s == state.as_str() && k == kind)
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!("jobs", "state" => state.as_str(), "kind" => kind).set(count as f64);
        }
    }
    let age_ms = stats
        .oldest_due_run_at
        .map_or(0, |run_at| (now_ms() - run_at).max(0));
    metrics::gauge!("jobs_oldest_ready_age_seconds").set(age_ms as f64 / 1000.0);
}

/// Delay before retry number `attempt` (1 = the first retry): exponential from
/// `base`, capped at `max`, with "equal jitter" (a uniform draw from the upper
/// half), so jobs that failed together do not all come back together while the
/// delay still grows. `unit` is a uniform random number in [0, 1).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(1, base, max, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(3, base, max, 0.5), Duration::from_secs(6));
        // Capped, and no overflow for absurd attempt numbers.
        assert_eq!(backoff(10, base, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 0.0), max / 2);
    }
}
