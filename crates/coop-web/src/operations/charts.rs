//! From samples to charts: rates and quantiles between consecutive samples
//! (what Prometheus's `rate()` and `histogram_quantile()` would compute over
//! one sampling interval), then each chart as SVG coordinates, drawn by the
//! page's template (inline SVG with presentation attributes, so the strict
//! Content-Security-Policy needs no exception and no chart library is loaded).

use std::collections::BTreeSet;

use super::sample::Sample;

/// One instance's samples, oldest first.
pub struct InstanceSamples {
    pub instance: String,
    pub samples: Vec<Sample>,
}

/// A chart ready for the template.
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    /// What the y axis counts.
    pub unit: &'static str,
    pub lines: Vec<Line>,
    /// Points drawn over every line (the browser test reads it).
    pub points: usize,
    pub y_max: String,
    pub from: String,
    pub to: String,
    /// Said under the chart when it has nothing to draw.
    pub empty: &'static str,
}

pub struct Line {
    pub name: String,
    pub color: &'static str,
    /// SVG `points`: "x,y x,y …" in the chart's viewBox.
    pub points: String,
    pub last: String,
}

/// A series before drawing: (unix ms, value).
type Points = Vec<(i64, f64)>;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 8.0;
const MAX_POINTS: usize = 240;
const PALETTE: [&str; 8] = [
    "#1f5fa8", "#b3261e", "#2e7d32", "#8e24aa", "#e65100", "#00838f", "#5d4037", "#455a64",
];

/// Every chart of the page. `instances[0]` is the instance serving the page:
/// the queue's gauges describe the whole queue (every instance reports the
/// same numbers), so they are drawn from it alone.
pub fn charts(instances: &[InstanceSamples]) -> Vec<Chart> {
    let many = instances.len() > 1;
    let named = |instance: &str, what: &str| match (many, what.is_empty()) {
        (false, false) => what.to_owned(),
        (false, true) => "this instance".to_owned(),
        (true, false) => format!("{what} · {instance}"),
        (true, true) => instance.to_owned(),
    };
    let mut requests = Vec::new();
    let mut latency = Vec::new();
    let mut errors = Vec::new();
    let mut hit_rate = Vec::new();
    let mut invalidations = Vec::new();
    let mut lag = Vec::new();
    let mut reads = Vec::new();
    let mut breakers = Vec::new();
    let mut transitions = Vec::new();
    for InstanceSamples { instance, samples } in instances {
        requests.push((named(instance, ""), rate(samples, |s| s.requests)));
        for (q, label) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            latency.push((named(instance, label), quantile_ms(samples, q)));
        }
        errors.push((
            named(instance, ""),
            ratio(samples, |s| s.errors, |s| s.requests),
        ));
        for tier in keys(samples, |s| s.cache.keys().cloned().collect()) {
            let hits = |s: &Sample| s.cache.get(&tier).map_or(0.0, |c| c.hits);
            let all = |s: &Sample| s.cache.get(&tier).map_or(0.0, |c| c.hits + c.misses);
            hit_rate.push((named(instance, &tier), ratio(samples, hits, all)));
        }
        invalidations.push((
            named(instance, "published"),
            rate(samples, |s| s.invalidations_published),
        ));
        invalidations.push((
            named(instance, "received"),
            rate(samples, |s| s.invalidations_received),
        ));
        for replica in keys(samples, |s| s.replica_lag_seconds.keys().cloned().collect()) {
            let points = gauge(samples, |s| s.replica_lag_seconds.get(&replica).copied());
            lag.push((named(instance, &replica), points));
        }
        for endpoint in keys(samples, |s| s.reads.keys().cloned().collect()) {
            let one = |s: &Sample| s.reads.get(&endpoint).copied().unwrap_or(0.0);
            let all = |s: &Sample| s.reads.values().sum::<f64>();
            reads.push((named(instance, &endpoint), ratio(samples, one, all)));
        }
        for breaker in keys(samples, |s| s.breakers.keys().cloned().collect()) {
            let points = gauge(samples, |s| s.breakers.get(&breaker).copied());
            breakers.push((named(instance, &breaker), points));
        }
        transitions.push((
            named(instance, ""),
            rate(samples, |s| s.breaker_transitions),
        ));
    }
    let own: &[Sample] = instances.first().map_or(&[], |i| &i.samples);
    let queue_ready = keys(own, |s| s.queue_ready.keys().cloned().collect())
        .into_iter()
        .map(|kind| {
            let points = gauge(own, |s| s.queue_ready.get(&kind).copied());
            (kind, points)
        })
        .collect();
    let queue_dead = keys(own, |s| s.queue_dead.keys().cloned().collect())
        .into_iter()
        .map(|kind| {
            let points = gauge(own, |s| s.queue_dead.get(&kind).copied());
            (kind, points)
        })
        .collect();
    let oldest = vec![(
        "oldest ready job".to_owned(),
        gauge(own, |s| s.oldest_ready_age_seconds),
    )];
    let window = window(instances);
    vec![
        draw(
            "requests",
            "Requests per second",
            "req/s",
            requests,
            window,
            "No requests yet.",
        ),
        draw(
            "latency",
            "Latency p50 / p95 / p99",
            "ms",
            latency,
            window,
            "No requests yet.",
        ),
        draw(
            "errors",
            "Errors (5xx) of all requests",
            "%",
            errors,
            window,
            "No requests yet.",
        ),
        draw(
            "cache-hits",
            "Cache hit rate by tier",
            "%",
            hit_rate,
            window,
            "No cache look-ups yet.",
        ),
        draw(
            "invalidations",
            "Cache invalidations per second",
            "/s",
            invalidations,
            window,
            "No invalidations.",
        ),
        draw(
            "replica-lag",
            "Replica lag",
            "s",
            lag,
            window,
            "No replicas configured.",
        ),
        draw(
            "reads",
            "Share of reads by endpoint",
            "%",
            reads,
            window,
            "No database reads yet.",
        ),
        draw(
            "queue",
            "Ready jobs by kind",
            "jobs",
            non_zero(queue_ready),
            window,
            "No job waiting.",
        ),
        draw(
            "oldest-job",
            "Oldest ready job's wait",
            "s",
            oldest,
            window,
            "No sample yet.",
        ),
        draw(
            "dead-jobs",
            "Dead jobs by kind",
            "jobs",
            non_zero(queue_dead),
            window,
            "No dead job.",
        ),
        draw(
            "breakers",
            "Breaker state (0 closed, 1 open, 2 half-open)",
            "state",
            breakers,
            window,
            "No breaker has reported yet.",
        ),
        draw(
            "breaker-transitions",
            "Breaker transitions per second, every breaker",
            "/s",
            non_zero(transitions),
            window,
            "No breaker changed state.",
        ),
    ]
}

/// Rate per second of a cumulative counter between consecutive samples; a
/// fall (the process restarted) is no point.
pub fn rate(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Points {
    samples
        .windows(2)
        .filter_map(|pair| {
            let seconds = (pair[1].at - pair[0].at) as f64 / 1000.0;
            let delta = value(&pair[1]) - value(&pair[0]);
            (seconds > 0.0 && delta >= 0.0).then(|| (pair[1].at, delta / seconds))
        })
        .collect()
}

/// `part` as a percentage of `whole`, both cumulative counters, per interval
/// (no point where `whole` did not move).
pub fn ratio(
    samples: &[Sample],
    part: impl Fn(&Sample) -> f64,
    whole: impl Fn(&Sample) -> f64,
) -> Points {
    samples
        .windows(2)
        .filter_map(|pair| {
            let whole = whole(&pair[1]) - whole(&pair[0]);
            let part = part(&pair[1]) - part(&pair[0]);
            (whole > 0.0 && part >= 0.0).then(|| (pair[1].at, 100.0 * part / whole))
        })
        .collect()
}

pub fn gauge(samples: &[Sample], value: impl Fn(&Sample) -> Option<f64>) -> Points {
    samples
        .iter()
        .filter_map(|s| value(s).map(|v| (s.at, v)))
        .collect()
}

/// The `q` quantile of request latency in each interval, in milliseconds,
/// interpolated within its bucket as Prometheus's `histogram_quantile` does;
/// past the last finite bucket, that bucket's bound.
pub fn quantile_ms(samples: &[Sample], q: f64) -> Points {
    samples
        .windows(2)
        .filter_map(|pair| {
            let total = pair[1].requests - pair[0].requests;
            if total <= 0.0 {
                return None;
            }
            let rank = q * total;
            let mut lower = (0.0, 0.0);
            for bucket in &pair[1].latency {
                let before = pair[0]
                    .latency
                    .iter()
                    .find(|b| b.le == bucket.le)
                    .map_or(0.0, |b| b.count);
                let count = bucket.count - before;
                if count >= rank {
                    let (lower_le, lower_count) = lower;
                    let within = if count > lower_count {
                        (rank - lower_count) / (count - lower_count)
                    } else {
                        1.0
                    };
                    let seconds = lower_le + (bucket.le - lower_le) * within;
                    return Some((pair[1].at, seconds * 1000.0));
                }
                lower = (bucket.le, count);
            }
            pair[1].latency.last().map(|b| (pair[1].at, b.le * 1000.0))
        })
        .collect()
}

fn keys(samples: &[Sample], of: impl Fn(&Sample) -> Vec<String>) -> BTreeSet<String> {
    samples.iter().flat_map(of).collect()
}

fn non_zero(series: Vec<(String, Points)>) -> Vec<(String, Points)> {
    series
        .into_iter()
        .filter(|(_, points)| points.iter().any(|(_, v)| *v != 0.0))
        .collect()
}

/// The time span the charts share: the oldest to the newest sample.
fn window(instances: &[InstanceSamples]) -> (i64, i64) {
    let ats = instances
        .iter()
        .flat_map(|i| i.samples.iter().map(|s| s.at));
    let (from, to) = ats.fold((i64::MAX, i64::MIN), |(lo, hi), at| {
        (lo.min(at), hi.max(at))
    });
    if from > to {
        (0, 1)
    } else {
        (from, to.max(from + 1))
    }
}

fn draw(
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    series: Vec<(String, Points)>,
    (from, to): (i64, i64),
    empty: &'static str,
) -> Chart {
    let series: Vec<(String, Points)> = series
        .into_iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(name, points)| (name, thin(points)))
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let y_max = nice_ceiling(max);
    let x = |at: i64| LEFT + (WIDTH - LEFT) * (at - from) as f64 / (to - from) as f64;
    let y = |v: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut points = 0;
    let lines = series
        .into_iter()
        .enumerate()
        .map(|(i, (name, series))| {
            points += series.len();
            let coordinates: Vec<String> = series
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(at, v)| format!("{:.1},{:.1}", x(*at), y(*v)))
                .collect();
            Line {
                name,
                color: PALETTE[i % PALETTE.len()],
                points: coordinates.join(" "),
                last: series.last().map_or(String::new(), |(_, v)| number(*v)),
            }
        })
        .collect();
    Chart {
        id,
        title,
        unit,
        lines,
        points,
        y_max: number(y_max),
        from: clock(from),
        to: clock(to),
        empty,
    }
}

/// At most [`MAX_POINTS`] points: each run of consecutive points becomes
/// their mean at the run's last time. An hour at 5 s is 720 points per line,
/// more than a chart's width shows, and the page's weight is budgeted.
fn thin(points: Points) -> Points {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let run = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(run)
        .map(|chunk| {
            let mean = chunk.iter().map(|(_, v)| v).sum::<f64>() / chunk.len() as f64;
            (chunk[chunk.len() - 1].0, mean)
        })
        .collect()
}

/// The smallest of 1, 2, 5 × 10^n at or above `max` (1 for nothing).
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|ceiling| *ceiling >= max)
        .unwrap_or(10.0 * magnitude)
}

/// Three significant digits at most, no trailing zeros.
fn number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return "0".into();
    }
    let decimals = (2 - value.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `HH:MM:SS` UTC of a unix-ms time.
fn clock(at: i64) -> String {
    let seconds = at.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::sample::Bucket;

    fn at(ms: i64, requests: f64, buckets: &[(f64, f64)]) -> Sample {
        Sample {
            at: ms,
            requests,
            latency: buckets
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
            ..Sample::default()
        }
    }

    #[test]
    fn rates_are_per_second_between_samples_and_skip_restarts() {
        let samples = [at(0, 10.0, &[]), at(2000, 30.0, &[]), at(3000, 5.0, &[])];
        assert_eq!(rate(&samples, |s| s.requests), vec![(2000, 10.0)]);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_interval() {
        // In the interval: 100 requests, 50 at most 10 ms, 90 at most 100 ms,
        // 100 at most 1 s.
        let before = at(0, 1000.0, &[(0.01, 500.0), (0.1, 900.0), (1.0, 1000.0)]);
        let after = at(1000, 1100.0, &[(0.01, 550.0), (0.1, 990.0), (1.0, 1100.0)]);
        let q = |q| quantile_ms(&[before.clone(), after.clone()], q)[0].1;
        assert!((q(0.5) - 10.0).abs() < 1e-9, "{}", q(0.5));
        // p95: rank 95 lies halfway between 90 (100 ms) and 100 (1 s).
        assert!((q(0.95) - 550.0).abs() < 1e-9, "{}", q(0.95));
        // p25: a quarter of the way up the first bucket, from 0.
        assert!((q(0.25) - 5.0).abs() < 1e-9, "{}", q(0.25));
        // An interval without requests has no latency.
        assert!(quantile_ms(&[after.clone(), after.clone()], 0.5).is_empty());
    }

    #[test]
    fn ratios_are_percentages_of_what_moved() {
        let mut a = at(0, 0.0, &[]);
        a.errors = 0.0;
        a.requests = 100.0;
        let mut b = at(1000, 200.0, &[]);
        b.errors = 25.0;
        assert_eq!(
            ratio(&[a, b], |s| s.errors, |s| s.requests),
            vec![(1000, 25.0)]
        );
    }

    #[test]
    fn charts_draw_every_point_inside_the_box() {
        let samples = vec![
            at(0, 0.0, &[(0.01, 0.0)]),
            at(1000, 10.0, &[(0.01, 10.0)]),
            at(2000, 30.0, &[(0.01, 30.0)]),
        ];
        let charts = charts(&[InstanceSamples {
            instance: "a".into(),
            samples,
        }]);
        let requests = charts.iter().find(|c| c.id == "requests").unwrap();
        assert_eq!(requests.points, 2);
        assert_eq!(requests.y_max, "20");
        assert_eq!(requests.lines[0].points, "304.0,80.0 600.0,8.0");
        assert_eq!(requests.lines[0].last, "20");
        let queue = charts.iter().find(|c| c.id == "queue").unwrap();
        assert_eq!(queue.points, 0);
    }

    #[test]
    fn long_series_are_thinned_to_means() {
        let points: Points = (0..720).map(|i| (i64::from(i), f64::from(i % 3))).collect();
        let thinned = thin(points);
        assert_eq!(thinned.len(), 240);
        assert_eq!(thinned[0], (2, 1.0));
        assert_eq!(thinned[239], (719, 1.0));
        let short: Points = vec![(1, 5.0)];
        assert_eq!(thin(short.clone()), short);
    }

    #[test]
    fn numbers_and_scales_read_well() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(number(1234.6), "1235");
        assert_eq!(number(0.012345), "0.0123");
        assert_eq!(number(20.0), "20");
        assert_eq!(clock(3_723_000), "01:02:03 UTC");
    }
}
