//! A bound on every request (COOP_REQUEST_TIMEOUT). Past it the request's
//! future is dropped — its open transaction rolls back — and the client gets a
//! 503 with `Retry-After`, like any other overload. The bound is what lets an
//! Idempotency-Key lease (longer than it) say "the request holding this key is
//! gone" (see `http::idempotency`).
//!
//! Not tower-http's `TimeoutLayer`: it answers an empty 408, which blames the
//! client and breaks the rule that every error is a JSON body.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorBody, ErrorDetail};
use crate::state::AppState;

pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // An upload of a large file takes minutes: its own, longer bound
    // (COOP_UPLOAD_TIMEOUT), which the upload's sweep job waits out.
    let limit = if super::uploads::is_upload(req.method(), req.uri().path()) {
        state.services.documents.upload_timeout()
    } else {
        state.http.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            // The request's trace span names its method and path.
            tracing::warn!(?limit, "request timed out");
            let body = ErrorBody {
                error: ErrorDetail {
                    code: "request_timeout".into(),
                    message: format!(
                        "the request took longer than {limit:?} and was abandoned; retry shortly \
                         (with the same Idempotency-Key, if it had one)"
                    ),
                    fields: None,
                },
            };
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
