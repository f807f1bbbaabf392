//! The operations page's data: each instance samples its own metrics
//! registry into an hour-long ring ([`sample`]); `GET
//! /api/v1/operations/samples` serves that ring to operators; the page
//! gathers this instance's and its peers' (`COOP_OPERATIONS_PEERS`, asked
//! with the operator's own session) and draws them ([`charts`]).

pub mod charts;
mod exposition;
pub mod sample;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use charts::InstanceSamples;
pub use sample::{Sample, Samples};

/// What `GET /api/v1/operations/samples` answers.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SamplesResponse {
    /// `COOP_INSTANCE_ID`.
    pub instance: String,
    /// Seconds between samples (`COOP_OPERATIONS_SAMPLE_EVERY`).
    pub every_seconds: f64,
    /// The last hour, oldest first.
    pub samples: Vec<Sample>,
}

/// Longest the page waits for a peer: a slow peer must not hold the page.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// A peer instance's samples (asked with the operator's session), or why
/// there are none.
pub async fn peer_samples(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> Result<InstanceSamples, String> {
    let request = client
        .get(format!("{base}/api/v1/operations/samples"))
        .header(reqwest::header::COOKIE, cookie);
    samples_from(request, base).await
}

/// A `coop worker`'s samples, from its private listener (COOP_WORKER_LISTEN)
/// with the metrics token, as Prometheus would scrape it: the circuit
/// breakers live in the workers when jobs run there.
pub async fn worker_samples(
    client: &reqwest::Client,
    address: &str,
    token: &str,
) -> Result<InstanceSamples, String> {
    let base = format!("http://{address}");
    let request = client.get(format!("{base}/samples")).bearer_auth(token);
    samples_from(request, &base).await
}

async fn samples_from(
    request: reqwest::RequestBuilder,
    base: &str,
) -> Result<InstanceSamples, String> {
    let answer = request
        .timeout(PEER_TIMEOUT)
        .send()
        .await
        .map_err(|err| format!("{base} did not answer ({})", without_url(&err)))?;
    if !answer.status().is_success() {
        return Err(format!("{base} answered {}", answer.status()));
    }
    let body: SamplesResponse = answer
        .json()
        .await
        .map_err(|err| format!("{base} sent something unreadable ({})", without_url(&err)))?;
    Ok(InstanceSamples {
        instance: body.instance,
        samples: body.samples,
    })
}

/// The error without the URL (the message names the peer already).
fn without_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

/// What `coop cluster`'s control API says of the cluster this instance is in.
pub struct ClusterView {
    /// Every instance's address (`host:port`), this one included.
    pub instances: Vec<String>,
    /// Every worker's private listener (`host:port`).
    pub workers: Vec<String>,
    /// The auto-scaler's latest decisions, newest first.
    pub decisions: Vec<DecisionRow>,
}

/// One auto-scaler decision with its inputs, as the page shows it.
pub struct DecisionRow {
    /// Seconds since the cluster started.
    pub at: String,
    pub pool: String,
    /// `current → desired`.
    pub change: String,
    pub reason: String,
    /// Each signal: value against target, and what it proposed.
    pub inputs: String,
}

/// Decisions shown: two pools decide every interval, so this is the last
/// few minutes at the default 15 s.
const DECISIONS_SHOWN: usize = 20;

/// `GET /status` of the control API at `control`, with the cluster's token.
pub async fn cluster_view(
    client: &reqwest::Client,
    control: std::net::SocketAddr,
    token: &str,
) -> Result<ClusterView, String> {
    let answer = client
        .get(format!("http://{control}/status"))
        .bearer_auth(token)
        .timeout(PEER_TIMEOUT)
        .send()
        .await
        .map_err(|err| {
            format!(
                "coop cluster's control API did not answer ({})",
                without_url(&err)
            )
        })?;
    if !answer.status().is_success() {
        return Err(format!(
            "coop cluster's control API answered {}",
            answer.status()
        ));
    }
    let status: serde_json::Value = answer
        .json()
        .await
        .map_err(|err| format!("coop cluster's control API sent something unreadable ({err})"))?;
    Ok(read_status(&status))
}

fn read_status(status: &serde_json::Value) -> ClusterView {
    let addresses = |pool: &str| -> Vec<String> {
        status[pool]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|member| member["address"].as_str().map(str::to_owned))
            .collect()
    };
    let instances = addresses("instances");
    let workers = addresses("workers");
    let decisions = status["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .take(DECISIONS_SHOWN)
        .map(decision_row)
        .collect();
    ClusterView {
        instances,
        workers,
        decisions,
    }
}

fn decision_row(decision: &serde_json::Value) -> DecisionRow {
    let number = |v: &serde_json::Value| match v.as_f64() {
        Some(n) if n.fract() == 0.0 => format!("{n:.0}"),
        Some(n) => format!("{n:.3}"),
        None => "?".into(),
    };
    let inputs = decision["proposals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{} {} (target {}) → {}",
                p["signal"].as_str().unwrap_or("?"),
                number(&p["value"]),
                number(&p["target"]),
                number(&p["desired"])
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    DecisionRow {
        at: format!("{} s", number(&decision["at"])),
        pool: decision["pool"].as_str().unwrap_or("?").to_owned(),
        change: format!(
            "{} → {}",
            number(&decision["current"]),
            number(&decision["desired"])
        ),
        reason: decision["reason"]["kind"]
            .as_str()
            .unwrap_or("?")
            .replace('_', " "),
        inputs: if inputs.is_empty() {
            "no readings".into()
        } else {
            inputs
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_instances_and_decisions_from_the_cluster_status() {
        let status = serde_json::json!({
            "instances": [{"address": "127.0.0.1:4001"}, {"address": "127.0.0.1:4002"}],
            "workers": [{"address": "127.0.0.1:5001"}],
            "decisions": [
                {"at": 30.5, "pool": "instances", "current": 2, "desired": 3, "recommended": 3,
                 "proposals": [{"signal": "cpu", "value": 0.91, "target": 0.7, "desired": 3}],
                 "reason": {"kind": "scale_up"}},
                {"at": 30.5, "pool": "workers", "current": 1, "desired": 1,
                 "proposals": [], "reason": {"kind": "no_readings"}}
            ]
        });
        let view = read_status(&status);
        assert_eq!(view.instances, ["127.0.0.1:4001", "127.0.0.1:4002"]);
        assert_eq!(view.workers, ["127.0.0.1:5001"]);
        let up = &view.decisions[0];
        assert_eq!(
            (up.at.as_str(), up.pool.as_str()),
            ("30.500 s", "instances")
        );
        assert_eq!(up.change, "2 → 3");
        assert_eq!(up.reason, "scale up");
        assert_eq!(up.inputs, "cpu 0.910 (target 0.700) → 3");
        assert_eq!(view.decisions[1].inputs, "no readings");
    }
}
