//! Claims jobs and runs them: bounded concurrency, a heartbeat that extends
//! each running job's lease, retries with backoff, and a shutdown that stops
//! claiming, lets running jobs finish (or releases them) and returns.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use super::{JobRunner, JobSettings, Outcome, backoff};
use crate::store::jobs::{self, JobRow, now_ms};
use crate::store::{Db, in_background};

/// Longest a single run may take before it counts as a failed attempt.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a busy worker also returns expired leases to the queue.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);
/// Pause after the database failed a claim, so an outage is not hammered.
const CLAIM_ERROR_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Longest wait for running jobs at shutdown before releasing them.
    pub shutdown_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(config: &JobSettings, shutdown_timeout: Duration) -> Self {
        Self {
            concurrency: config.worker_concurrency as usize,
            lease: config.job_lease,
            poll: config.job_poll,
            retry_base: config.job_retry_base,
            retry_max: config.job_retry_max,
            shutdown_timeout,
        }
    }
}

pub struct Worker<R> {
    db: Db,
    runner: Arc<R>,
    config: WorkerConfig,
    /// Jobs this worker holds: id → claim, for releasing them at shutdown.
    held: Arc<Mutex<HashMap<Uuid, Uuid>>>,
}

impl<R: JobRunner> Worker<R> {
    pub fn new(db: Db, runner: Arc<R>, config: WorkerConfig) -> Self {
        Self {
            db,
            runner,
            config,
            held: Arc::default(),
        }
    }

    /// Runs until `stop` resolves, then shuts down as described above.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let db = self.db.clone();
        let lease_ms = self.config.lease.as_millis() as i64;
        let mut running: JoinSet<()> = JoinSet::new();
        let mut last_reclaim: Option<Instant> = None;
        tracing::info!(concurrency = self.config.concurrency, "worker started");
        loop {
            if last_reclaim.is_none_or(|at| at.elapsed() >= RECLAIM_EVERY) {
                last_reclaim = Some(Instant::now());
                match in_background(jobs::reclaim_expired(&db)).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(jobs = n, "reclaimed jobs whose worker stopped answering");
                        metrics::counter!("jobs_lease_expired_total").increment(n);
                    }
                    Err(err) => tracing::warn!(error = %err, "reclaiming expired leases failed"),
                }
            }
            let free = self.config.concurrency.saturating_sub(running.len());
            let mut pause = self.config.poll;
            if free > 0 {
                match in_background(jobs::claim(&db, free as u32, lease_ms)).await {
                    Ok(claimed) => {
                        let full = claimed.len() == free;
                        for job in claimed {
                            self.start(&mut running, job);
                        }
                        if full {
                            // There may be more waiting: claim again once a slot frees.
                            pause = Duration::ZERO;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming jobs failed");
                        metrics::counter!("jobs_claim_errors_total").increment(1);
                        pause = CLAIM_ERROR_PAUSE;
                    }
                }
            }
            if pause.is_zero() && running.len() < self.config.concurrency {
                continue;
            }
            tokio::select! {
                () = &mut stop => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        self.shut_down(running).await;
    }

    fn start(&self, running: &mut JoinSet<()>, job: JobRow) {
        let Some(claim) = job.claim else {
            return;
        };
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id, claim);
        let db = self.db.clone();
        let runner = self.runner.clone();
        let config = self.config.clone();
        let held = self.held.clone();
        running.spawn(async move {
            let work = run_one(&db, &*runner, &config, &job, claim);
            traced(&job, in_background(work)).await;
            held.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job.id);
        });
    }

    async fn shut_down(self, mut running: JoinSet<()>) {
        tracing::info!(running = running.len(), "worker stopping: no new claims");
        let drained = tokio::time::timeout(self.config.shutdown_timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            let held: Vec<(Uuid, Uuid)> = self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            for (id, claim) in held {
                let released =
                    jobs::release(&self.db, id, claim, now_ms(), "released at shutdown").await;
                tracing::warn!(job = %id, ?released, "released an unfinished job at shutdown");
            }
        }
        tracing::info!("worker stopped");
    }
}

/// Runs `work` (one job) inside a span naming the job, its co-op and the
/// trace id of the request that queued it, so every line logged while it runs
/// carries them; jobs it queues in turn inherit the trace id.
async fn traced<F: Future<Output = ()>>(job: &JobRow, work: F) {
    let span = tracing::info_span!(
        "job",
        job = %job.id,
        kind = %job.kind,
        coop_id = %job.coop_id,
        trace_id = job.trace_id.as_deref().unwrap_or(""),
    );
    let started = Instant::now();
    let work = async {
        work.await;
        tracing::info!(
            attempt = job.attempts,
            duration_ms = started.elapsed().as_micros() as f64 / 1000.0,
            "job ran"
        );
    };
    match job.trace_id.clone() {
        Some(trace_id) => coop_runtime::trace_context::scope(trace_id, work.instrument(span)).await,
        None => work.instrument(span).await,
    }
}

/// Runs one claimed job with a heartbeat and records the outcome.
async fn run_one<R: JobRunner>(
    db: &Db,
    runner: &R,
    config: &WorkerConfig,
    job: &JobRow,
    claim: Uuid,
) {
    let lease_ms = config.lease.as_millis() as i64;
    let started = Instant::now();
    let heartbeat = async {
        let mut every = tokio::time::interval(config.lease / 3);
        every.tick().await;
        loop {
            every.tick().await;
            match jobs::heartbeat(db, job.id, claim, lease_ms).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job = %job.id, "lost the lease on a running job");
                    std::future::pending::<()>().await;
                }
                Err(err) => tracing::warn!(job = %job.id, error = %err, "heartbeat failed"),
            }
        }
    };
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(RUN_TIMEOUT, runner.run(job)) => outcome
            .unwrap_or_else(|_| Outcome::Retry(format!("did not finish within {RUN_TIMEOUT:?}"))),
        _ = heartbeat => unreachable_heartbeat(),
    };
    let kind = job.kind.clone();
    metrics::histogram!("job_run_seconds", "kind" => kind.clone(), "outcome" => outcome.label())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("job_attempts_total", "kind" => kind.clone(), "outcome" => outcome.label())
        .increment(1);
    let recorded = match &outcome {
        Outcome::Done => jobs::complete(db, job.id, claim).await,
        Outcome::Removed => Ok(true),
        Outcome::Retry(error) if job.attempts < job.max_attempts => {
            let delay = backoff(
                job.attempts as u32,
                config.retry_base,
                config.retry_max,
                rand::thread_rng().r#gen::<f64>(),
            );
            tracing::info!(job = %job.id, kind, attempt = job.attempts, ?delay, error, "job failed; will retry");
            jobs::fail(
                db,
                job.id,
                claim,
                error,
                Some(now_ms() + delay.as_millis() as i64),
            )
            .await
        }
        Outcome::Retry(error) | Outcome::Dead(error) => {
            tracing::error!(job = %job.id, kind, attempts = job.attempts, error, "job is dead");
            metrics::counter!("jobs_dead_total", "kind" => kind.clone()).increment(1);
            jobs::fail(db, job.id, claim, error, None).await
        }
        Outcome::Deferred { until, reason } => {
            let wait = until.saturating_duration_since(Instant::now());
            jobs::release(
                db,
                job.id,
                claim,
                now_ms() + wait.as_millis() as i64,
                reason,
            )
            .await
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = %job.id, "job was reclaimed by another worker before it finished")
        }
        // The lease will expire and the job run again; its effects are idempotent.
        Err(err) => {
            tracing::warn!(job = %job.id, error = %err, "could not record the job's outcome")
        }
    }
}

fn unreachable_heartbeat() -> Outcome {
    Outcome::Retry("heartbeat ended".into())
}

/// Runs specific jobs right now in this process (the `COOP_JOBS_INLINE`
/// benchmark variant): claims each by id and runs it like a worker would.
pub async fn run_now<R: JobRunner>(db: &Db, runner: &R, config: &WorkerConfig, ids: &[Uuid]) {
    let lease_ms = config.lease.as_millis() as i64;
    for id in ids {
        match jobs::claim_one(db, *id, lease_ms).await {
            Ok(Some(job)) => {
                if let Some(claim) = job.claim {
                    traced(&job, run_one(db, runner, config, &job, claim)).await;
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(job = %id, error = %err, "could not claim job to run inline")
            }
        }
    }
}
