//! Durable background work: what the jobs are, how they are created and how a
//! failed attempt is retried. The queue's SQL is in `store::jobs`; `worker`
//! claims and runs jobs; `effects` does what each kind of job does.
//!
//! Every effect is idempotent by the job's key: calendar entries and payment
//! results are written with the key (or the payment id, which the provider also
//! gets as its idempotency key), and each email's send is recorded in
//! `job_effects` right after the SMTP server accepted it. One window remains:
//! a worker that dies after the server's `250 OK` and before that record
//! commits will send the email again when the job is rerun. The Message-ID is
//! derived from the job key, so the duplicate is recognisably the same message.

pub mod effects;
pub mod ical;
pub mod mailer;
pub mod payments;
pub mod smtp_plain;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::jobs::{NewJob, now_ms};

/// What a job does; stored as its `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WelcomeEmail,
    CoordinatorNotice,
    CalendarEvents,
    ChargePayment,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Self::WelcomeEmail,
        Self::CoordinatorNotice,
        Self::CalendarEvents,
        Self::ChargePayment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WelcomeEmail => "welcome_email",
            Self::CoordinatorNotice => "coordinator_notice",
            Self::CalendarEvents => "calendar_events",
            Self::ChargePayment => "charge_payment",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// The payload of the three enrollment jobs.
#[derive(Debug, Serialize, Deserialize)]
pub struct FamilyJob {
    pub family_id: Uuid,
}

/// The payload of a payment job.
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentJob {
    pub payment_id: Uuid,
}

fn new_job(coop_id: Uuid, kind: Kind, subject: Uuid, payload: String, max_attempts: u32) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        coop_id,
        kind: kind.as_str(),
        key: format!("{}.{subject}", kind.as_str()),
        payload,
        max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
        run_at: now_ms(),
    }
}

/// The jobs an enrollment causes: welcome email (with the invite), the
/// coordinators' notification and the family's calendar entries.
pub fn enrollment_jobs(coop_id: Uuid, family_id: Uuid, max_attempts: u32) -> Vec<NewJob> {
    let payload = serde_json::json!({ "family_id": family_id }).to_string();
    [
        Kind::WelcomeEmail,
        Kind::CoordinatorNotice,
        Kind::CalendarEvents,
    ]
    .into_iter()
    .map(|kind| new_job(coop_id, kind, family_id, payload.clone(), max_attempts))
    .collect()
}

pub fn payment_job(coop_id: Uuid, payment_id: Uuid, max_attempts: u32) -> NewJob {
    let payload = serde_json::json!({ "payment_id": payment_id }).to_string();
    new_job(
        coop_id,
        Kind::ChargePayment,
        payment_id,
        payload,
        max_attempts,
    )
}

/// Publishes queue depth by state and kind and the age of the oldest due job;
/// called when `/metrics` is scraped (by `coop serve` and `coop worker`).
pub async fn record_queue_metrics(db: &crate::store::Db) {
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
    for state in [JobState::Ready, JobState::Running, JobState::Dead] {
        for kind in Kind::ALL {
            let count = stats
                .depth
                .iter()
                .find(|(s, k, _)| s == state.as_str() && k == kind.as_str())
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!("jobs", "state" => state.as_str(), "kind" => kind.as_str())
                .set(count as f64);
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

    #[test]
    fn enrollment_makes_three_jobs_with_distinct_stable_keys() {
        let coop = Uuid::now_v7();
        let family = Uuid::now_v7();
        let jobs = enrollment_jobs(coop, family, 5);
        let keys: Vec<_> = jobs.iter().map(|j| j.key.clone()).collect();
        assert_eq!(
            keys,
            [
                format!("welcome_email.{family}"),
                format!("coordinator_notice.{family}"),
                format!("calendar_events.{family}"),
            ]
        );
        assert!(jobs.iter().all(|j| j.max_attempts == 5));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("nope"), None);
    }
}
