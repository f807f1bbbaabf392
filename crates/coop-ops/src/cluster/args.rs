//! `coop cluster`'s settings, from flags and `COOP_CLUSTER_*` variables: those
//! of the cluster itself (`coop cluster [start]`) and the address of a running
//! cluster's control API (`coop cluster status` / `restart`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use coop_runtime::values::parse_duration;

use crate::autoscale::ScalingArgs;

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// Address of the running cluster's control API.
    #[arg(
        long = "control",
        env = "COOP_CLUSTER_CONTROL",
        default_value = "127.0.0.1:8090"
    )]
    pub control: SocketAddr,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The cluster's token (its COOP_METRICS_TOKEN). Unset: read from
    /// `control.token` in the cluster's folder, which only its account can.
    #[arg(long = "token", env = "COOP_METRICS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The running cluster's folder (its `--state-dir`), for its token.
    #[arg(
        long = "state-dir",
        env = "COOP_CLUSTER_DIR",
        default_value = "./coop-cluster"
    )]
    pub state_dir: PathBuf,
}

/// The file in the cluster's folder that holds its token (mode 0600).
pub const TOKEN_FILE: &str = "control.token";

impl ControlArgs {
    /// The token to send: as given, or the running cluster's.
    pub fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(token.to_owned());
        }
        let path = self.state_dir.join(TOKEN_FILE);
        std::fs::read_to_string(&path)
            .map(|token| token.trim().to_owned())
            .map_err(|err| {
                anyhow::anyhow!(
                    "could not read the cluster's token from {} ({err}): give the cluster's \
                     folder with --state-dir (COOP_CLUSTER_DIR), or its token with --token \
                     (COOP_METRICS_TOKEN)",
                    path.display()
                )
            })
    }
}

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Where nginx listens: the address clients use.
    #[arg(
        long = "listen",
        env = "COOP_CLUSTER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Address of the control API (`coop cluster status` / `restart`).
    #[arg(
        long = "control",
        env = "COOP_CLUSTER_CONTROL",
        default_value = "127.0.0.1:8090"
    )]
    pub control: SocketAddr,

    /// `coop serve` instances to start with (the auto-scaler moves it within its bounds).
    #[arg(
        long = "instances",
        env = "COOP_CLUSTER_INSTANCES",
        default_value_t = 2
    )]
    pub instances: u32,

    /// `coop worker` processes to start with.
    #[arg(long = "workers", env = "COOP_CLUSTER_WORKERS", default_value_t = 1)]
    pub workers: u32,

    /// Cap each instance at this many CPUs (cgroup CFS quota), e.g. 0.25, to
    /// emulate many small servers on one host. Unset: no cap.
    #[arg(long = "instance-cpu", env = "COOP_CLUSTER_INSTANCE_CPU", value_parser = parse_cpus)]
    pub instance_cpu: Option<f64>,

    /// Turn the auto-scaler off (instance and worker counts stay as started).
    #[arg(long = "no-autoscale", env = "COOP_CLUSTER_NO_AUTOSCALE")]
    pub no_autoscale: bool,

    /// Folder for nginx's configuration, cache and logs, and the processes' logs.
    #[arg(
        long = "state-dir",
        env = "COOP_CLUSTER_DIR",
        default_value = "./coop-cluster"
    )]
    pub state_dir: PathBuf,

    /// The nginx binary. Unset: `nginx` on PATH, then /usr/sbin/nginx.
    #[arg(long = "nginx", env = "COOP_NGINX")]
    pub nginx: Option<PathBuf>,

    /// nginx worker processes (`auto` = one per CPU).
    #[arg(
        long = "nginx-workers",
        env = "COOP_CLUSTER_NGINX_WORKERS",
        default_value = "auto"
    )]
    pub nginx_workers: String,

    /// Write nginx's access log (off by default: it costs throughput).
    #[arg(long = "access-log", env = "COOP_CLUSTER_ACCESS_LOG")]
    pub access_log: bool,

    /// How long an instance may take to answer `/ready` after it starts.
    #[arg(long = "start-timeout", env = "COOP_CLUSTER_START_TIMEOUT",
          default_value = "60s", value_parser = parse_duration)]
    pub start_timeout: std::time::Duration,

    /// PostgreSQL primary (required: the cluster shares one database).
    #[arg(
        long = "database-url",
        env = "COOP_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Redis (required: sessions, cache and invalidations are shared).
    #[arg(long = "redis-url", env = "COOP_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// The bearer token the members ask of whoever scrapes their `/metrics`
    /// (given to them as COOP_METRICS_TOKEN; the auto-scaler sends it), and
    /// the control API of whoever calls it. Set it to scrape with your own
    /// Prometheus too; otherwise each run makes up one of its own. Either
    /// way it is written to `control.token` in the cluster's folder (0600),
    /// where `coop cluster status` and `restart` find it.
    #[arg(
        long = "metrics-token",
        env = "COOP_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    #[command(flatten)]
    pub scaling: ScalingArgs,
}

fn parse_cpus(raw: &str) -> Result<f64, String> {
    let cpus: f64 = raw
        .parse()
        .map_err(|_| format!("`{raw}` is not a number of CPUs, e.g. 0.25"))?;
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(format!("{cpus} CPUs is out of range (0.01 to 1024)"));
    }
    Ok(cpus)
}

impl ClusterArgs {
    /// The distributed tier's URLs, or a message that says what to set.
    pub(super) fn distributed_tier(&self) -> anyhow::Result<(String, String)> {
        let database = self
            .database_url
            .clone()
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        let redis = self
            .redis_url
            .clone()
            .filter(|u| u.starts_with("redis://") || u.starts_with("rediss://"));
        match (database, redis) {
            (Some(database), Some(redis)) => Ok((database, redis)),
            _ => bail!(
                "coop cluster runs the distributed tier only: instances behind a load balancer \
                 must share one database and one cache, which the embedded tier (a SQLite file, \
                 an in-process cache) cannot. Set COOP_DATABASE_URL=postgres://… and \
                 COOP_REDIS_URL=redis://… (or --database-url / --redis-url)"
            ),
        }
    }
}
