//! One typed configuration, filled from flags and `COOP_*` environment variables.
//! Every value is checked here, at start, so a typo stops the process with a
//! message naming the variable instead of surfacing later as a strange failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to serve on.
    #[arg(long = "listen", env = "COOP_LISTEN", value_name = "COOP_LISTEN",
          default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Folder for the embedded tier's SQLite database.
    #[arg(
        long = "data-dir",
        env = "COOP_DATA_DIR",
        value_name = "COOP_DATA_DIR",
        default_value = "./coop-data"
    )]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…` (the primary). Default: SQLite in the data dir.
    #[arg(long = "database-url", env = "COOP_DATABASE_URL", value_name = "COOP_DATABASE_URL",
          value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,

    /// Streaming replicas to read from, comma-separated `postgres://…` URLs.
    #[arg(long = "replica-urls", env = "COOP_REPLICA_URLS", value_name = "COOP_REPLICA_URLS",
          value_delimiter = ',', value_parser = parse_replica_url)]
    pub replica_urls: Vec<String>,

    /// A replica further behind the primary than this is taken out of the read set.
    #[arg(long = "max-replica-lag", env = "COOP_MAX_REPLICA_LAG", value_name = "COOP_MAX_REPLICA_LAG",
          default_value = "5s", value_parser = parse_duration)]
    pub max_replica_lag: Duration,

    /// How reads follow a client's own writes: `lsn` (replicas that have replayed
    /// the write) or `sticky` (the primary for COOP_MAX_REPLICA_LAG after a
    /// write: the common simpler rule, kept to measure `lsn` against).
    #[arg(
        long = "read-your-writes",
        env = "COOP_READ_YOUR_WRITES",
        value_name = "COOP_READ_YOUR_WRITES",
        default_value = "lsn"
    )]
    pub read_your_writes: ReadYourWrites,

    /// Longest a single SQL statement may run (PostgreSQL `statement_timeout`).
    #[arg(long = "db-statement-timeout", env = "COOP_DB_STATEMENT_TIMEOUT",
          value_name = "COOP_DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// `redis://…`: when set, sessions live in Redis so any instance can serve any user.
    #[arg(long = "redis-url", env = "COOP_REDIS_URL", value_name = "COOP_REDIS_URL",
          value_parser = parse_redis_url)]
    pub redis_url: Option<String>,

    /// Name reported by `/health` and in metrics. Default: host:port.
    #[arg(
        long = "instance-id",
        env = "COOP_INSTANCE_ID",
        value_name = "COOP_INSTANCE_ID"
    )]
    pub instance_id: Option<String>,

    /// Log format.
    #[arg(
        long = "log",
        env = "COOP_LOG",
        value_name = "COOP_LOG",
        default_value = "pretty"
    )]
    pub log: LogFormat,

    /// Connections in the database pool (per instance).
    #[arg(long = "db-pool-size", env = "COOP_DB_POOL_SIZE", value_name = "COOP_DB_POOL_SIZE",
          default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// How long a request waits for a pooled connection before answering 503.
    #[arg(long = "db-acquire-timeout", env = "COOP_DB_ACQUIRE_TIMEOUT",
          value_name = "COOP_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Session lifetime.
    #[arg(long = "session-ttl", env = "COOP_SESSION_TTL", value_name = "COOP_SESSION_TTL",
          default_value = "7d", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// Mark the session cookie `Secure` (set when TLS terminates in front of Coop).
    #[arg(long = "secure-cookies", env = "COOP_SECURE_COOKIES", value_name = "COOP_SECURE_COOKIES",
          default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub secure_cookies: bool,

    /// `on` or `off`: the two-tier read cache (off is for benchmarks and debugging).
    #[arg(long = "cache", env = "COOP_CACHE", value_name = "COOP_CACHE",
          default_value = "on", value_parser = parse_bool)]
    pub cache: bool,

    /// Lifetime of a cached value in Redis (L2); each entry gets ±10 % jitter so
    /// entries written together do not expire together.
    #[arg(long = "cache-ttl", env = "COOP_CACHE_TTL", value_name = "COOP_CACHE_TTL",
          default_value = "300s", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Lifetime of a value in the in-process cache (L1): the bound on staleness
    /// should an invalidation ever be lost without the subscription noticing.
    #[arg(long = "cache-l1-ttl", env = "COOP_CACHE_L1_TTL", value_name = "COOP_CACHE_L1_TTL",
          default_value = "30s", value_parser = parse_duration)]
    pub cache_l1_ttl: Duration,

    /// Most entries the in-process cache holds.
    #[arg(long = "cache-l1-max-entries", env = "COOP_CACHE_L1_MAX_ENTRIES",
          value_name = "COOP_CACHE_L1_MAX_ENTRIES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_l1_max_entries: u64,

    /// Most bytes of values the in-process cache holds.
    #[arg(long = "cache-l1-max-bytes", env = "COOP_CACHE_L1_MAX_BYTES",
          value_name = "COOP_CACHE_L1_MAX_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub cache_l1_max_bytes: u64,

    /// How long a reader waits for another instance that holds the fill lease
    /// before querying the database itself.
    #[arg(long = "cache-lease-wait", env = "COOP_CACHE_LEASE_WAIT",
          value_name = "COOP_CACHE_LEASE_WAIT", default_value = "200ms", value_parser = parse_duration)]
    pub cache_lease_wait: Duration,

    /// Fault injection: pause between reading the database and filling the cache,
    /// to make the stale-set race reproducible in tests. Leave at 0 in production.
    #[arg(long = "cache-fill-delay", env = "COOP_CACHE_FILL_DELAY",
          value_name = "COOP_CACHE_FILL_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub cache_fill_delay: Duration,

    /// Longest a request may run; past it the request is answered 503 and its
    /// work abandoned (rolled back unless it had committed). It bounds how long
    /// an Idempotency-Key reservation can be held by a live request.
    #[arg(long = "request-timeout", env = "COOP_REQUEST_TIMEOUT",
          value_name = "COOP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an in-flight Idempotency-Key reservation belongs to its request;
    /// after that a repeat takes it over (its instance is presumed dead). Must
    /// exceed COOP_REQUEST_TIMEOUT. Default: COOP_REQUEST_TIMEOUT + 5s.
    #[arg(long = "idempotency-lease", env = "COOP_IDEMPOTENCY_LEASE",
          value_name = "COOP_IDEMPOTENCY_LEASE", value_parser = parse_duration)]
    pub idempotency_lease: Option<Duration>,

    /// Fault injection: pause between a keyed POST's work and the saving of its
    /// response, so tests can kill an instance in between. Leave at 0 in production.
    #[arg(long = "idempotency-save-delay", env = "COOP_IDEMPOTENCY_SAVE_DELAY",
          value_name = "COOP_IDEMPOTENCY_SAVE_DELAY", default_value = "0s",
          value_parser = parse_duration)]
    pub idempotency_save_delay: Duration,

    /// After SIGTERM, keep serving (with `/ready` at 503) this long so load balancers
    /// notice before the listener closes.
    #[arg(long = "drain-delay", env = "COOP_DRAIN_DELAY", value_name = "COOP_DRAIN_DELAY",
          default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// `smtp://HOST:PORT` (or `smtps://USER:PASS@HOST`) for outgoing email. Unset:
    /// emails are written as `.eml` files to `COOP_DATA_DIR/outbox`.
    #[arg(long = "smtp-url", env = "COOP_SMTP_URL", value_name = "COOP_SMTP_URL",
          value_parser = parse_smtp_url)]
    pub smtp_url: Option<String>,

    /// Sender of every email Coop sends.
    #[arg(long = "mail-from", env = "COOP_MAIL_FROM", value_name = "COOP_MAIL_FROM",
          default_value = "Coop <no-reply@coop.localhost>", value_parser = parse_mailbox)]
    pub mail_from: String,

    /// The address people use to reach Coop, for links in emails. Default: the
    /// listen address.
    #[arg(long = "public-url", env = "COOP_PUBLIC_URL", value_name = "COOP_PUBLIC_URL",
          value_parser = parse_http_url)]
    pub public_url: Option<String>,

    /// The payment provider's API base URL (`POST {url}/charges`). Unset: payments
    /// are refused with a message saying so.
    #[arg(long = "payments-url", env = "COOP_PAYMENTS_URL", value_name = "COOP_PAYMENTS_URL",
          value_parser = parse_http_url)]
    pub payments_url: Option<String>,

    /// Longest wait for one answer from the SMTP server or the payment provider.
    #[arg(long = "provider-timeout", env = "COOP_PROVIDER_TIMEOUT",
          value_name = "COOP_PROVIDER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub provider_timeout: Duration,

    /// How long an invite link in a welcome email stays valid.
    #[arg(long = "invite-ttl", env = "COOP_INVITE_TTL", value_name = "COOP_INVITE_TTL",
          default_value = "7d", value_parser = parse_duration)]
    pub invite_ttl: Duration,

    /// Run background jobs inside `coop serve`. Default: on for SQLite (the
    /// embedded tier has no separate workers), off for PostgreSQL (run `coop worker`).
    #[arg(long = "run-jobs", env = "COOP_RUN_JOBS", value_name = "COOP_RUN_JOBS",
          action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub run_jobs: Option<bool>,

    /// Benchmark variant: run an enrollment's jobs before answering the request
    /// (as if there were no queue). Off in production.
    #[arg(long = "jobs-inline", env = "COOP_JOBS_INLINE", value_name = "COOP_JOBS_INLINE",
          default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub jobs_inline: bool,

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

    #[arg(long = "job-retry-max", env = "COOP_JOB_RETRY_MAX",
          value_name = "COOP_JOB_RETRY_MAX", default_value = "15m", value_parser = parse_duration)]
    pub job_retry_max: Duration,

    /// Circuit breakers (one per provider): failures count over this window...
    #[arg(long = "breaker-window", env = "COOP_BREAKER_WINDOW",
          value_name = "COOP_BREAKER_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub breaker_window: Duration,

    /// ...once it holds at least this many calls...
    #[arg(long = "breaker-min-calls", env = "COOP_BREAKER_MIN_CALLS",
          value_name = "COOP_BREAKER_MIN_CALLS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_min_calls: u32,

    /// ...and the breaker opens when this share of them failed (0–1)...
    #[arg(long = "breaker-failure-rate", env = "COOP_BREAKER_FAILURE_RATE",
          value_name = "COOP_BREAKER_FAILURE_RATE", default_value = "0.5",
          value_parser = parse_fraction)]
    pub breaker_failure_rate: f64,

    /// ...stays open this long, making no calls...
    #[arg(long = "breaker-open-for", env = "COOP_BREAKER_OPEN_FOR",
          value_name = "COOP_BREAKER_OPEN_FOR", default_value = "15s", value_parser = parse_duration)]
    pub breaker_open_for: Duration,

    /// ...then lets this many probe calls through: all succeed → closed, one fails → open.
    #[arg(long = "breaker-half-open-probes", env = "COOP_BREAKER_HALF_OPEN_PROBES",
          value_name = "COOP_BREAKER_HALF_OPEN_PROBES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_half_open_probes: u32,

    /// Longest wait for in-flight requests to finish at shutdown.
    #[arg(long = "shutdown-timeout", env = "COOP_SHUTDOWN_TIMEOUT",
          value_name = "COOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Default lease beyond the request timeout: room for clock differences between
/// instances (each compares its own clock with a lease another one wrote).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadYourWrites {
    Lsn,
    Sticky,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl Config {
    /// The database to use: the configured URL, or the embedded SQLite file.
    pub fn database(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| {
            DatabaseUrl::Sqlite(format!(
                "sqlite://{}",
                self.data_dir.join("coop.sqlite3").display()
            ))
        })
    }

    pub fn tier(&self) -> &'static str {
        match self.database() {
            DatabaseUrl::Sqlite(_) => "embedded (SQLite)",
            DatabaseUrl::Postgres(_) if self.redis_url.is_some() => {
                "distributed (PostgreSQL + Redis)"
            }
            DatabaseUrl::Postgres(_) => "PostgreSQL (no Redis: caching off)",
        }
    }

    /// Whether `coop serve` runs the job queue itself.
    pub fn serve_runs_jobs(&self) -> bool {
        self.run_jobs
            .unwrap_or(matches!(self.database(), DatabaseUrl::Sqlite(_)))
    }

    /// See `idempotency_lease`: the lease outlasts any live request, so a
    /// reservation whose lease passed belongs to a request that is gone.
    pub fn idempotency_lease(&self) -> Duration {
        self.idempotency_lease
            .unwrap_or(self.request_timeout + LEASE_MARGIN)
    }

    /// Checks the settings that constrain each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.idempotency_lease() <= self.request_timeout {
            return Err(format!(
                "COOP_IDEMPOTENCY_LEASE ({:?}) must be longer than COOP_REQUEST_TIMEOUT ({:?}): \
                 a request still running must never lose its Idempotency-Key to a repeat",
                self.idempotency_lease(),
                self.request_timeout
            ));
        }
        Ok(())
    }

    pub fn breaker(&self) -> crate::resilience::breaker::BreakerConfig {
        crate::resilience::breaker::BreakerConfig {
            window: self.breaker_window,
            min_calls: self.breaker_min_calls,
            failure_rate: self.breaker_failure_rate,
            open_for: self.breaker_open_for,
            half_open_probes: self.breaker_half_open_probes,
        }
    }

    pub fn instance_id(&self, bound: SocketAddr) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    std::fs::read_to_string("/etc/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| bound.ip().to_string());
            format!("{host}:{}", bound.port())
        })
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("COOP_LISTEN expects address:port such as 127.0.0.1:8080, got {value:?}")
    })
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    if value.starts_with("sqlite:") {
        Ok(DatabaseUrl::Sqlite(value.to_owned()))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(value.to_owned()))
    } else {
        Err(format!(
            "COOP_DATABASE_URL expects sqlite://PATH or postgres://USER@HOST:PORT/DB, got {value:?}"
        ))
    }
}

fn parse_replica_url(value: &str) -> Result<String, String> {
    match parse_database_url(value.trim()) {
        Ok(DatabaseUrl::Postgres(url)) => Ok(url),
        _ => Err(format!(
            "COOP_REPLICA_URLS expects comma-separated postgres://USER@HOST:PORT/DB URLs, got {value:?}"
        )),
    }
}

fn parse_redis_url(value: &str) -> Result<String, String> {
    if (value.starts_with("redis://") || value.starts_with("rediss://"))
        && redis::Client::open(value).is_ok()
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "COOP_REDIS_URL expects redis://HOST:PORT[/DB], got {value:?}"
        ))
    }
}

fn parse_smtp_url(value: &str) -> Result<String, String> {
    if value.starts_with("smtp://") || value.starts_with("smtps://") {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "COOP_SMTP_URL expects smtp://HOST:PORT or smtps://USER:PASSWORD@HOST, got {value:?}"
        ))
    }
}

fn parse_http_url(value: &str) -> Result<String, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "expected an http:// or https:// URL, got {value:?}"
        ))
    }
}

fn parse_mailbox(value: &str) -> Result<String, String> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| value.to_owned())
        .map_err(|_| format!("COOP_MAIL_FROM expects `Name <address@host>`, got {value:?}"))
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) && f > 0.0 => Ok(f),
        _ => Err(format!(
            "expected a fraction above 0 and at most 1, got {value:?}"
        )),
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
}

/// Durations as `500ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let expected =
        || format!("expected a duration such as 500ms, 30s, 5m, 2h or 7d, got {value:?}");
    let number: u64 = number.parse().map_err(|_| expected())?;
    let millis = match unit {
        "ms" => number,
        "" | "s" => number.saturating_mul(1_000),
        "m" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        "d" => number.saturating_mul(86_400_000),
        _ => return Err(expected()),
    };
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn database_urls_must_name_a_known_backend() {
        assert!(matches!(
            parse_database_url("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            parse_database_url("sqlite://x.db"),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        let err = parse_database_url("mysql://h/db").unwrap_err();
        assert!(err.contains("COOP_DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_idempotency_lease_outlasts_the_request_timeout() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("coop").chain(args.iter().copied()),
            )
            .unwrap()
            .config
        };
        let default = parse(&["--request-timeout", "20s"]);
        assert_eq!(default.idempotency_lease(), Duration::from_secs(25));
        assert!(default.validate().is_ok());
        let too_short = parse(&["--request-timeout", "20s", "--idempotency-lease", "20s"]);
        let err = too_short.validate().unwrap_err();
        assert!(err.contains("COOP_IDEMPOTENCY_LEASE"), "{err}");
    }

    #[test]
    fn bad_listen_address_names_the_variable() {
        let err = parse_listen("localhost").unwrap_err();
        assert!(err.contains("COOP_LISTEN"), "{err}");
    }
}
