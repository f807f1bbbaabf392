//! The background jobs section of the configuration.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use coop_runtime::values::{parse_bool, parse_duration};

#[derive(Debug, Clone, Args)]
pub struct JobSettings {
    /// Run background jobs inside `coop serve`. Default: on for SQLite (the
    /// embedded tier has no separate workers), off for PostgreSQL (run `coop worker`).
    #[arg(long = "run-jobs", env = "COOP_RUN_JOBS", value_name = "COOP_RUN_JOBS",
          action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub run_jobs: Option<bool>,

    /// Jobs one worker runs at the same time.
    #[arg(long = "worker-concurrency", env = "COOP_WORKER_CONCURRENCY",
          value_name = "COOP_WORKER_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub worker_concurrency: u32,

    /// Where `coop worker` serves `/health` and `/metrics` (port 0: any free port).
    #[arg(long = "worker-listen", env = "COOP_WORKER_LISTEN", value_name = "COOP_WORKER_LISTEN",
          default_value = "127.0.0.1:0", value_parser = parse_listen)]
    pub worker_listen: SocketAddr,

    /// A claimed job belongs to its worker this long unless the worker's
    /// heartbeat extends it; after that another worker may run it.
    #[arg(long = "job-lease", env = "COOP_JOB_LEASE", value_name = "COOP_JOB_LEASE",
          default_value = "30s", value_parser = parse_duration)]
    pub job_lease: Duration,

    /// How often an idle worker looks for new jobs.
    #[arg(long = "job-poll", env = "COOP_JOB_POLL", value_name = "COOP_JOB_POLL",
          default_value = "200ms", value_parser = parse_duration)]
    pub job_poll: Duration,

    /// Attempts before a job is moved to `dead`.
    #[arg(long = "job-max-attempts", env = "COOP_JOB_MAX_ATTEMPTS",
          value_name = "COOP_JOB_MAX_ATTEMPTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub job_max_attempts: u32,

    /// First retry delay; it doubles per attempt (with jitter) up to COOP_JOB_RETRY_MAX.
    #[arg(long = "job-retry-base", env = "COOP_JOB_RETRY_BASE",
          value_name = "COOP_JOB_RETRY_BASE", default_value = "2s", value_parser = parse_duration)]
    pub job_retry_base: Duration,

    /// Longest retry delay.
    #[arg(long = "job-retry-max", env = "COOP_JOB_RETRY_MAX",
          value_name = "COOP_JOB_RETRY_MAX", default_value = "15m", value_parser = parse_duration)]
    pub job_retry_max: Duration,
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("COOP_WORKER_LISTEN expects address:port such as 127.0.0.1:9100, got {value:?}")
    })
}
