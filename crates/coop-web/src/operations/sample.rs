//! The instance's own history for the operations page: every
//! `COOP_OPERATIONS_SAMPLE_EVERY` (5 s) it reads its metrics registry (the
//! same numbers `/metrics` gives Prometheus) and keeps the few series the page
//! charts, for the last hour, in memory. Cumulative values are kept as they
//! are; rates and quantiles are computed between consecutive samples when the
//! page is drawn ([`super::charts`]).
//!
//! Nothing here queries the database: the queue's depth is the gauge the
//! instance already refreshes on a timer (a count over partial indexes, see
//! `coop_mechanisms::jobs::record_queue_metrics`), never a scan of the jobs
//! table, however large it grows.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::exposition;

/// How far back the page looks.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One reading of the registry. Counters are cumulative since the process
/// started; gauges are as they were at `at`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sample {
    /// Unix milliseconds.
    pub at: i64,
    /// Requests answered (`http_requests_total`).
    pub requests: f64,
    /// Of those, answered with a 5xx.
    pub errors: f64,
    /// The request-latency histogram over every route, by bucket (upper
    /// bound in seconds, finite bounds only).
    pub latency: Vec<Bucket>,
    /// Cache look-ups by tier (`l1`, `l2`).
    pub cache: BTreeMap<String, CacheCounts>,
    pub invalidations_published: f64,
    pub invalidations_received: f64,
    /// Reads by endpoint (`primary`, `replica`).
    pub reads: BTreeMap<String, f64>,
    /// Replication lag by replica, in seconds.
    pub replica_lag_seconds: BTreeMap<String, f64>,
    /// Ready jobs by kind (the whole queue's, not this instance's).
    pub queue_ready: BTreeMap<String, f64>,
    /// Dead jobs by kind.
    pub queue_dead: BTreeMap<String, f64>,
    pub oldest_ready_age_seconds: Option<f64>,
    /// Circuit breakers' states: 0 closed, 1 open, 2 half-open.
    pub breakers: BTreeMap<String, f64>,
    /// Breaker transitions so far, every breaker.
    pub breaker_transitions: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    /// Upper bound, seconds.
    pub le: f64,
    /// Requests at most this slow, cumulative.
    pub count: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheCounts {
    pub hits: f64,
    pub misses: f64,
}

impl Sample {
    /// The series the page charts, out of a rendered registry.
    pub fn from_exposition(at: i64, text: &str) -> Self {
        let mut sample = Sample {
            at,
            ..Sample::default()
        };
        let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
        for line in exposition::lines(text) {
            let value = line.value;
            match line.name {
                "http_requests_total" => {
                    sample.requests += value;
                    if line.label("status").is_some_and(|s| s.starts_with('5')) {
                        sample.errors += value;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    if let Some(le) = line.label("le").and_then(|le| le.parse::<f64>().ok())
                        && le.is_finite()
                    {
                        *buckets.entry(le.to_bits()).or_default() += value;
                    }
                }
                "cache_requests_total" => {
                    if let (Some(tier), Some(result)) = (line.label("tier"), line.label("result")) {
                        let counts = sample.cache.entry(tier.to_owned()).or_default();
                        match result {
                            "hit" => counts.hits += value,
                            _ => counts.misses += value,
                        }
                    }
                }
                "cache_invalidations_published_total" => sample.invalidations_published += value,
                "cache_invalidations_received_total" => sample.invalidations_received += value,
                "db_reads_total" => add(&mut sample.reads, line.label("endpoint"), value),
                "db_replica_lag_seconds" => add(
                    &mut sample.replica_lag_seconds,
                    line.label("replica"),
                    value,
                ),
                "jobs" => match line.label("state") {
                    Some("ready") => add(&mut sample.queue_ready, line.label("kind"), value),
                    Some("dead") => add(&mut sample.queue_dead, line.label("kind"), value),
                    _ => {}
                },
                "jobs_oldest_ready_age_seconds" => sample.oldest_ready_age_seconds = Some(value),
                "breaker_state" => add(&mut sample.breakers, line.label("breaker"), value),
                "breaker_transitions_total" => sample.breaker_transitions += value,
                _ => {}
            }
        }
        // Bit patterns of positive floats sort like the floats.
        sample.latency = buckets
            .into_iter()
            .map(|(le, count)| Bucket {
                le: f64::from_bits(le),
                count,
            })
            .collect();
        sample
    }
}

fn add(map: &mut BTreeMap<String, f64>, key: Option<&str>, value: f64) {
    if let Some(key) = key {
        *map.entry(key.to_owned()).or_default() += value;
    }
}

/// The last hour of samples, oldest first.
pub struct Samples {
    every: Duration,
    capacity: usize,
    ring: Mutex<VecDeque<Sample>>,
}

impl Samples {
    pub fn new(every: Duration) -> Self {
        let capacity = (WINDOW.as_secs_f64() / every.as_secs_f64()).ceil() as usize + 1;
        Self {
            every,
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    pub fn snapshot(&self) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }

    /// Takes a sample with `read` (the rendered registry) every `every` until
    /// `stop` resolves.
    pub async fn run(&self, read: impl Fn() -> String, stop: impl Future<Output = ()>) {
        let sampling = async {
            let mut ticks = tokio::time::interval(self.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let text = read();
                self.push(Sample::from_exposition(coop_domain::clock::now_ms(), &text));
            }
        };
        tokio::select! {
            () = sampling => {}
            () = stop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
http_requests_total{method=\"GET\",route=\"/a/{id}\",status=\"200\"} 10
http_requests_total{method=\"POST\",route=\"/b\",status=\"503\"} 2
http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"0.1\"} 8
http_request_duration_seconds_bucket{route=\"/a/{id}\",le=\"+Inf\"} 10
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.1\"} 1
cache_requests_total{tier=\"l1\",result=\"hit\",kind=\"family\"} 5
cache_requests_total{tier=\"l1\",result=\"miss\",kind=\"family\"} 1
cache_requests_total{tier=\"l1\",result=\"hit\",kind=\"class\"} 2
db_reads_total{endpoint=\"replica\"} 7
db_replica_lag_seconds{replica=\"r1\"} 0.25
jobs{state=\"ready\",kind=\"welcome_email\"} 3
jobs{state=\"dead\",kind=\"welcome_email\"} 1
jobs{state=\"running\",kind=\"welcome_email\"} 9
jobs_oldest_ready_age_seconds 4.5
breaker_state{breaker=\"smtp\"} 1
";

    #[test]
    fn keeps_the_charted_series() {
        let s = Sample::from_exposition(1, TEXT);
        assert_eq!((s.requests, s.errors), (12.0, 2.0));
        assert_eq!(
            s.latency,
            vec![Bucket {
                le: 0.1,
                count: 9.0
            }]
        );
        assert_eq!(
            s.cache["l1"],
            CacheCounts {
                hits: 7.0,
                misses: 1.0
            }
        );
        assert_eq!(s.reads["replica"], 7.0);
        assert_eq!(s.replica_lag_seconds["r1"], 0.25);
        assert_eq!(s.queue_ready["welcome_email"], 3.0);
        assert_eq!(s.queue_dead["welcome_email"], 1.0);
        assert_eq!(s.oldest_ready_age_seconds, Some(4.5));
        assert_eq!(s.breakers["smtp"], 1.0);
    }

    #[test]
    fn keeps_an_hour_and_no_more() {
        let samples = Samples::new(Duration::from_secs(60));
        for at in 0..100 {
            samples.push(Sample {
                at,
                ..Sample::default()
            });
        }
        let kept = samples.snapshot();
        assert_eq!(kept.len(), 61);
        assert_eq!(kept.first().map(|s| s.at), Some(39));
        assert_eq!(kept.last().map(|s| s.at), Some(99));
    }
}
