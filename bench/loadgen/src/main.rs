//! Open-loop load generator for Coop's enrollment-day benchmark
//! (bench/enrollment-day.sh, issue 13).
//!
//!     coop-loadgen seed --base http://127.0.0.1:PORT --smtp-listen 127.0.0.1:PORT --out state.json
//!     coop-loadgen run  --base http://127.0.0.1:PORT --state state.json --rate 20 --duration 30
//!
//! `seed` creates a co-op, a semester with its classes, and the families through
//! the HTTP API; it is also the SMTP server Coop sends the welcome emails to, so
//! each family accepts its own invite (a real account and session) and adds its
//! children with that session.
//!
//! `run` replays registration opening: families arrive at a constant rate (open
//! loop), each reads the catalog and enrolls its children, while a second
//! constant-rate stream of catalog reads stands for families browsing. Every
//! request has an intended send time fixed in advance; its latency is counted
//! from that time, not from when it could actually be sent, so a slow server
//! cannot hide its queueing (no coordinated omission).
//!
//! Only 127.0.0.1 is ever contacted; runs are bounded in requests and time.

mod http;
mod run;
mod seed;
mod smtp;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coop-loadgen",
    about = "Open-loop load for the enrollment-day benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the co-op, semester, classes, families (with sessions) and children.
    Seed(seed::SeedArgs),
    /// Drive registration day open-loop against a seeded Coop.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Seed(_) => 2,
        Command::Run(args) => args.threads.max(1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("coop-loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Seed(args) => seed::seed(args).await,
            Command::Run(args) => run::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("coop-loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}
