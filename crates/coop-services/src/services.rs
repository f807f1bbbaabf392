//! Every service, built once at start-up from the mechanisms the configuration
//! chose, and handed to the faces.

use std::sync::Arc;
use std::time::Duration;

use coop_mechanisms::data::Data;
use coop_mechanisms::hashing::Hasher;
use coop_mechanisms::objects::Objects;
use coop_mechanisms::sessions::SessionStore;
use coop_mechanisms::store;
use coop_mechanisms::store::replicas::{self, Lsn};

use crate::accounts::Accounts;
use crate::announcements::Announcements;
use crate::calendar::Calendar;
use crate::children::Children;
use crate::classes::Classes;
use crate::deletion::CoopDeletion;
use crate::document_settings::DocumentSettings;
use crate::documents::Documents;
use crate::enrollments::Enrollments;
use crate::exports::Exports;
use crate::families::Families;
use crate::idempotency::IdempotencyKeys;
use crate::jobs::{InlineJobs, Kind};
use crate::payments::Payments;
use crate::queue::Queue;
use crate::semesters::Semesters;

/// What the services are built from.
pub struct Parts {
    pub data: Data,
    pub session_ttl: Duration,
    pub session_idle: Duration,
    pub hasher: Hasher,
    pub job_max_attempts: u32,
    /// Whether a payment provider is configured.
    pub payments_configured: bool,
    pub idempotency_lease: Duration,
    /// How long a co-op's deletion waits after it is asked for.
    pub deletion_grace: Duration,
    /// How long a built export can be downloaded.
    pub export_ttl: Duration,
    /// The `COOP_JOBS_INLINE` benchmark variant (off in production).
    pub inline_jobs: Option<Arc<InlineJobs>>,
    /// Where documents' bytes go, and their limits.
    pub objects: Objects,
    pub documents: DocumentSettings,
}

pub struct Services {
    pub families: Families,
    pub semesters: Semesters,
    pub classes: Classes,
    pub children: Children,
    pub enrollments: Enrollments,
    pub announcements: Announcements,
    pub accounts: Accounts,
    pub payments: Payments,
    pub calendar: Calendar,
    pub queue: Queue,
    pub idempotency: IdempotencyKeys,
    pub exports: Exports,
    pub deletion: CoopDeletion,
    pub documents: Documents,
    data: Data,
}

/// Finished jobs (and the effect records of their emails) are kept this long
/// for the admin view, then deleted. A job is never rerun after it is done, so
/// its effect records are no longer needed.
const FINISHED_JOBS_KEPT: Duration = Duration::from_secs(7 * 86_400);

impl Services {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            data,
            session_ttl,
            session_idle,
            hasher,
            job_max_attempts,
            payments_configured,
            idempotency_lease,
            deletion_grace,
            export_ttl,
            inline_jobs,
            objects,
            documents,
        } = parts;
        let sessions = SessionStore::new(data.clone(), session_ttl, session_idle);
        let families = Families::new(data.clone(), job_max_attempts, inline_jobs);
        let semesters = Semesters::new(data.clone());
        let classes = Classes::new(data.clone(), semesters.clone(), job_max_attempts);
        Self {
            enrollments: Enrollments::new(
                data.clone(),
                families.clone(),
                classes.clone(),
                job_max_attempts,
            ),
            classes,
            semesters,
            children: Children::new(data.clone(), families.clone()),
            announcements: Announcements::new(data.clone(), job_max_attempts),
            exports: Exports::new(data.clone(), job_max_attempts, export_ttl),
            documents: Documents::new(data.clone(), objects, documents, job_max_attempts),
            deletion: CoopDeletion::new(
                data.clone(),
                hasher.clone(),
                deletion_grace,
                job_max_attempts,
            ),
            accounts: Accounts::new(data.clone(), sessions, hasher, job_max_attempts),
            payments: Payments::new(
                data.clone(),
                families.clone(),
                payments_configured,
                job_max_attempts,
            ),
            calendar: Calendar::new(data.clone(), families.clone()),
            queue: Queue::new(data.clone()),
            idempotency: IdempotencyKeys::new(data.clone(), idempotency_lease),
            families,
            data,
        }
    }

    /// Publishes the gauges that are read rather than counted and cost no
    /// query (pools, cache size, replica pools); called when `/metrics` is
    /// scraped. The queue's depth needs the database, so it is refreshed on a
    /// timer instead (`refresh_queue_metrics`): a scrape, however frequent,
    /// costs the database nothing.
    pub fn record_metrics(&self) {
        self.data.record_metrics();
    }

    /// Records the queue's depth every `every` until `stop` resolves.
    pub async fn refresh_queue_metrics(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let db = self.data.primary().clone();
        let refresh = async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                record_queue_metrics(&db).await;
                record_document_metrics(&db).await;
            }
        };
        tokio::select! {
            () = refresh => {}
            () = stop => {}
        }
    }

    /// Whether reads may go to replicas, so clients need read-your-writes tokens.
    pub fn replicas_in_use(&self) -> bool {
        self.data.replicas().is_some()
    }

    /// The primary's WAL position now, for a write that did not record its
    /// own (with replicas; `None` without, or when the primary cannot say).
    pub async fn write_position(&self) -> Option<Lsn> {
        replicas::position_after_write(self.data.replicas()).await
    }

    /// Closes the database pools (at shutdown).
    pub async fn close(&self) {
        self.data.primary().close().await;
    }

    /// Periodic clean-up that keeps tables from growing without bound.
    pub fn spawn_housekeeping(&self) {
        let db = self.data.primary().clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                match store::idempotency::purge_expired(&db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "purged expired idempotency records"),
                    Err(err) => tracing::warn!(error = %err, "purging idempotency records failed"),
                }
                match store::jobs::purge_finished(&db, FINISHED_JOBS_KEPT.as_millis() as i64).await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "purged finished jobs"),
                    Err(err) => tracing::warn!(error = %err, "purging finished jobs failed"),
                }
            }
        });
    }
}

/// Documents stored and their bytes (every co-op's), read with the queue's depth.
async fn record_document_metrics(db: &store::Db) {
    match tokio::time::timeout(Duration::from_secs(1), store::documents::totals(db)).await {
        Ok(Ok((count, bytes))) => {
            metrics::gauge!("documents_stored").set(count as f64);
            metrics::gauge!("documents_stored_bytes").set(bytes as f64);
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "reading document totals failed"),
        Err(_) => tracing::warn!("reading document totals timed out"),
    }
}

/// The queue's depth by kind, for `coop serve` and `coop worker` alike.
pub async fn record_queue_metrics(db: &store::Db) {
    coop_mechanisms::jobs::record_queue_metrics(db, &Kind::names()).await;
}
