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

use crate::state::AppState;
use crate::store::replicas::Lsn;

pub const HEADER: &str = "coop-read-after";
pub const COOKIE: &str = "coop_read_after";

/// The WAL position a handler's write committed at, when it already knows it.
#[derive(Clone, Copy)]
pub struct WrittenAt(pub Lsn);

/// The position this client must read at or after, if it sent one.
pub fn from_headers(headers: &HeaderMap) -> Option<Lsn> {
    let from_header = headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    from_header.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| value.parse().ok())
    })
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
        None => replicas.current_lsn().await.ok(),
    };
    if let Some(lsn) = lsn {
        // Long enough for any replica the router still uses to catch up.
        let max_age = (state.config.max_replica_lag.as_secs() * 2).max(10);
        let secure = if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let cookie =
            format!("{COOKIE}={lsn}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
            .headers_mut()
            .insert(HEADER, HeaderValue::from(lsn));
    }
    response
}
