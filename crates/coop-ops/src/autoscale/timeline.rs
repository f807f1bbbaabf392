//! The timeline of an auto-scaler run, one row per evaluation interval: what
//! `coop simulate` writes, what a replay against a real cluster
//! (`examples/replay_trace.rs`) writes too, and what the chart is drawn from;
//! plus the [`Summary`] of a run, the numbers worth quoting about it.
//!
//! ## The timeline CSV (stable: the real-cluster replay writes it too)
//! `# key=value` comment lines carry metadata (`target_p95_seconds`,
//! `target_cpu`, `title`); then a header and one row per evaluation interval,
//! for the interval that *ends* at `seconds`:
//!
//! | column | meaning |
//! |---|---|
//! | `seconds` | end of the interval, from the start of the run |
//! | `offered_rps` | requests/s offered (mean over the interval) |
//! | `served_rps` | requests/s answered successfully |
//! | `instances` | instances the scaler saw (`current`), starting ones included |
//! | `ready_instances` | instances taking traffic at `seconds` |
//! | `cpu` | mean CPU over ready instances, fraction of each allowance |
//! | `p95_seconds` | p95 latency over the interval; empty with no request |
//! | `desired` | the scaler's decision |
//! | `decision` | its reason, `Reason::label` (`scale_up`, `stabilising`, …) |
//!
//! Every column but `seconds` may be empty (or absent) when unknown.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One evaluation interval of a timeline (see the module docs for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineRow {
    pub seconds: f64,
    #[serde(default)]
    pub offered_rps: Option<f64>,
    #[serde(default)]
    pub served_rps: Option<f64>,
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub ready_instances: Option<u32>,
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub p95_seconds: Option<f64>,
    #[serde(default)]
    pub desired: Option<u32>,
    #[serde(default)]
    pub decision: Option<String>,
}

/// The `# key=value` lines of a timeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimelineMeta {
    pub title: Option<String>,
    pub target_p95_seconds: Option<f64>,
    pub target_cpu: Option<f64>,
}

pub fn write_timeline(
    path: &Path,
    rows: &[TimelineRow],
    meta: &TimelineMeta,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write_timeline_to(&mut out, rows, meta)?;
    out.flush()?;
    Ok(())
}

pub fn write_timeline_to(
    out: &mut impl Write,
    rows: &[TimelineRow],
    meta: &TimelineMeta,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "# coop autoscale timeline: one row per evaluation interval, ending at `seconds`"
    )?;
    if let Some(title) = &meta.title {
        writeln!(out, "# title={}", title.replace('\n', " "))?;
    }
    if let Some(p95) = meta.target_p95_seconds {
        writeln!(out, "# target_p95_seconds={p95}")?;
    }
    if let Some(cpu) = meta.target_cpu {
        writeln!(out, "# target_cpu={cpu}")?;
    }
    let mut writer = csv::Writer::from_writer(out);
    for row in rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(())
}

pub fn read_timeline(path: &Path) -> anyhow::Result<(Vec<TimelineRow>, TimelineMeta)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_timeline(&text).with_context(|| format!("in {}", path.display()))
}

pub fn parse_timeline(text: &str) -> anyhow::Result<(Vec<TimelineRow>, TimelineMeta)> {
    let mut meta = TimelineMeta::default();
    for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            match key.trim() {
                "title" => meta.title = Some(value.to_owned()),
                "target_p95_seconds" => meta.target_p95_seconds = value.parse().ok(),
                "target_cpu" => meta.target_cpu = value.parse().ok(),
                _ => {}
            }
        }
    }
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let rows = reader
        .deserialize()
        .collect::<Result<Vec<TimelineRow>, _>>()
        .context("a timeline is CSV with a header naming its columns (at least `seconds`)")?;
    Ok((rows, meta))
}

/// The numbers worth quoting about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub duration_s: f64,
    pub peak_offered_rps: f64,
    pub peak_instances: u32,
    pub min_instances: u32,
    pub seconds_p95_above_target: f64,
    pub max_p95_s: f64,
    pub target_p95_s: Option<f64>,
    pub scale_ups: usize,
    pub scale_downs: usize,
    pub offered_requests: f64,
    pub failed_requests: f64,
    pub instance_hours: f64,
}

impl Summary {
    pub fn of(rows: &[TimelineRow], target_p95: Option<f64>) -> Self {
        // Each row covers the interval that ends at its time; the first interval
        // is as long as the second.
        let start = match rows {
            [a, b, ..] => (a.seconds - (b.seconds - a.seconds)).max(0.0),
            [a] => 0f64.min(a.seconds),
            [] => 0.0,
        };
        let mut s = Summary {
            duration_s: rows.last().map_or(0.0, |r| r.seconds - start),
            peak_offered_rps: 0.0,
            peak_instances: 0,
            min_instances: u32::MAX,
            seconds_p95_above_target: 0.0,
            max_p95_s: 0.0,
            target_p95_s: target_p95,
            scale_ups: 0,
            scale_downs: 0,
            offered_requests: 0.0,
            failed_requests: 0.0,
            instance_hours: 0.0,
        };
        let mut previous = start;
        for row in rows {
            let span = row.seconds - previous;
            previous = row.seconds;
            if let Some(rps) = row.offered_rps {
                s.peak_offered_rps = s.peak_offered_rps.max(rps);
                s.offered_requests += rps * span;
                if let Some(served) = row.served_rps {
                    s.failed_requests += (rps - served).max(0.0) * span;
                }
            }
            if let Some(n) = row.instances {
                s.peak_instances = s.peak_instances.max(n);
                s.min_instances = s.min_instances.min(n);
                s.instance_hours += f64::from(n) * span / 3600.0;
                match row.desired.map(|d| d.cmp(&n)) {
                    Some(std::cmp::Ordering::Greater) => s.scale_ups += 1,
                    Some(std::cmp::Ordering::Less) => s.scale_downs += 1,
                    _ => {}
                }
            }
            if let Some(p95) = row.p95_seconds {
                s.max_p95_s = s.max_p95_s.max(p95);
                if target_p95.is_some_and(|target| p95 > target) {
                    s.seconds_p95_above_target += span;
                }
            }
        }
        if s.min_instances == u32::MAX {
            s.min_instances = 0;
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hours = self.duration_s / 3600.0;
        writeln!(
            f,
            "simulated:              {:.1} h ({:.0} s)",
            hours, self.duration_s
        )?;
        writeln!(
            f,
            "peak offered load:      {:.0} requests/s",
            self.peak_offered_rps
        )?;
        writeln!(
            f,
            "instances:              {} to {} (peak)",
            self.min_instances, self.peak_instances
        )?;
        writeln!(
            f,
            "scale-ups / downs:      {} / {}",
            self.scale_ups, self.scale_downs
        )?;
        match self.target_p95_s {
            Some(target) => writeln!(
                f,
                "p95 above {:.0} ms:       {:.0} s ({:.2} % of the time); worst interval {:.3} s",
                target * 1000.0,
                self.seconds_p95_above_target,
                100.0 * self.seconds_p95_above_target / self.duration_s.max(1.0),
                self.max_p95_s
            )?,
            None => writeln!(f, "worst p95:              {:.3} s", self.max_p95_s)?,
        }
        writeln!(
            f,
            "failed (shed) requests: {:.0} of {:.0} ({:.4} %)",
            self.failed_requests,
            self.offered_requests,
            100.0 * self.failed_requests / self.offered_requests.max(1.0)
        )?;
        write!(
            f,
            "instance-hours:         {:.1} (the peak fleet all the time: {:.1})",
            self.instance_hours,
            f64::from(self.peak_instances) * hours
        )
    }
}
