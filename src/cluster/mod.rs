//! `coop cluster`: Coop scaled out on one host. nginx in front, N `coop serve`
//! instances and M `coop worker` processes behind it, an auto-scaler that adds
//! and removes them, and a small control API (`coop cluster status`,
//! `coop cluster restart`) on a separate port.
//!
//! Why our own supervisor rather than systemd or Kubernetes: on one host the
//! load balancer's upstream list must follow the processes exactly (add after
//! `/ready`, remove before SIGTERM), and the scaling rule must be the same code
//! the simulator replays. On many hosts, `deploy/k8s/` does the same with
//! Deployments and HPAs.

mod cgroup;
mod control;
mod member;
mod nginx;
mod observe;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::autoscale::ScalingArgs;
use crate::config::parse_duration;

pub use control::{print_status, request_restart};
pub use observe::LatencyHistogram;

/// `coop cluster [start|status|restart]`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClusterCli {
    #[command(subcommand)]
    pub command: Option<ClusterCommand>,
    #[command(flatten)]
    pub start: ClusterArgs,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Start nginx, the instances and the workers, and keep them running (the default).
    Start(Box<ClusterArgs>),
    /// Show the instances, their health and load, and the scaler's last decisions.
    Status(ControlArgs),
    /// Replace every instance and worker, one at a time, without failing a request.
    Restart(ControlArgs),
}

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
    #[arg(long = "database-url", env = "COOP_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis (required: sessions, cache and invalidations are shared).
    #[arg(long = "redis-url", env = "COOP_REDIS_URL")]
    pub redis_url: Option<String>,

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
    fn distributed_tier(&self) -> anyhow::Result<(String, String)> {
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

/// Runs `coop cluster …`.
pub async fn run(cli: ClusterCli) -> anyhow::Result<()> {
    match cli.command {
        None => start(cli.start).await,
        Some(ClusterCommand::Start(args)) => start(*args).await,
        Some(ClusterCommand::Status(args)) => print_status(&args).await,
        Some(ClusterCommand::Restart(args)) => request_restart(&args).await,
    }
}

async fn start(args: ClusterArgs) -> anyhow::Result<()> {
    let (database_url, redis_url) = args.distributed_tier()?;
    args.scaling.validate().map_err(anyhow::Error::msg)?;
    let nginx_bin = nginx::find_binary(args.nginx.as_deref())?;
    let coop_bin = std::env::current_exe().context("finding the coop binary")?;
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "could not create COOP_CLUSTER_DIR {}",
            args.state_dir.display()
        )
    })?;
    let state_dir = args
        .state_dir
        .canonicalize()
        .context("resolving COOP_CLUSTER_DIR")?;
    let settings = supervisor::Settings {
        coop_bin,
        nginx_bin,
        state_dir,
        database_url,
        redis_url,
        args,
    };
    supervisor::run(settings, crate::startup::shutdown_signal()).await
}
