//! One typed configuration, filled from flags and `COOP_*` environment
//! variables, in sections: each mechanism is given only its own. Every value is
//! checked here, at start, so a typo stops the process with a message naming
//! the variable instead of surfacing later as a strange failure. Values that
//! may hold secrets (URLs with passwords) are never printed, neither by
//! `--help` nor in errors.
//!
//! Fault injection and benchmark variants are not settings: see `knobs`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use coop_mechanisms::cache::CacheSettings;
use coop_mechanisms::hashing::HashingSettings;
use coop_mechanisms::jobs::JobSettings;
use coop_mechanisms::objects::ObjectStoreSettings;
use coop_mechanisms::providers::ProviderSettings;
use coop_mechanisms::rate_limit::RateLimitSettings;
use coop_mechanisms::shared_state::RedisSettings;
use coop_mechanisms::store::{DatabaseSettings, DatabaseUrl};
use coop_runtime::telemetry::LogFormat;
use coop_runtime::values::{parse_bool, parse_duration};
use coop_services::{AccountSettings, DocumentSettings};

use crate::http::client_ip::TrustedProxies;
use crate::http::scrape::MetricsToken;
use crate::http::serve::ConnectionLimits;

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten, next_help_heading = "HTTP server")]
    pub http: HttpSettings,
    #[command(flatten, next_help_heading = "Database")]
    pub database: DatabaseSettings,
    #[command(flatten, next_help_heading = "Shared state (Redis)")]
    pub redis: RedisSettings,
    #[command(flatten, next_help_heading = "Cache")]
    pub cache: CacheSettings,
    #[command(flatten, next_help_heading = "Accounts and sessions")]
    pub accounts: AccountSettings,
    #[command(flatten, next_help_heading = "Abuse protection")]
    pub rate_limits: RateLimitSettings,
    #[command(flatten, next_help_heading = "Abuse protection")]
    pub hashing: HashingSettings,
    #[command(flatten, next_help_heading = "Background jobs")]
    pub jobs: JobSettings,
    #[command(flatten, next_help_heading = "Email and payments")]
    pub providers: ProviderSettings,
    #[command(flatten, next_help_heading = "Documents")]
    pub objects: ObjectStoreSettings,
    #[command(flatten, next_help_heading = "Documents")]
    pub documents: DocumentSettings,
}

#[derive(Debug, Clone, Args)]
pub struct HttpSettings {
    /// Address and port to serve on.
    #[arg(long = "listen", env = "COOP_LISTEN", value_name = "COOP_LISTEN",
          default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

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

    /// A connection must send a complete request head within this long of
    /// its first byte (of opening, for a new connection), or it is closed.
    #[arg(long = "header-read-timeout", env = "COOP_HEADER_READ_TIMEOUT",
          value_name = "COOP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A keep-alive connection with no request running and nothing sent or
    /// received for this long is closed. Longer than the upstream keepalive
    /// timeout of the nginx config (60 s), so nginx, not Coop, closes idle
    /// upstream connections: otherwise a request sent as Coop closes the
    /// connection fails, and nginx does not retry a POST.
    #[arg(long = "idle-timeout", env = "COOP_IDLE_TIMEOUT", value_name = "COOP_IDLE_TIMEOUT",
          default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most connections served at once; past it new ones wait in the
    /// listen backlog. Keep it under the open-file limit (`ulimit -n`).
    #[arg(long = "max-connections", env = "COOP_MAX_CONNECTIONS",
          value_name = "COOP_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The listen backlog: connections the kernel holds for Coop to accept.
    /// Too small, and a burst of new connections (thousands of users at once)
    /// has SYNs dropped and retried after 1 s. Capped by the kernel at
    /// `net.core.somaxconn` (a warning at start says so).
    #[arg(long = "listen-backlog", env = "COOP_LISTEN_BACKLOG",
          value_name = "COOP_LISTEN_BACKLOG", default_value_t = crate::http::listener::DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub listen_backlog: u32,

    /// Also serve `/metrics` on this separate address, for Prometheus: keep
    /// it private (loopback, or a port only the scraper reaches). Without it
    /// and without COOP_METRICS_TOKEN, `/metrics` answers 404.
    #[arg(long = "metrics-listen", env = "COOP_METRICS_LISTEN",
          value_name = "COOP_METRICS_LISTEN", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve `/metrics` on COOP_LISTEN to requests with `Authorization: Bearer
    /// <token>`; when set, COOP_METRICS_LISTEN and the worker's listener ask
    /// for it too. At least 16 characters.
    #[arg(long = "metrics-token", env = "COOP_METRICS_TOKEN", value_name = "COOP_METRICS_TOKEN",
          hide_env_values = true, value_parser = MetricsToken::parse)]
    pub metrics_token: Option<MetricsToken>,

    /// Proxies (addresses or networks, comma-separated) whose
    /// `X-Forwarded-For` names the client, for per-address rate limits.
    /// Anyone else's is ignored. `coop cluster` sets it for its nginx.
    #[arg(long = "trusted-proxies", env = "COOP_TRUSTED_PROXIES",
          value_name = "COOP_TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,

    /// Cookies `Secure`, the session's named `__Host-coop_session` (TLS in
    /// front of Coop). Default: on, except when listening on a loopback
    /// address only (a laptop over plain HTTP); `false` for plain HTTP
    /// elsewhere (a test network), `true` to insist.
    #[arg(long = "secure-cookies", env = "COOP_SECURE_COOKIES", value_name = "COOP_SECURE_COOKIES",
          action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub secure_cookies_setting: Option<bool>,

    /// After SIGTERM, keep serving (with `/ready` at 503) this long, so load
    /// balancers notice before the listener closes.
    #[arg(long = "drain-delay", env = "COOP_DRAIN_DELAY", value_name = "COOP_DRAIN_DELAY",
          default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Longest wait for in-flight requests (and, for a worker, running jobs) to
    /// finish at shutdown.
    #[arg(long = "shutdown-timeout", env = "COOP_SHUTDOWN_TIMEOUT",
          value_name = "COOP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How often this instance samples its own metrics for the operations
    /// page (kept for the last hour in memory).
    #[arg(long = "operations-sample-every", env = "COOP_OPERATIONS_SAMPLE_EVERY",
          value_name = "COOP_OPERATIONS_SAMPLE_EVERY", default_value = "5s",
          value_parser = parse_sample_every)]
    pub operations_sample_every: Duration,

    /// Other instances (base URLs, comma-separated, e.g.
    /// `http://10.0.0.2:8080`) whose samples the operations page merges with
    /// this instance's; each is asked with the operator's own session.
    #[arg(long = "operations-peers", env = "COOP_OPERATIONS_PEERS",
          value_name = "COOP_OPERATIONS_PEERS", default_value = "", value_parser = parse_peers)]
    pub operations_peers: Peers,

    /// The control API of the `coop cluster` this instance belongs to (it
    /// sets this): the operations page asks it, with COOP_METRICS_TOKEN, for
    /// the other instances and the auto-scaler's decisions.
    #[arg(
        long = "cluster-control",
        env = "COOP_CLUSTER_CONTROL",
        value_name = "COOP_CLUSTER_CONTROL"
    )]
    pub cluster_control: Option<SocketAddr>,
}

/// Base URLs of the other instances, for the operations page.
#[derive(Debug, Clone, Default)]
pub struct Peers(pub Vec<String>);

fn parse_peers(raw: &str) -> Result<Peers, String> {
    let mut peers = Vec::new();
    for peer in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !(peer.starts_with("http://") || peer.starts_with("https://")) {
            return Err(format!("{peer:?} is not an http:// or https:// base URL"));
        }
        peers.push(peer.trim_end_matches('/').to_owned());
    }
    Ok(Peers(peers))
}

/// Between 1 s and 5 min: a finer sampling would cost more than it shows, and
/// a coarser one would leave an hour's chart nearly empty.
fn parse_sample_every(raw: &str) -> Result<Duration, String> {
    let every = parse_duration(raw)?;
    if every < Duration::from_secs(1) || every > Duration::from_secs(300) {
        return Err(format!("{raw:?} must be between 1s and 5m"));
    }
    Ok(every)
}

impl HttpSettings {
    /// Whether cookies are `Secure` (see COOP_SECURE_COOKIES): as set, or
    /// on unless Coop listens on a loopback address only.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies_setting
            .unwrap_or_else(|| !self.listen.ip().is_loopback())
    }

    /// The listener's limits, for `http::serve`.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections as usize,
            park_idle: true,
        }
    }
}

/// Default lease beyond the request timeout: room for clock differences between
/// instances (each compares its own clock with a lease another one wrote).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

impl Config {
    pub fn tier(&self) -> &'static str {
        match self.database.database() {
            DatabaseUrl::Sqlite(_) => "embedded (SQLite)",
            DatabaseUrl::Postgres(_) if self.redis.redis_url.is_some() => {
                "distributed (PostgreSQL + Redis)"
            }
            DatabaseUrl::Postgres(_) => "PostgreSQL (no Redis: caching off)",
        }
    }

    /// Whether `coop serve` runs the job queue itself.
    pub fn serve_runs_jobs(&self) -> bool {
        self.jobs.run_jobs.unwrap_or(self.database.is_embedded())
    }

    /// See `idempotency_lease`: the lease outlasts any live request, so a
    /// reservation whose lease passed belongs to a request that is gone.
    pub fn idempotency_lease(&self) -> Duration {
        self.http
            .idempotency_lease
            .unwrap_or(self.http.request_timeout + LEASE_MARGIN)
    }

    /// Checks the settings that constrain each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.idempotency_lease() <= self.http.request_timeout {
            return Err(format!(
                "COOP_IDEMPOTENCY_LEASE ({:?}) must be longer than COOP_REQUEST_TIMEOUT ({:?}): \
                 a request still running must never lose its Idempotency-Key to a repeat",
                self.idempotency_lease(),
                self.http.request_timeout
            ));
        }
        self.objects.validate()?;
        self.documents.validate()?;
        Ok(())
    }

    pub fn instance_id(&self, bound: SocketAddr) -> String {
        self.http.instance_id.clone().unwrap_or_else(|| {
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

fn parse_metrics_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("COOP_METRICS_LISTEN expects address:port such as 127.0.0.1:9090, got {value:?}")
    })
}

#[cfg(test)]
mod secure_cookie_tests {
    use super::*;

    fn settings(args: &[&str]) -> HttpSettings {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            http: HttpSettings,
        }
        let argv = std::iter::once("coop").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().http
    }

    #[test]
    fn cookies_are_secure_unless_listening_on_loopback_only() {
        assert!(!settings(&[]).secure_cookies(), "the laptop default");
        assert!(!settings(&["--listen", "[::1]:8080"]).secure_cookies());
        assert!(settings(&["--listen", "0.0.0.0:8080"]).secure_cookies());
        assert!(settings(&["--listen", "10.0.0.5:8080"]).secure_cookies());
        assert!(
            !settings(&["--listen", "0.0.0.0:8080", "--secure-cookies", "false"]).secure_cookies(),
            "plain HTTP elsewhere, when asked"
        );
        assert!(settings(&["--secure-cookies", "true"]).secure_cookies());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(std::iter::once("coop").chain(args.iter().copied()))
            .map(|cli| cli.config)
    }

    #[test]
    fn the_idempotency_lease_outlasts_the_request_timeout() {
        let default = parse(&["--request-timeout", "20s"]).unwrap();
        assert_eq!(default.idempotency_lease(), Duration::from_secs(25));
        assert!(default.validate().is_ok());
        let too_short = parse(&["--request-timeout", "20s", "--idempotency-lease", "20s"]).unwrap();
        let err = too_short.validate().unwrap_err();
        assert!(err.contains("COOP_IDEMPOTENCY_LEASE"), "{err}");
    }

    #[test]
    fn bad_listen_address_names_the_variable() {
        let err = parse_listen("localhost").unwrap_err();
        assert!(err.contains("COOP_LISTEN"), "{err}");
    }

    #[test]
    fn help_groups_settings_and_shows_no_secret() {
        // SAFETY (edition 2024): tests in this module do not read the
        // environment concurrently with this write.
        unsafe { std::env::set_var("COOP_DATABASE_URL", "postgres://coop:hunter2@db/coop") };
        unsafe { std::env::set_var("COOP_METRICS_TOKEN", "hunter2-metrics-token") };
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        unsafe { std::env::remove_var("COOP_DATABASE_URL") };
        unsafe { std::env::remove_var("COOP_METRICS_TOKEN") };
        assert!(!help.contains("hunter2"), "{help}");
        for heading in ["HTTP server", "Database", "Cache", "Background jobs"] {
            assert!(help.contains(heading), "no {heading} section in\n{help}");
        }
        for knob in [
            "fill-delay",
            "save-delay",
            "jobs-inline",
            "read-your-writes",
        ] {
            assert!(!help.contains(knob), "{knob} is a test knob, not a setting");
        }
    }
}
