//! The tests' SMTP sink (tests/api/support/fakes/smtp_sink.rs) as a process, for
//! bench/jobs.sh: it accepts every message on the given loopback address and,
//! when stopped, reports what it received.
//!
//!     cargo build --release --example smtp_sink
//!     target/release/examples/smtp_sink 127.0.0.1:2525 [--message-ids FILE]
//!
//! Prints `listening 127.0.0.1:2525` once the port is open (port 0 picks a free
//! one, and the line names it), then nothing until SIGTERM or SIGINT, when it
//! prints `{"messages":N,"unique_message_ids":M}` on one line and exits 0.
//! Messages beyond unique Message-IDs were delivered more than once. With
//! `--message-ids FILE` it also writes every message's Message-ID to FILE, one
//! per line in arrival order (`-` for a message without one), so a caller can
//! find the same email delivered by two sinks.

// The test module carries helpers this process does not call; allowing dead
// code here keeps the module itself free of allows for the tests' sake.
#[allow(dead_code)]
#[path = "../tests/api/support/fakes/smtp_sink.rs"]
mod smtp_sink;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: smtp_sink [127.0.0.1:PORT] [--message-ids FILE]";

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, ids_out) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("smtp_sink: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("smtp_sink: cannot handle signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut sink = match smtp_sink::SmtpSink::start_on(addr).await {
        Ok(sink) => sink,
        Err(err) => {
            eprintln!("smtp_sink: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening {}", sink.addr());
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    // Stopped first, so nothing arrives between the counts and the list.
    sink.shutdown().await;
    let mails = sink.messages();
    let unique = sink.unique_message_ids();
    if let Some(path) = ids_out
        && let Err(err) = write_ids(&path, &mails)
    {
        eprintln!("smtp_sink: cannot write {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        serde_json::json!({ "messages": mails.len(), "unique_message_ids": unique })
    );
    ExitCode::SUCCESS
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
) -> Result<(SocketAddr, Option<PathBuf>), String> {
    let mut addr = None;
    let mut ids_out = None;
    while let Some(arg) = args.next() {
        if arg == "--message-ids" {
            let path = args.next().ok_or("--message-ids needs a file")?;
            ids_out = Some(PathBuf::from(path));
        } else if addr.is_none() {
            let parsed: SocketAddr = arg
                .parse()
                .map_err(|err| format!("{arg:?} is not an address like 127.0.0.1:2525: {err}"))?;
            addr = Some(parsed);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2525)));
    if !addr.ip().is_loopback() {
        // A test server: it accepts anything from anyone, so it stays on loopback.
        return Err(format!("{addr} is not a loopback address"));
    }
    Ok((addr, ids_out))
}

fn write_ids(path: &std::path::Path, mails: &[smtp_sink::ReceivedMail]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for mail in mails {
        writeln!(out, "{}", mail.message_id.as_deref().unwrap_or("-"))?;
    }
    out.flush()
}
