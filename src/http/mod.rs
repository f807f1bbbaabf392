//! Cross-cutting HTTP pieces: extractors, middleware and fallbacks that every
//! route shares, so handlers only read like the business.

pub mod auth;
pub mod fallback;
pub mod idempotency;
pub mod json;
pub mod metrics;
pub mod read_after;
pub mod timeout;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Largest request body we accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
