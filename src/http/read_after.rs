//! The read-your-writes token. After a successful write, the response carries
//! the primary's WAL position (`Coop-Read-After` header and `coop_read_after`
//! cookie); a client sends it back (the browser does so by itself) and its
//! reads then go only to replicas that have replayed that far.
//!
//! The token lives with the client rather than in server-side state: it costs
//! no extra store round trip on reads, works for clients with or without a
//! session, and a forged token can only make its own reads more conservative.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::ReadYourWrites;
use crate::state::AppState;
use crate::store::replicas::{self, Lsn};

pub const HEADER: &str = "coop-read-after";
pub const COOKIE: &str = "coop_read_after";

/// The WAL position a handler's write committed at, when it already knows it.
#[derive(Clone, Copy)]
pub struct WrittenAt(pub Lsn);

/// What a write hands its client: the WAL position and when (unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub lsn: Lsn,
    pub at_ms: u64,
}

impl Token {
    fn parse(text: &str) -> Option<Self> {
        let (lsn, at_ms) = text.trim().split_once('.')?;
        Some(Self {
            lsn: lsn.parse().ok()?,
            at_ms: at_ms.parse().ok()?,
        })
    }
}

/// The token this client sent back, if any (header first, then cookie).
pub fn from_headers(headers: &HeaderMap) -> Option<Token> {
    let from_header = headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Token::parse);
    from_header.or_else(|| super::cookie(headers, COOKIE).and_then(Token::parse))
}

/// The WAL position this client's reads must not be older than.
pub fn position(state: &AppState, headers: &HeaderMap) -> Option<Lsn> {
    let token = from_headers(headers)?;
    match state.config.read_your_writes {
        ReadYourWrites::Lsn => Some(token.lsn),
        // "Stick to the primary for a while after a write".
        ReadYourWrites::Sticky => {
            let age_ms = unix_ms().saturating_sub(token.at_ms);
            (u128::from(age_ms) < state.config.max_replica_lag.as_millis())
                .then_some(replicas::PRIMARY_ONLY)
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stamps successful writes with the token (only when replicas are configured).
pub async fn stamp_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut response = next.run(req).await;
    let Some(replicas) = state.replicas.as_deref() else {
        return response;
    };
    if !is_write || !response.status().is_success() {
        return response;
    }
    let lsn = match response.extensions().get::<WrittenAt>() {
        Some(WrittenAt(lsn)) => Some(*lsn),
        None => replicas::position_after_write(Some(replicas)).await,
    };
    if let Some(lsn) = lsn {
        let token = format!("{lsn}.{}", unix_ms());
        // Long enough for any replica the router still uses to catch up.
        let max_age = (state.config.max_replica_lag.as_secs() * 2).max(10);
        let secure = if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let cookie =
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if let Ok(token) = HeaderValue::from_str(&token) {
            response.headers_mut().insert(HEADER, token);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_headers_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; coop_read_after=42.1700"),
        );
        assert_eq!(
            from_headers(&headers),
            Some(Token {
                lsn: 42,
                at_ms: 1700
            })
        );
        headers.insert(HEADER, HeaderValue::from_static("43.1800"));
        assert_eq!(
            from_headers(&headers).map(|t| t.lsn),
            Some(43),
            "the header wins"
        );
        headers.insert(HEADER, HeaderValue::from_static("garbage"));
        assert_eq!(from_headers(&headers).map(|t| t.lsn), Some(42));
    }
}
