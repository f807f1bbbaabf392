//! Cross-cutting HTTP pieces: extractors, middleware and fallbacks that every
//! route shares, so handlers only read like the business.

pub mod auth;
pub mod client_ip;
pub mod fallback;
pub mod idempotency;
pub mod json;
pub mod listener;
pub mod metrics;
pub mod range;
pub mod rate_limit;
pub mod read_after;
pub mod same_origin;
pub mod scrape;
pub mod security_headers;
pub mod serve;
pub mod shared_responses;
pub mod timeout;
pub mod trace;
pub mod uploads;

/// The session cookie's name over plain HTTP (a laptop on loopback).
pub const SESSION_COOKIE: &str = "coop_session";
/// Its name where cookies are `Secure`: browsers accept a `__Host-` cookie
/// only over HTTPS, from this host alone, for every path, so a sibling
/// subdomain or a plain-HTTP page cannot plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-coop_session";

/// The session cookie's name under this setting.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

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

/// The session token from a `Cookie` header, if any.
pub fn session_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    cookie(headers, SECURE_SESSION_COOKIE).or_else(|| cookie(headers, SESSION_COOKIE))
}

/// Largest request body we accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; coop_session=abc; b=2".parse().unwrap());
        assert_eq!(session_token(&headers), Some("abc"));
        headers.insert("cookie", "coop_sessionx=1".parse().unwrap());
        assert_eq!(session_token(&headers), None);
    }
}
