//! JSON answers for requests that match no route or use the wrong method.

use axum::http::{Method, Uri};

use crate::error::ApiError;

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no such endpoint: {method} {}; see /docs for the API",
        uri.path()
    ))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not accept {method}; see /docs for the methods it takes",
        uri.path()
    ))
}
