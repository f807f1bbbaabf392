//! The tests' SMTP sink (tests/api/smtp_sink.rs) as a process, for
//! bench/jobs.sh: it accepts every message on the given loopback address and,
//! when stopped, reports what it received.
//!
//!     cargo build --release --example smtp_sink
//!     target/release/examples/smtp_sink 127.0.0.1:2525
//!
//! Prints `listening 127.0.0.1:2525` once the port is open (port 0 picks a free
//! one, and the line names it), then nothing until SIGTERM or SIGINT, when it
//! prints `{"messages":N,"unique_message_ids":M}` on one line and exits 0.
//! Messages beyond unique Message-IDs were delivered more than once.

// The test module carries helpers this process does not call; allowing dead
// code here keeps the module itself free of allows for the tests' sake.
#[allow(dead_code)]
#[path = "../tests/api/smtp_sink.rs"]
mod smtp_sink;

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2525".to_owned());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("smtp_sink: {arg:?} is not an address like 127.0.0.1:2525: {err}");
            return ExitCode::from(2);
        }
    };
    if !addr.ip().is_loopback() {
        // A test server: it accepts anything from anyone, so it stays on loopback.
        eprintln!("smtp_sink: {addr} is not a loopback address");
        return ExitCode::from(2);
    }
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
    // Stopped first, so nothing arrives between the two counts.
    sink.shutdown().await;
    let (messages, unique) = (sink.count(), sink.unique_message_ids());
    println!(
        "{}",
        serde_json::json!({ "messages": messages, "unique_message_ids": unique })
    );
    ExitCode::SUCCESS
}
