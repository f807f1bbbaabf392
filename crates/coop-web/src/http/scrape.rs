//! Who may read `/metrics`. The metrics name every route, the pools, the
//! queue and the instance: useful to an attacker sizing a target, and an
//! unauthenticated way to make the server work. So they are served only where
//! the operator asks: on a separate listener (COOP_METRICS_LISTEN, meant to be
//! private) and/or on the main listener to a scraper that presents
//! COOP_METRICS_TOKEN as a bearer token. Otherwise `/metrics` answers 404,
//! like any path that does not exist.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// COOP_METRICS_TOKEN: never printed (its `Debug` hides it).
#[derive(Clone)]
pub struct MetricsToken(String);

/// Shorter tokens can be guessed by a patient client.
const MIN_TOKEN_CHARS: usize = 16;

impl MetricsToken {
    /// The token itself, for asking `coop cluster`'s control API, which takes
    /// the same one.
    pub fn secret(&self) -> &str {
        &self.0
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.chars().count() < MIN_TOKEN_CHARS || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "COOP_METRICS_TOKEN must be at least {MIN_TOKEN_CHARS} printable characters \
                 without spaces, e.g. from `openssl rand -hex 24`"
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The value a scraper sends, for `coop cluster` and tests.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the request carries `Authorization: Bearer <token>`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| {
                let (scheme, credentials) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| credentials.trim())
            })
            .any(|sent| constant_time_eq(sent.as_bytes(), self.0.as_bytes()))
    }
}

/// The answer of a metrics listener (`/metrics`, a worker's `/samples`) to a
/// request without the token.
pub fn token_required() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"error": {
            "code": "unauthenticated",
            "message": "this listener serves its metrics only to those who hold the \
                        metrics token: send COOP_METRICS_TOKEN as `Authorization: Bearer <token>`",
        }})),
    )
        .into_response()
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

/// Compares without stopping at the first difference, so answer times do not
/// tell a guesser how much of a token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn admits_only_its_own_bearer_token() {
        let token = MetricsToken::parse("0123456789abcdef0123").unwrap();
        assert!(token.admits(&headers("Bearer 0123456789abcdef0123")));
        assert!(token.admits(&headers("bearer 0123456789abcdef0123")));
        assert!(!token.admits(&headers("Bearer 0123456789abcdef012")));
        assert!(!token.admits(&headers("Basic 0123456789abcdef0123")));
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn short_tokens_are_refused_and_none_is_printed() {
        let err = MetricsToken::parse("secret").unwrap_err();
        assert!(err.contains("COOP_METRICS_TOKEN"), "{err}");
        let token = MetricsToken::parse("0123456789abcdef0123").unwrap();
        assert!(!format!("{token:?}").contains("0123"));
    }
}
