//! One span and one log line per request, carrying the ids that let an
//! operator follow it: the request id (`X-Request-Id`, set by nginx or by
//! Coop), the W3C trace id (`traceparent`, see
//! [`coop_runtime::trace_context`]), and, once the caller is known, the
//! co-op id (`SignedIn` records it). Every line logged while the request runs
//! is inside the span, so it carries them too; the jobs the request queues
//! store the trace id (the store reads it from the task-local scope set here),
//! and the worker's span for such a job carries it again.
//!
//! What is logged is chosen so that no personal data or secret reaches the
//! logs: the route template (`/api/v1/families/{id}`), never the path (a
//! calendar feed's path is its secret) or the query (a family search holds
//! names and emails), and ids only.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use coop_runtime::trace_context::{self, TraceParent};
use tracing::Instrument;

/// The header that answers every request with the trace id alone, for people
/// quoting it in a support request (`traceparent` carries it too).
pub const TRACE_ID_HEADER: &str = "coop-trace-id";

pub async fn trace(req: Request, next: Next) -> Response {
    let ours = req
        .headers()
        .get(trace_context::HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse)
        .map(|parent| parent.child())
        .unwrap_or_else(TraceParent::new_root);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %super::metrics::method_label(&method),
        route = %route,
        request_id = %request_id,
        trace_id = %ours.trace_id(),
        coop_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = trace_context::scope(ours.trace_id().to_owned(), next.run(req))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    // Whole microseconds, so the number prints short (0.492, not 0.49204999999999993).
    let duration_ms = started.elapsed().as_micros() as f64 / 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, duration_ms, "request finished");
        } else {
            tracing::info!(status, duration_ms, "request finished");
        }
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&ours.to_string()) {
        headers.insert(trace_context::HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(ours.trace_id()) {
        headers.insert(TRACE_ID_HEADER, value);
    }
    response
}

/// Adds the caller's co-op to the request's span (and so to every later line
/// of the request), once authentication has found it.
pub fn record_coop(coop_id: uuid::Uuid) {
    tracing::Span::current().record("coop_id", tracing::field::display(coop_id));
}
