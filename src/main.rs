//! `coop`: the one binary. Serving HTTP, running background jobs, migrating,
//! and the operations tools are subcommands of the same executable; only the
//! configuration differs between a laptop and many machines.

use clap::{Args, Parser, Subcommand};

/// A request allocates and frees many small buffers (headers, JSON, labels);
/// profiling a cached read put glibc's malloc and free at about 15 % of all
/// CPU. mimalloc's thread-local free lists make that cheaper. It is built
/// with `no_thp` (transparent huge pages off for the process): with THP on
/// (`always` on many Linux hosts) its arenas were backed by 2 MiB pages and
/// the peak RSS through bench/writes.sh went from about 50 MiB to 62–69 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use coop_runtime::shutdown_signal;
use coop_runtime::telemetry::{self, LogFormat};
use coop_web::config::Config;
use coop_web::knobs::TestKnobs;
use coop_web::startup::{Application, add_operator, migrate, run_worker};

/// Coop: the co-op platform. With no command, serves HTTP.
#[derive(Parser)]
#[command(name = "coop", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// `coop serve`: the configuration, and the embedded tier's scheduled backups
/// (run beside the server by this binary, which alone links both the web
/// application and the ops tools).
#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: Config,
    #[command(flatten, next_help_heading = "Backups (embedded tier)")]
    backups: coop_ops::backup::schedule::ScheduleArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(Config),
    /// Run background jobs (email, calendar, payments) until SIGTERM.
    Worker(Config),
    /// Run nginx, instances and workers on this host, with an auto-scaler.
    Cluster(coop_ops::ClusterCli),
    /// Replay a traffic trace through the auto-scaler against a capacity model,
    /// and chart it.
    Simulate(coop_ops::SimulateArgs),
    /// Copy every co-op's data from SQLite to PostgreSQL (or back): resumable,
    /// verified; nothing may be serving from the source meanwhile.
    Transfer(coop_ops::TransferArgs),
    /// Take a consistent backup while Coop serves (SQLite VACUUM INTO and the
    /// data dir's files, or pg_dump).
    Backup(coop_ops::BackupArgs),
    /// Restore a backup into a fresh data dir or an empty PostgreSQL database.
    Restore(coop_ops::RestoreArgs),
    /// Platform operators: accounts outside every co-op that see the
    /// operations page.
    #[command(subcommand)]
    Operators(OperatorsCommand),
}

#[derive(Subcommand)]
enum OperatorsCommand {
    /// Add an operator (or give an existing one a new link) and print the
    /// one-time link that sets their password (valid 24 hours).
    Add {
        /// The operator's email address: their sign-in name. It must not be
        /// a co-op member's.
        email: String,
        #[command(flatten)]
        config: Config,
    },
}

#[tokio::main]
async fn main() {
    coop_runtime::files::create_private_files();
    let cli = parse_arguments();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate(config)) => {
            telemetry::init(config.http.log);
            migrate(&config)
                .await
                .map(|backend| tracing::info!(backend, "migrations applied"))
        }
        Some(Command::Worker(config)) => {
            telemetry::init(config.http.log);
            run_worker(config, shutdown_signal()).await
        }
        Some(Command::Cluster(cli)) => {
            telemetry::init(LogFormat::Pretty);
            coop_ops::run_cluster(cli).await
        }
        Some(Command::Simulate(args)) => coop_ops::run_simulate(args),
        Some(Command::Transfer(args)) => coop_ops::run_transfer(args).await,
        Some(Command::Backup(args)) => coop_ops::run_backup(args).await,
        Some(Command::Restore(args)) => coop_ops::run_restore(args).await,
        Some(Command::Operators(OperatorsCommand::Add { email, config })) => {
            telemetry::init(config.http.log);
            add_operator(&config, &email).await.map(|link| {
                println!("Operator {email} added. Their link to set a password (valid 24 hours):");
                println!("{link}");
            })
        }
    };
    if let Err(err) = result {
        eprintln!("coop: {err:#}");
        std::process::exit(1);
    }
}

/// The command line, or its error (or `--help`) printed with any URL's
/// password hidden: clap quotes the value it could not parse, and
/// `COOP_DATABASE_URL` may hold one.
fn parse_arguments() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let text = coop_runtime::values::redact_credentials(&err.render().to_string());
            if err.use_stderr() {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            std::process::exit(err.exit_code());
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs { config, backups } = args;
    telemetry::init(config.http.log);
    let shutdown = shutdown_signal();
    let tier = config.tier();
    let data_dir = config.database.data_dir.clone();
    let database_file = config.database.sqlite_file();
    let app = Application::build_with(config, knobs()?).await?;
    // The embedded tier backs itself up; the task ends with the process.
    if let Some(file) = database_file {
        tokio::spawn(coop_ops::backup::schedule::run(data_dir, file, backups));
    }
    tracing::info!(
        address = %app.address(),
        instance = %app.state().instance_id,
        tier,
        "Coop is serving: open http://{}/",
        app.address()
    );
    app.run_until_stopped(shutdown).await
}

/// Fault injection and benchmark variants, from the environment, only in a
/// build for tests and benchmarks (`--features test-knobs`).
fn knobs() -> anyhow::Result<TestKnobs> {
    #[cfg(feature = "test-knobs")]
    {
        TestKnobs::from_env().map_err(anyhow::Error::msg)
    }
    #[cfg(not(feature = "test-knobs"))]
    {
        Ok(TestKnobs::default())
    }
}
