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

/// A peer's samples, or why there are none.
pub async fn peer_samples(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
) -> Result<InstanceSamples, String> {
    let url = format!("{base}/api/v1/operations/samples");
    let answer = client
        .get(&url)
        .header(reqwest::header::COOKIE, cookie)
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
