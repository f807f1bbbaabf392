//! What the supervisor reads off its processes to decide: CPU time from
//! `/proc`, and latency, requests in flight and queue depth from each process's
//! Prometheus `/metrics`.

use std::collections::BTreeMap;

/// CPU seconds (user + system) the process has used so far, all threads.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12), in clock ticks.
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The request-latency histogram of one or more instances, summed over every
/// route except the probes (`/health`, `/ready`, `/metrics`), whose timings
/// say nothing about the users' experience. Cumulative counts by upper bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    buckets: BTreeMap<Bound, f64>,
}

/// A bucket's upper bound, ordered (`+Inf` last).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bound(f64);
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

const PROBE_ROUTES: &[&str] = &["/health", "/ready", "/metrics"];

impl LatencyHistogram {
    pub fn parse(metrics_text: &str) -> Self {
        let mut buckets = BTreeMap::new();
        for line in metrics_text.lines() {
            let Some(rest) = line.strip_prefix("http_request_duration_seconds_bucket{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            if PROBE_ROUTES
                .iter()
                .any(|probe| labels.contains(&format!("route=\"{probe}\"")))
            {
                continue;
            }
            let Some(le) = label(labels, "le") else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            let Ok(count) = value.trim().parse::<f64>() else {
                continue;
            };
            *buckets.entry(Bound(bound)).or_insert(0.0) += count;
        }
        Self { buckets }
    }

    /// Observations made since `earlier` (a scrape of the same process).
    pub fn since(&self, earlier: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let before = earlier.buckets.get(bound).copied().unwrap_or(0.0);
                (*bound, (count - before).max(0.0))
            })
            .collect();
        Self { buckets }
    }

    pub fn add(&mut self, other: &Self) {
        for (bound, count) in &other.buckets {
            *self.buckets.entry(*bound).or_insert(0.0) += count;
        }
    }

    pub fn count(&self) -> f64 {
        self.buckets.values().copied().fold(0.0, f64::max)
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for (Bound(bound), count) in &self.buckets {
            if *count >= rank {
                if bound.is_infinite() {
                    // Beyond the last finite bucket: report that bucket's bound.
                    return Some(lower_bound);
                }
                let in_bucket = count - lower_count;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower_count) / in_bucket
                } else {
                    1.0
                };
                return Some(lower_bound + (bound - lower_bound) * fraction);
            }
            lower_bound = *bound;
            lower_count = *count;
        }
        Some(lower_bound)
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// Sum of every sample of the metric `name` (all label sets).
pub fn metric_sum(metrics_text: &str, name: &str, label_filter: Option<&str>) -> f64 {
    metrics_text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| label_filter.is_none_or(|f| line.contains(f)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{method="GET",route="/api/v1/families/{id}",status="200",le="0.001"} 50
http_request_duration_seconds_bucket{method="GET",route="/api/v1/families/{id}",status="200",le="0.01"} 90
http_request_duration_seconds_bucket{method="GET",route="/api/v1/families/{id}",status="200",le="0.1"} 100
http_request_duration_seconds_bucket{method="GET",route="/api/v1/families/{id}",status="200",le="+Inf"} 100
http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="0.001"} 1000
http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"} 1000
http_requests_in_flight 3
jobs{state="ready",kind="welcome_email"} 7
jobs{state="ready",kind="calendar"} 5
jobs{state="dead",kind="calendar"} 100
jobs_oldest_ready_age_seconds 2
"#;

    #[test]
    fn probes_are_left_out_and_quantiles_interpolate() {
        let h = LatencyHistogram::parse(SCRAPE);
        assert_eq!(h.count(), 100.0);
        // The 50th observation is the last of the first bucket.
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-9);
        // p95: 95th of 100 lies half-way into (0.01, 0.1].
        assert!((h.quantile(0.95).unwrap() - 0.055).abs() < 1e-9);
    }

    #[test]
    fn a_delta_holds_only_the_new_observations() {
        let before = LatencyHistogram::parse(SCRAPE);
        let after = LatencyHistogram::parse(&SCRAPE.replace("} 100\n", "} 110\n"));
        let delta = after.since(&before);
        assert_eq!(delta.count(), 10.0);
        // All ten new requests took between 10 and 100 ms.
        assert!(delta.quantile(0.95).unwrap() > 0.01);
        assert_eq!(before.since(&before).quantile(0.95), None);
    }

    #[test]
    fn gauges_are_summed_over_their_label_sets() {
        assert_eq!(metric_sum(SCRAPE, "http_requests_in_flight", None), 3.0);
        assert_eq!(metric_sum(SCRAPE, "jobs", Some("state=\"ready\"")), 12.0);
        // `jobs_oldest_ready_age_seconds` is another metric, not a `jobs` sample.
        assert_eq!(metric_sum(SCRAPE, "jobs", None), 112.0);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
