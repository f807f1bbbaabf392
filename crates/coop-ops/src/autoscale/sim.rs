//! `coop simulate`: replays a traffic trace through the real [`Autoscaler`]
//! against a capacity model of `coop serve` instances, and writes a timeline and
//! a chart of what would have happened.
//!
//! ## The capacity model
//! Time advances in ticks of one second; the scaler decides every evaluation
//! interval (15 s) from readings averaged over that interval, as it would from
//! scraped metrics.
//!
//! * Offered load at a tick is the trace's rate, interpolated linearly between its
//!   rows, spread evenly over the *ready* instances (the load balancer's job).
//! * Each instance serves `capacity_rps` requests/s at 100 % CPU. With `r` ready
//!   instances, utilisation `ρ = offered / (r × capacity_rps)`; the CPU reading is
//!   `min(ρ, 1)`, averaged over the interval.
//! * Latency follows a processor-sharing queue (the same mean as M/M/1): the mean
//!   response time is `S / (1 − ρ)` for a request that takes `S`
//!   (`--service-time`, 20 ms) on an idle instance, exponentially distributed, so
//!   `p95 = ln 20 × S / (1 − ρ)` (60 ms idle, 200 ms at ρ = 0.7, 500 ms at
//!   ρ = 0.88). The interval's p95 is the 95th percentile of the mixture of its
//!   ticks, weighted by requests served. It is pessimistic for a multi-core
//!   instance (M/M/c stays flat longer), which suits a model that should not flatter
//!   the scaler.
//! * At `ρ ≥ 1` an instance serves its capacity and the rest is shed (counted as
//!   failed); the requests it serves wait the whole timeout (10 s), and p95 is
//!   that timeout. Latency is also capped at the timeout below saturation.
//! * A new instance takes `--startup` (20 s) before it takes traffic. A removed
//!   instance leaves at once: drained in the real cluster, it has stopped taking
//!   new requests before it goes. The youngest instance goes first, so an
//!   instance still starting is given up before one that serves.
//! * The scaler sees `current` = every instance (ready or starting), like
//!   `coop cluster`, which counts what it has started.
//!
//! The timeline it writes, and reads back for `--render`, is described in
//! [`super::timeline`]; the traffic trace it replays in [`super::trace`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coop_runtime::values::parse_duration;

use super::chart;
use super::timeline::{Summary, TimelineMeta, TimelineRow, read_timeline, write_timeline};
use super::trace::{self, Trace};
use super::{Action, Autoscaler, Decision, Policy, Reading, ScalingArgs, Signal};

/// Requests waiting longer than this have failed as far as the client knows;
/// p95 is capped here.
pub const TIMEOUT_SECONDS: f64 = 10.0;

/// `coop simulate`: replay a traffic trace through the auto-scaler.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Traffic trace: CSV with the header `seconds,requests_per_second`; `#`
    /// starts a comment line; the rate is interpolated linearly between rows.
    #[arg(value_name = "TRACE.csv",
          required_unless_present_any = ["render", "make_growth_trace"])]
    pub trace: Option<PathBuf>,

    /// Draw the chart of an existing timeline CSV (from `coop simulate
    /// --timeline`, or a replay against a real cluster) to --out, and exit.
    #[arg(
        long = "render",
        value_name = "TIMELINE.csv",
        conflicts_with = "trace",
        requires = "out"
    )]
    pub render: Option<PathBuf>,

    /// Write the growth story's traffic trace (month 1: 10 families … month 18:
    /// 5,000, plus an enrollment-day spike) to this file, and exit.
    #[arg(long = "make-growth-trace", value_name = "TRACE.csv",
          conflicts_with_all = ["trace", "render"])]
    pub make_growth_trace: Option<PathBuf>,

    /// How long each month's representative day lasts in the generated trace
    /// (shorter compresses time, e.g. 1h to replay 18 months in 18 hours).
    #[arg(long = "day-length", value_name = "DURATION", default_value = "1d",
          value_parser = parse_duration)]
    pub day_length: Duration,

    /// Write the timeline (one row per evaluation interval) to this CSV file.
    #[arg(long = "timeline", value_name = "TIMELINE.csv")]
    pub timeline: Option<PathBuf>,

    /// Write the chart (SVG) to this file.
    #[arg(long = "out", value_name = "CHART.svg")]
    pub out: Option<PathBuf>,

    /// The chart's title.
    #[arg(long = "title")]
    pub title: Option<String>,

    /// Chart only the intervals that end after this time since the start...
    #[arg(long = "chart-from", value_name = "DURATION", value_parser = parse_duration)]
    pub chart_from: Option<Duration>,

    /// ...and no later than this.
    #[arg(long = "chart-to", value_name = "DURATION", value_parser = parse_duration)]
    pub chart_to: Option<Duration>,

    /// Requests/s one instance serves at 100 % of its CPU allowance.
    #[arg(long = "capacity-rps", value_name = "RPS", default_value = "400",
          value_parser = parse_rate)]
    pub capacity_rps: f64,

    /// Time one request takes on an idle instance.
    #[arg(long = "service-time", value_name = "DURATION", default_value = "20ms",
          value_parser = parse_duration)]
    pub service_time: Duration,

    /// Time from starting an instance to its first request.
    #[arg(long = "startup", value_name = "DURATION", default_value = "20s",
          value_parser = parse_duration)]
    pub startup: Duration,

    /// Instances at the start. Default: --instances-min.
    #[arg(long = "initial", value_name = "N")]
    pub initial: Option<u32>,

    /// Print every scale-up and scale-down decision.
    #[arg(long = "decisions")]
    pub print_decisions: bool,

    #[command(flatten)]
    pub scaling: ScalingArgs,
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "expected requests per second above 0, got {value:?}"
        )),
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.make_growth_trace {
        let text = trace::growth_trace_csv(args.day_length);
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} ({} rows)",
            path.display(),
            text.lines().filter(|l| !l.starts_with('#')).count() - 1
        );
        return Ok(());
    }
    if let Some(path) = &args.render {
        let (rows, mut meta) = read_timeline(path)?;
        if let Some(title) = &args.title {
            meta.title = Some(title.clone());
        }
        meta.target_p95_seconds = meta
            .target_p95_seconds
            .or(Some(args.scaling.target_p95.as_secs_f64()));
        meta.target_cpu = meta.target_cpu.or(Some(args.scaling.target_cpu));
        let out = args.out.as_deref().context("--render needs --out")?;
        let rows = crop(rows, args.chart_from, args.chart_to);
        write_chart(out, &rows, &meta)?;
        println!("{}", Summary::of(&rows, meta.target_p95_seconds));
        return Ok(());
    }

    args.scaling.validate().map_err(anyhow::Error::msg)?;
    let trace_path = args.trace.as_deref().context("give a trace CSV")?;
    let trace = Trace::read(trace_path)?;
    let model = Model {
        capacity_rps: args.capacity_rps,
        service_time: args.service_time.as_secs_f64(),
        startup: args.startup,
    };
    let policy = args.scaling.serve_policy();
    let initial = args.initial.unwrap_or(policy.min);
    let sim = simulate(&trace, &model, policy, args.scaling.interval, initial);
    if args.print_decisions {
        for d in sim.decisions.iter().filter(|d| d.action() != Action::Hold) {
            println!("{d}");
        }
    }
    let meta = TimelineMeta {
        title: Some(args.title.clone().unwrap_or_else(|| {
            format!(
                "Auto-scaler replay of {}",
                trace_path.file_name().unwrap_or_default().to_string_lossy()
            )
        })),
        target_p95_seconds: Some(args.scaling.target_p95.as_secs_f64()),
        target_cpu: Some(args.scaling.target_cpu),
    };
    if let Some(path) = &args.timeline {
        write_timeline(path, &sim.rows, &meta)?;
    }
    if let Some(path) = &args.out {
        let rows = crop(sim.rows.clone(), args.chart_from, args.chart_to);
        write_chart(path, &rows, &meta)?;
    }
    println!("{}", Summary::of(&sim.rows, meta.target_p95_seconds));
    Ok(())
}

/// The rows whose interval ends in (from, to].
fn crop(rows: Vec<TimelineRow>, from: Option<Duration>, to: Option<Duration>) -> Vec<TimelineRow> {
    let from = from.map_or(f64::NEG_INFINITY, |d| d.as_secs_f64());
    let to = to.map_or(f64::INFINITY, |d| d.as_secs_f64());
    rows.into_iter()
        .filter(|r| r.seconds > from && r.seconds <= to)
        .collect()
}

fn write_chart(path: &Path, rows: &[TimelineRow], meta: &TimelineMeta) -> anyhow::Result<()> {
    let svg = chart::render_svg(rows, meta);
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// What one `coop serve` instance can do (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub capacity_rps: f64,
    /// Seconds one request takes on an idle instance.
    pub service_time: f64,
    pub startup: Duration,
}

/// How one tick's requests fared.
#[derive(Debug, Clone, Copy)]
struct Tick {
    offered: f64,
    served: f64,
    /// None when no instance was ready.
    cpu: Option<f64>,
    /// Mean latency of the served requests; None when they waited the timeout.
    mean_latency: Option<f64>,
}

impl Model {
    fn tick(&self, offered: f64, ready: u32) -> Tick {
        if ready == 0 {
            return Tick {
                offered,
                served: 0.0,
                cpu: None,
                mean_latency: None,
            };
        }
        let capacity = f64::from(ready) * self.capacity_rps;
        let rho = offered / capacity;
        if rho >= 1.0 {
            return Tick {
                offered,
                served: capacity,
                cpu: Some(1.0),
                mean_latency: None,
            };
        }
        Tick {
            offered,
            served: offered,
            cpu: Some(rho),
            mean_latency: Some(self.service_time / (1.0 - rho)),
        }
    }
}

/// The 95th percentile of a mixture of exponential latencies (weight, mean) and
/// requests that waited the timeout (mean None), capped at the timeout.
fn mixture_p95(ticks: &[Tick]) -> Option<f64> {
    let total: f64 = ticks.iter().map(|t| t.served).sum();
    if total <= 0.0 {
        return None;
    }
    // Share of requests slower than x (x below the timeout).
    let slower = |x: f64| {
        ticks
            .iter()
            .map(|t| match t.mean_latency {
                Some(mean) => t.served * (-x / mean).exp(),
                None => t.served,
            })
            .sum::<f64>()
            / total
    };
    if slower(TIMEOUT_SECONDS) > 0.05 {
        return Some(TIMEOUT_SECONDS);
    }
    let (mut lo, mut hi) = (0.0, TIMEOUT_SECONDS);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if slower(mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// A run of the model: one row and one decision per evaluation interval.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub rows: Vec<TimelineRow>,
    pub decisions: Vec<Decision>,
}

pub fn simulate(
    trace: &Trace,
    model: &Model,
    policy: Policy,
    interval: Duration,
    initial: u32,
) -> Simulation {
    let interval_s = interval.as_secs().max(1);
    let end = trace.end().ceil() as u64;
    let startup = model.startup.as_secs_f64();
    let mut scaler = Autoscaler::new("serve", policy);
    // When each instance is (or was) ready, in start order.
    let mut members: Vec<f64> = vec![0.0; initial as usize];
    let mut rows = Vec::new();
    let mut decisions = Vec::new();
    let mut ticks = Vec::with_capacity(interval_s as usize);

    let mut t = 0u64;
    while t < end {
        ticks.clear();
        let until = (t + interval_s).min(end);
        for second in t..until {
            let now = second as f64;
            let ready = members.iter().filter(|&&at| at <= now).count() as u32;
            ticks.push(model.tick(trace.rate_at(now + 0.5), ready));
        }
        t = until;
        let now = t as f64;

        let n = ticks.len() as f64;
        let offered = ticks.iter().map(|k| k.offered).sum::<f64>() / n;
        let served = ticks.iter().map(|k| k.served).sum::<f64>() / n;
        let cpus: Vec<f64> = ticks.iter().filter_map(|k| k.cpu).collect();
        let cpu = (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64);
        let p95 = mixture_p95(&ticks);

        let mut readings = Vec::with_capacity(2);
        if let Some(cpu) = cpu {
            readings.push(Reading::new(Signal::Cpu, cpu));
        }
        if let Some(p95) = p95 {
            readings.push(Reading::new(Signal::P95Latency, p95));
        }
        let current = members.len() as u32;
        let ready = members.iter().filter(|&&at| at <= now).count() as u32;
        let decision = scaler.decide(Duration::from_secs(t), current, &readings);
        rows.push(TimelineRow {
            seconds: now,
            offered_rps: Some(round(offered, 2)),
            served_rps: Some(round(served, 2)),
            instances: Some(current),
            ready_instances: Some(ready),
            cpu: cpu.map(|c| round(c, 4)),
            p95_seconds: p95.map(|p| round(p, 4)),
            desired: Some(decision.desired),
            decision: Some(decision.reason.label().to_owned()),
        });
        let desired = decision.desired as usize;
        if desired > members.len() {
            members.resize(desired, now + startup);
        } else {
            members.truncate(desired);
        }
        decisions.push(decision);
    }
    Simulation { rows, decisions }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::timeline::{parse_timeline, write_timeline_to};
    use crate::autoscale::trace::TracePoint;

    fn model() -> Model {
        Model {
            capacity_rps: 400.0,
            service_time: 0.020,
            startup: Duration::from_secs(20),
        }
    }

    fn trace(rows: &[(f64, f64)]) -> Trace {
        Trace::new(
            rows.iter()
                .map(|&(seconds, requests_per_second)| TracePoint {
                    seconds,
                    requests_per_second,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_model_follows_its_formulas() {
        let m = model();
        let idle = mixture_p95(&[m.tick(1.0, 1)]).unwrap();
        assert!((idle - 20f64.ln() * 0.020).abs() < 1e-3, "{idle}");
        // ρ = 0.7: ln 20 × 20 ms / 0.3 ≈ 200 ms.
        let at_70 = m.tick(560.0, 2);
        assert_eq!(at_70.cpu, Some(0.7));
        let p95 = mixture_p95(&[at_70]).unwrap();
        assert!((p95 - 0.1997).abs() < 1e-3, "{p95}");
        // Saturated: capacity served, the rest shed, p95 at the timeout.
        let over = m.tick(1000.0, 2);
        assert_eq!((over.served, over.cpu), (800.0, Some(1.0)));
        assert_eq!(mixture_p95(&[over]), Some(TIMEOUT_SECONDS));
        // No traffic: no p95 reading at all.
        assert_eq!(mixture_p95(&[m.tick(0.0, 2)]), None);
    }

    #[test]
    fn instances_rise_with_load_and_fall_a_window_after_it_drops() {
        // 100 rps for 10 min, 2,000 rps (5 instances' worth at 100 %) for 15 min,
        // then 100 rps again for 15 min.
        let t = trace(&[
            (0.0, 100.0),
            (600.0, 100.0),
            (601.0, 2000.0),
            (1500.0, 2000.0),
            (1501.0, 100.0),
            (2400.0, 100.0),
        ]);
        let sim = simulate(
            &t,
            &model(),
            Policy {
                max: 10,
                ..Policy::default()
            },
            Duration::from_secs(15),
            1,
        );
        let at = |s: f64| sim.rows.iter().find(|r| r.seconds >= s).unwrap();

        assert_eq!(at(600.0).instances, Some(1), "quiet start: one instance");
        // ceil(2000 / (400 × 0.7)) = 8 at the target CPU.
        let peak = sim.rows.iter().filter_map(|r| r.instances).max().unwrap();
        assert!((8..=10).contains(&peak), "peak {peak}");
        let high = at(1500.0);
        assert!(high.instances.unwrap() >= 8, "{high:?}");
        assert!(
            high.p95_seconds.unwrap() < 0.5,
            "caught up before the drop: {high:?}"
        );
        let first_up = sim.rows.iter().find(|r| r.desired > r.instances).unwrap();
        assert!(
            first_up.seconds <= 615.0,
            "reacts within one interval: {first_up:?}"
        );

        // Low load again from 1500 s: nothing goes before the window (300 s) is over...
        let first_down = sim
            .rows
            .iter()
            .find(|r| r.seconds > 1500.0 && r.desired < r.instances)
            .unwrap();
        assert!(first_down.seconds >= 1800.0, "{first_down:?}");
        assert!(first_down.seconds <= 1830.0, "{first_down:?}");
        // ...and by the end the pool is back at one instance.
        assert_eq!(sim.rows.last().unwrap().instances, Some(1));
        let summary = Summary::of(&sim.rows, Some(0.5));
        assert_eq!(summary.peak_instances, peak);
        assert!(
            summary.scale_ups >= 2 && summary.scale_downs >= 1,
            "{summary:?}"
        );
        assert!(
            summary.failed_requests > 0.0,
            "the step shed some requests while instances started"
        );
    }

    #[test]
    fn a_new_instance_serves_only_after_its_startup() {
        let t = trace(&[(0.0, 600.0), (120.0, 600.0)]);
        let sim = simulate(&t, &model(), Policy::default(), Duration::from_secs(15), 1);
        // 600 rps on one instance: saturated, p95 at the timeout asks for 20×,
        // and the step limit (+4) gives 5 at 15 s.
        assert_eq!(sim.rows[0].desired, Some(5));
        assert_eq!(
            sim.decisions[0].reason,
            super::super::Reason::ScaleUpLimited { proposed: 20 }
        );
        // At 30 s the new instances (started at 15 s, 20 s start-up) are not ready yet.
        assert_eq!(
            (sim.rows[1].instances, sim.rows[1].ready_instances),
            (Some(5), Some(1))
        );
        assert_eq!(sim.rows[2].ready_instances, Some(5));
        assert!(sim.rows[3].p95_seconds.unwrap() < 0.5, "{:?}", sim.rows[3]);
    }

    #[test]
    fn timelines_round_trip_and_tolerate_missing_columns() {
        let t = trace(&[(0.0, 100.0), (60.0, 100.0)]);
        let sim = simulate(&t, &model(), Policy::default(), Duration::from_secs(15), 1);
        let meta = TimelineMeta {
            title: Some("t".into()),
            target_p95_seconds: Some(0.5),
            target_cpu: Some(0.7),
        };
        let mut buf = Vec::new();
        write_timeline_to(&mut buf, &sim.rows, &meta).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("seconds,offered_rps,served_rps,instances,ready_instances,cpu,p95_seconds,desired,decision\n"),
            "{text}"
        );
        let (rows, read_meta) = parse_timeline(&text).unwrap();
        assert_eq!((rows, read_meta), (sim.rows, meta));

        // What a replay against a real cluster might write: fewer columns, gaps.
        let (rows, _) = parse_timeline("seconds,instances,p95_seconds\n15,2,\n30,3,0.2\n").unwrap();
        assert_eq!(rows[0].p95_seconds, None);
        assert_eq!(rows[1].instances, Some(3));
        assert_eq!(rows[1].offered_rps, None);
    }
}
