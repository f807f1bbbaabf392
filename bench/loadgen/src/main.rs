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
//!     coop-loadgen users --base http://127.0.0.1:PORT --state state.json --users 10000 --duration 20
//!
//! `users` is a normal day rather than registration opening: N people at once,
//! each with its own session and keep-alive connection, one request per
//! think time (bench/users.sh, issue 19).
//!
//! Only 127.0.0.1 is ever contacted; runs are bounded in requests and time.

mod http;
mod idle;
mod run;
mod seed;
mod smtp;
mod users;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coop-loadgen",
    about = "Open-loop load for the enrollment-day and concurrent-users benchmarks"
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
    /// N users at once, each with its own session and connection, open-loop.
    Users(users::UsersArgs),
    /// Open N keep-alive connections and hold them (server memory per connection).
    Idle(idle::IdleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Seed(_) => 2,
        Command::Run(args) => args.threads.max(1),
        Command::Users(args) => args.threads.max(1),
        Command::Idle(_) => 1,
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
            Command::Users(args) => users::users(args).await,
            Command::Idle(args) => idle::idle(args).await,
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
