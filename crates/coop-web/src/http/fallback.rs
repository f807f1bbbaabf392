//! JSON answers for requests that match no route or use the wrong method.

use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A JSON 404 for the API and for clients that do not ask for HTML; a page
/// in plain words for a browser.
pub async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !uri.path().starts_with("/api/") {
        return crate::pages::PageError::NotFound("There is no page at this address.".into())
            .into_response();
    }
    ApiError::NotFound(format!(
        "no such endpoint: {method} {}; see /docs for the API",
        uri.path()
    ))
    .into_response()
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not accept {method}; see /docs for the methods it takes",
        uri.path()
    ))
}
