//! Replays a traffic trace against a real `coop cluster`, at compressed time,
//! and writes the same timeline CSV as `coop simulate` (so `coop simulate
//! --render` draws both alike). Used by `bench/replay.sh`.
//!
//! Open loop: requests are started at the trace's rate whatever the answers'
//! speed (a closed loop would slow down with the server and hide overload);
//! requests beyond `--max-in-flight` are counted as failed, as a client timing
//! out would. Each row covers one `--interval` of real time: offered and served
//! requests/s, p95 of the requests answered in it, and what the cluster's
//! control API reports (instances, CPU, the scaler's last decision).
//!
//!   cargo run --release --example replay_trace -- --trace deploy/traces/growth.csv \
//!     --from 1209600 --to 1296000 --speed 240 --url http://127.0.0.1:8080 \
//!     --control http://127.0.0.1:8090 --ids ids.txt --cookie coop_session=… --out timeline.csv

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use coop_ops::autoscale::timeline::{TimelineMeta, TimelineRow, write_timeline};
use coop_ops::autoscale::trace::Trace;
use rand::Rng;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// Trace CSV (`seconds,requests_per_second`).
    #[arg(long)]
    trace: PathBuf,
    /// Start of the slice of the trace to replay, in trace seconds.
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    /// End of the slice (default: the end of the trace).
    #[arg(long)]
    to: Option<f64>,
    /// Trace seconds per real second.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Multiplies the trace's rates (to fit the machine).
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// nginx in front of the cluster.
    #[arg(long)]
    url: String,
    /// The cluster's control API.
    #[arg(long)]
    control: String,
    /// Family ids, one per line.
    #[arg(long)]
    ids: PathBuf,
    /// Cookie header value (`coop_session=…`).
    #[arg(long)]
    cookie: String,
    /// Real seconds per timeline row.
    #[arg(long, default_value = "1")]
    interval: f64,
    /// Requests allowed in flight; more are counted as failed.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: u64,
    #[arg(long)]
    out: PathBuf,
    /// The chart's title.
    #[arg(long, default_value = "coop cluster replaying a trace")]
    title: String,
}

#[derive(Default)]
struct Interval {
    offered: u64,
    served: u64,
    failed: u64,
    latencies: Vec<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trace = Trace::read(&args.trace)?;
    let to = args.to.unwrap_or_else(|| trace.end());
    let ids: Vec<String> = std::fs::read_to_string(&args.ids)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!ids.is_empty(), "no ids in {}", args.ids.display());
    let ids = Arc::new(ids);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(args.max_in_flight)?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let current = Arc::new(Mutex::new(Interval::default()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let real_length = (to - args.from) / args.speed;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut next_row = args.interval;
    let mut owed = 0.0;
    // When the newest serve decision was made (so each is reported once).
    let mut last_decision: Option<f64> = None;
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    eprintln!(
        "replaying trace seconds {}..{} in {real_length:.0} s of real time",
        args.from, to
    );
    loop {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now.duration_since(started).as_secs_f64();
        if elapsed >= real_length {
            break;
        }
        let rate = trace.rate_at(args.from + elapsed * args.speed) * args.rate_scale;
        owed += rate * now.duration_since(last).as_secs_f64();
        last = now;
        while owed >= 1.0 {
            owed -= 1.0;
            current.lock().unwrap().offered += 1;
            if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                current.lock().unwrap().failed += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (http, ids, current, in_flight) = (
                http.clone(),
                ids.clone(),
                current.clone(),
                in_flight.clone(),
            );
            let url = format!(
                "{}/api/v1/families/{}",
                args.url,
                ids[rand::thread_rng().gen_range(0..ids.len())]
            );
            let cookie = args.cookie.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let ok = matches!(
                    http.get(url).header("cookie", cookie).send().await,
                    Ok(r) if r.status().is_success()
                );
                let took = sent.elapsed().as_secs_f64();
                let mut interval = current.lock().unwrap();
                if ok {
                    interval.served += 1;
                    interval.latencies.push(took);
                } else {
                    interval.failed += 1;
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if elapsed >= next_row {
            let done = std::mem::take(&mut *current.lock().unwrap());
            let status = cluster_status(&http, &args.control).await;
            rows.push(row(
                elapsed,
                args.interval,
                done,
                status.as_ref(),
                &mut last_decision,
            ));
            if let Some(r) = rows.last() {
                eprintln!(
                    "t={:>5.0}s offered={:>6.0}/s served={:>6.0}/s p95={:>7} instances={:?} decision={:?}",
                    r.seconds,
                    r.offered_rps.unwrap_or(0.0),
                    r.served_rps.unwrap_or(0.0),
                    r.p95_seconds
                        .map_or("-".into(), |p| format!("{:.1}ms", p * 1000.0)),
                    r.instances,
                    r.decision
                );
            }
            next_row += args.interval;
        }
    }
    let meta = TimelineMeta {
        title: Some(args.title.clone()),
        // The cluster's default targets (bench/replay.sh does not change them).
        target_p95_seconds: Some(0.5),
        target_cpu: Some(0.7),
    };
    write_timeline(&args.out, &rows, &meta)?;
    let failed: u64 = rows
        .iter()
        .map(|r| {
            ((r.offered_rps.unwrap_or(0.0) - r.served_rps.unwrap_or(0.0)) * args.interval).max(0.0)
                as u64
        })
        .sum();
    eprintln!(
        "wrote {} rows to {}; about {failed} requests not served",
        rows.len(),
        args.out.display()
    );
    Ok(())
}

async fn cluster_status(http: &reqwest::Client, control: &str) -> Option<Value> {
    http.get(format!("{control}/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// One timeline row. `instances` and `desired` follow `coop simulate`: the
/// count the scaler saw and what it decided, from the newest decision not yet
/// reported (none in this interval: the cluster's current count, no decision).
fn row(
    at: f64,
    interval: f64,
    mut done: Interval,
    status: Option<&Value>,
    last_decision: &mut Option<f64>,
) -> TimelineRow {
    done.latencies.sort_by(f64::total_cmp);
    let p95 = (!done.latencies.is_empty()).then(|| {
        let rank = ((done.latencies.len() as f64) * 0.95).ceil() as usize;
        done.latencies[rank.clamp(1, done.latencies.len()) - 1]
    });
    let running: Vec<&Value> = status
        .and_then(|s| s["instances"].as_array())
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "running")
        .collect();
    let cpus: Vec<f64> = running
        .iter()
        .filter_map(|m| m["load"]["cpu"].as_f64())
        .collect();
    let decision = status
        .and_then(|s| s["decisions"].as_array())
        .and_then(|d| d.iter().find(|d| d["pool"] == "serve"))
        .filter(|d| d["at"].as_f64() != *last_decision);
    if let Some(d) = decision {
        *last_decision = d["at"].as_f64();
    }
    let count = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    TimelineRow {
        seconds: at,
        offered_rps: Some(done.offered as f64 / interval),
        served_rps: Some(done.served as f64 / interval),
        instances: decision
            .and_then(|d| count(&d["current"]))
            .or_else(|| status.and_then(|s| count(&s["desired"]["instances"]))),
        ready_instances: status.map(|_| running.len() as u32),
        cpu: (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64),
        p95_seconds: p95,
        desired: decision.and_then(|d| count(&d["desired"])),
        decision: decision.and_then(|d| d["reason"]["kind"].as_str().map(str::to_owned)),
    }
}
