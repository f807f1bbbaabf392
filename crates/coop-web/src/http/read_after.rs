//! The read-your-writes token. After a successful write, the response carries
//! the primary's WAL position (`Coop-Read-After` header and `coop_read_after`
//! cookie); a client sends it back (the browser does so by itself) and its
//! reads then go only to replicas that have replayed that far.
//!
//! The position is also kept server-side with the session
//! (`coop_mechanisms::read_positions`, in Redis where every instance sees
//! it), so a client that sends its session cookie but drops the token still
//! reads its own writes; the token remains for clients without a session.
//!
//! [`track`] gives every request a [`ReadAfter`] (a request extension) holding
//! the later of the two positions; services read at or after it and raise it
//! with their own writes, and the response is stamped with the result.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use coop_domain::token;
use coop_mechanisms::data::ReadAfter;
use coop_mechanisms::store::replicas::{Lsn, PRIMARY_ONLY};

use crate::state::AppState;

pub const HEADER: &str = "coop-read-after";
pub const COOKIE: &str = "coop_read_after";

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
fn position(state: &AppState, headers: &HeaderMap) -> Option<Lsn> {
    let token = from_headers(headers)?;
    if state.knobs.sticky_reads {
        // The benchmark variant: "stick to the primary for a while after a write".
        let age_ms = unix_ms().saturating_sub(token.at_ms);
        (u128::from(age_ms) < state.max_replica_lag.as_millis()).then_some(PRIMARY_ONLY)
    } else {
        Some(token.lsn)
    }
}

fn unix_ms() -> u64 {
    coop_domain::clock::now_ms().max(0) as u64
}

/// Gives the request its read-your-writes position, and stamps a successful
/// write's response with the position after it (only when replicas are in use).
pub async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let replicas = state.services.replicas_in_use();
    // Without replicas every read is of the primary: nothing to look up.
    let session = replicas
        .then(|| super::session_token(req.headers()).map(token::hash))
        .flatten();
    let mut position = position(&state, req.headers());
    if let Some(session) = &session
        && !state.knobs.sticky_reads
        && let Some(kept) = state.read_positions.get(session).await
    {
        position = Some(position.map_or(kept, |sent| sent.max(kept)));
    }
    let read_after = ReadAfter::at(position);
    req.extensions_mut().insert(read_after.clone());
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let mut response = next.run(req).await;
    if !state.services.replicas_in_use() || !is_write || !response.status().is_success() {
        return response;
    }
    // A write through a service recorded its position; anything else (a
    // session created or ended) is stamped with the primary's position now.
    let lsn = match read_after.written() {
        Some(lsn) => Some(lsn),
        None => state.services.write_position().await,
    };
    if let Some(lsn) = lsn {
        // With the session that wrote, and with one the answer starts (a
        // log-in: its first read must find the new session).
        let started = new_session(response.headers()).map(|t| token::hash(&t));
        for session in session.iter().chain(started.iter()) {
            state.read_positions.raise(session, lsn).await;
        }
        let token = format!("{lsn}.{}", unix_ms());
        // Long enough for any replica the router still uses to catch up.
        let max_age = (state.max_replica_lag.as_secs() * 2).max(10);
        let secure = if state.http.secure_cookies() {
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

/// The session token an answer's `Set-Cookie` starts, if any.
fn new_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|cookie| cookie.split(';').next())
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| {
            (*name == super::SESSION_COOKIE || *name == super::SECURE_SESSION_COOKIE)
                && !value.is_empty()
        })
        .map(|(_, value)| value.to_owned())
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
