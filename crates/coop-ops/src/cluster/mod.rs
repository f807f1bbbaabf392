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

mod args;
mod cgroup;
mod child_process;
mod control;
mod member;
mod nginx;
mod observe;
mod supervisor;

use anyhow::Context;
use clap::{Args, Subcommand};

pub use args::{ClusterArgs, ControlArgs};
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
    // The control API serves the supervisor's state; wiring it here keeps the
    // supervisor from depending on the module that depends on it.
    supervisor::run(settings, coop_runtime::shutdown_signal(), control::serve).await
}
