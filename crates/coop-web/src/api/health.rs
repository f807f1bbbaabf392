//! Liveness, readiness, metrics and the landing page.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// The instance that answered.
    pub server: String,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> ApiJson<Health> {
    ApiJson(Health {
        status: "healthy",
        server: state.instance_id.clone(),
    })
}

/// Readiness: 200 when the database (and Redis, when configured) answered
/// within 1 s and the instance is not shutting down; otherwise 503.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready; the body names what failed")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let report = state.readiness.check().await;
    let mut checks = serde_json::Map::new();
    let mut failed = Vec::new();
    for (name, result) in report.checks {
        match result {
            Ok(()) => checks.insert(name.into(), json!("ok")),
            Err(problem) => {
                failed.push(format!("{name} {problem}"));
                checks.insert(name.into(), json!(problem))
            }
        };
    }
    // Replicas do not decide readiness (reads fall back to the primary), but
    // an operator sees which ones are in the read set.
    if !report.replicas.is_empty() {
        let set: serde_json::Map<String, serde_json::Value> = report
            .replicas
            .into_iter()
            .map(|(name, healthy)| {
                (
                    name,
                    json!(if healthy { "ok" } else { "out of the read set" }),
                )
            })
            .collect();
        checks.insert("replicas".into(), serde_json::Value::Object(set));
    }
    // Scheduled backups (embedded tier) do not decide readiness either; the
    // operator sees when the last good one was taken, or why the last failed.
    if let Some(backup) = coop_runtime::backup_status::current() {
        checks.insert(
            "backup".into(),
            json!({
                "folder": backup.folder,
                "last_good_at": backup.last_good_at,
                "last_error": backup.last_error,
            }),
        );
    }
    if state.is_draining() {
        failed.push("the instance is shutting down".to_owned());
        checks.insert("shutdown".into(), json!("draining"));
    }

    if failed.is_empty() {
        (
            StatusCode::OK,
            axum::Json(json!({"status": "ready", "server": state.instance_id, "checks": checks})),
        )
            .into_response()
    } else {
        let body = json!({
            "status": "not_ready",
            "server": state.instance_id,
            "checks": checks,
            "error": {"code": "not_ready", "message": format!("not ready: {}", failed.join("; "))},
        });
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// Prometheus exposition text, for the operator's scraper only (see
/// `http::scrape`): served here when COOP_METRICS_TOKEN is set and the request
/// carries it as a bearer token; otherwise 404, as if there were no such path.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format"),
        (status = 404, description = "Not served on this listener, or without the right `Authorization: Bearer` token", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match &state.http.metrics_token {
        Some(token) if token.admits(&headers) => exposition(&state),
        _ => ApiError::NotFound("no such endpoint: GET /metrics; see /docs for the API".into())
            .into_response(),
    }
}

/// `/metrics` on COOP_METRICS_LISTEN: open, unless a token is configured.
pub async fn private_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match &state.http.metrics_token {
        Some(token) if !token.admits(&headers) => crate::http::scrape::token_required(),
        _ => exposition(&state),
    }
}

/// What a scrape costs: in-memory gauges and rendering, no database query
/// (the queue's depth is refreshed on a timer, see `Services::record_metrics`).
fn exposition(state: &AppState) -> Response {
    state.services.record_metrics();
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
