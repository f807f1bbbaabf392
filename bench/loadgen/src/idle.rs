//! `idle`: opens N keep-alive connections and holds them, for measuring what
//! an open idle connection costs the server (bench/users.sh reads the
//! server's RSS meanwhile). With `--request PATH` each connection first
//! sends one GET and reads its answer, so the server's per-connection
//! buffers have been used once; without it the connections never send a
//! byte.
//!
//! Prints `ready N` on stdout once all N are open (and answered), and how
//! long opening them took (`open_ms p50 … p99 … max … over_1s N`: with
//! `--concurrency` as large as `--connections`, a burst, the connections
//! whose SYN the server's full accept queue dropped take a second or more),
//! then holds them for `--hold` seconds or until stdin closes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::check_loopback;
use crate::util::{Result, fail};

#[derive(Args)]
pub struct IdleArgs {
    /// The server's base URL: http://127.0.0.1:PORT.
    #[arg(long)]
    base: String,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Send one `GET PATH` on each connection first (e.g. /health).
    #[arg(long)]
    request: Option<String>,
    /// Connections opened at once (the rest wait their turn).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds to hold the connections once ready.
    #[arg(long, default_value_t = 60)]
    hold: u64,
}

/// Reads one response (head, then a Content-Length body).
async fn read_answer(stream: &mut TcpStream) -> Result<u16> {
    let mut data = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return fail("closed before an answer");
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
    }
}

/// Opens one connection (and makes its request): the stream, and how long
/// that took in microseconds.
async fn open(address: String, request: Option<String>) -> Result<(TcpStream, u64)> {
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(&address).await?;
    stream.set_nodelay(true)?;
    if let Some(path) = request {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let status = read_answer(&mut stream).await?;
        if status != 200 {
            return fail(format!("GET {path}: {status}"));
        }
    }
    Ok((stream, started.elapsed().as_micros() as u64))
}

pub async fn idle(args: IdleArgs) -> Result<ExitCode> {
    let base = check_loopback(&args.base)?;
    let address = base.trim_start_matches("http://").to_owned();
    let mut held = Vec::with_capacity(args.connections);
    let mut took = Vec::with_capacity(args.connections);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while held.len() < args.connections {
        while next < args.connections && pending.len() < args.concurrency.max(1) {
            pending.spawn(open(address.clone(), args.request.clone()));
            next += 1;
        }
        match pending.join_next().await {
            Some(done) => {
                let (stream, micros) = done??;
                held.push(stream);
                took.push(micros);
            }
            None => break,
        }
    }
    println!("ready {}", held.len());
    // Time to open each connection (and answer its request): a SYN the
    // server's full accept queue dropped shows as a second or more.
    took.sort_unstable();
    let at =
        |q: f64| took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)));
    let ms = |v: Option<&u64>| v.map_or(0.0, |&us| us as f64 / 1000.0);
    println!(
        "open_ms p50 {:.1} p99 {:.1} max {:.1} over_1s {}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(took.last()),
        took.iter().filter(|&&us| us >= 1_000_000).count()
    );
    let stdin_closed = async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    };
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.hold)) => {}
        () = stdin_closed => {}
    }
    // Still open at the end? A server that closed them early would make the
    // figures meaningless.
    let mut closed = 0;
    for stream in &held {
        let mut probe = [0u8; 1];
        if let Ok(0) = stream.try_read(&mut probe) {
            closed += 1;
        }
    }
    println!("closed_by_server {closed}");
    Ok(ExitCode::SUCCESS)
}
