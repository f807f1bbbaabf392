//! `/api/v1/operations`: what platform operators see of the instances (never
//! any co-op's data). A co-op's member gets a 404, as for a route that does
//! not exist.

use axum::extract::State;

use crate::error::ErrorBody;
use crate::http::auth::Operator;
use crate::http::json::ApiJson;
use crate::operations::SamplesResponse;
use crate::state::AppState;

/// The last hour of this instance's metric samples (platform operators).
///
/// Taken every `COOP_OPERATIONS_SAMPLE_EVERY` from the instance's own metrics
/// registry: cumulative counters (requests, 5xx, the latency histogram, cache
/// look-ups by tier, invalidations, reads by endpoint, breaker transitions)
/// and gauges (replica lag, ready and dead jobs by kind, the oldest ready
/// job's wait, breaker states). The operations page draws them.
#[utoipa::path(get, path = "/api/v1/operations/samples", tag = "operations",
    responses(
        (status = 200, body = SamplesResponse),
        (status = 404, body = ErrorBody,
         description = "Not a platform operator's session: the endpoint is not advertised to anyone else"),
    ))]
pub async fn samples(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiJson<SamplesResponse> {
    ApiJson(SamplesResponse {
        instance: state.instance_id.clone(),
        every_seconds: state.operations.every().as_secs_f64(),
        samples: state.operations.snapshot(),
    })
}
