//! Which requests are document uploads: their bodies stream to storage, so
//! the layers that would buffer or bound them (idempotency, the request
//! timeout) treat them apart.

use axum::http::Method;

pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "/api/v1/documents"
}
