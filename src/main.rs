use clap::{Parser, Subcommand};

/// A request allocates and frees many small buffers (headers, JSON, labels);
/// profiling a cached read put glibc's malloc and free at about 15 % of all
/// CPU. mimalloc's thread-local free lists make that cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use coop::config::Config;
use coop::startup::{Application, run_worker, shutdown_signal};
use coop::store::Db;
use coop::telemetry;

/// Coop: the co-op platform. With no command, serves HTTP.
#[derive(Parser)]
#[command(name = "coop", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(Config),
    /// Apply database migrations and exit.
    Migrate(Config),
    /// Run background jobs (email, calendar, payments) until SIGTERM.
    Worker(Config),
    /// Run nginx, instances and workers on this host, with an auto-scaler.
    Cluster(coop::cluster::ClusterCli),
    /// Replay a traffic trace through the auto-scaler against a capacity model,
    /// and chart it.
    Simulate(coop::autoscale::sim::SimulateArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.config).await,
        Some(Command::Serve(config)) => serve(config).await,
        Some(Command::Migrate(config)) => migrate(config).await,
        Some(Command::Worker(config)) => {
            telemetry::init(config.log);
            run_worker(config, shutdown_signal()).await
        }
        Some(Command::Cluster(cli)) => {
            telemetry::init(coop::config::LogFormat::Pretty);
            coop::cluster::run(cli).await
        }
        Some(Command::Simulate(args)) => coop::autoscale::sim::run(args),
    };
    if let Err(err) = result {
        eprintln!("coop: {err:#}");
        std::process::exit(1);
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log);
    let shutdown = shutdown_signal();
    let tier = config.tier();
    let app = Application::build(config).await?;
    tracing::info!(
        address = %app.address(),
        instance = %app.state().instance_id,
        tier,
        "Coop is serving: open http://{}/",
        app.address()
    );
    app.run_until_stopped(shutdown).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    tracing::info!(backend = db.backend(), "migrations applied");
    Ok(())
}
