//! `Idempotency-Key` on POST: the first request with a key runs; a repeat with
//! the same key and the same request gets the first response back without the
//! work being done again; the same key with a different request is a 422. Keys
//! are scoped per user, so users cannot collide. Anonymous keys are scoped to
//! the request itself (its fingerprint): a stranger who reuses someone's key
//! with another body gets a scope of its own, not a 422 or a "still in
//! progress" that would make the other person's request fail.
//!
//! The key is reserved before the handler runs and the response saved after.
//! Between the two the instance may die (SIGKILL, a crash, a lost host) and a
//! load balancer or client retries elsewhere. Two mechanisms make that retry
//! neither lost nor a duplicate:
//!
//! - **Lease.** A reservation belongs to its request for COOP_IDEMPOTENCY_LEASE,
//!   longer than COOP_REQUEST_TIMEOUT (`http::timeout`), so a live request never
//!   outlasts its lease. A repeat while the lease runs gets 409 with
//!   `Retry-After`; one after it takes the key over (only one taker wins) and
//!   carries on as the key's new owner.
//! - **Fenced work.** A create handler receives the request's [`Claim`] and its
//!   store call records, in the same statement or transaction as the work, that
//!   the work committed and which ids it created — only while the claim still
//!   owns the key (`record_idempotent_work!`). A takeover that finds such a
//!   record answers with the created resource as it is now and creates nothing
//!   (`committed`); a previous owner that lost the key cannot commit at all, so
//!   even a statement that reaches the database after its request was abandoned
//!   cannot make a duplicate. Saving the response is fenced the same way.
//!
//! A 5xx ends the lease at once (`release`), so a retry need not wait for it.
//!
//! POSTs and what a takeover does with them:
//! - `POST /api/v1/coops`, `/api/v1/families`, `/api/v1/families/{id}/payments`:
//!   fenced as above; never created twice.
//! - Answers that set a cookie (log-in, log-out, accepting an invite) are never
//!   saved: a saved `Set-Cookie` would keep a live session token in the table
//!   for a day, beside the hashes the session store keeps instead. Their key is
//!   released like a 5xx's, and a repeat runs again:
//!   - `POST /api/v1/auth/login`: a second session is created and the first
//!     (never delivered) expires unused. Harmless.
//!   - `POST /api/v1/auth/logout`: deleting a session twice is harmless.
//!   - `POST /api/v1/auth/accept-invite`: the invite is used up in the same
//!     transaction that creates the account, so a repeat after a commit
//!     answers with the invite's "already used" error (sign in instead), never
//!     a second account.
//! - `POST /api/v1/admin/jobs/{id}/retry`: a rerun after a commit finds the job
//!   no longer dead and answers 409 `job_not_dead`: no second retry (unless the
//!   job died again in between, when another retry is what was asked for).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use sha2::{Digest, Sha256};

use coop_domain::token;
use coop_mechanisms::data::ReadAfter;
use coop_mechanisms::store::idempotency::{Begin, StoredResponse};

use super::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Response headers worth replaying; the rest (date, length) are regenerated.
const REPLAYED_HEADERS: &[HeaderName] = &[header::CONTENT_TYPE, header::LOCATION, header::ETAG];

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    // An upload's body is streamed to storage, never buffered for a
    // fingerprint: its handler refuses the key with a message saying so.
    if super::uploads::is_upload(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    match run_once(&state, req, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_once(state: &AppState, req: Request, next: Next) -> Result<Response, Response> {
    let key = parse_key(req.headers().get(HEADER)).map_err(IntoResponse::into_response)?;
    let read_after = req
        .extensions()
        .get::<ReadAfter>()
        .cloned()
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body = read_body(body).await.map_err(IntoResponse::into_response)?;
    let request_hash = fingerprint(&parts.method, &parts.uri, &body);
    let scope = scope_of(state, &parts.headers, &read_after, &request_hash)
        .await
        .map_err(IntoResponse::into_response)?;

    let keys = &state.services.idempotency;
    let claim = match keys
        .begin(&scope, &key, &request_hash)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    {
        Begin::Replay(stored) => return Ok(replay(stored)),
        Begin::Mismatch => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was already used for a different request; \
                          use a new key for a new request"
                    .into(),
            }
            .into_response());
        }
        Begin::InProgress => return Err(in_progress()),
        Begin::Proceed(claim) => claim,
    };
    if claim.committed.is_some() {
        tracing::info!(
            scope,
            "took over an Idempotency-Key whose work had committed: answering with its result"
        );
    }

    let mut parts = parts;
    parts.extensions.insert(claim.clone());
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let _ = keys.release(&claim).await;
            return Err(
                ApiError::Internal(anyhow::anyhow!("buffering response: {err}")).into_response(),
            );
        }
    };

    let delay = state.knobs.idempotency_save_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // A 5xx may be retried at once; an answer that sets a cookie carries a
    // session token, which is never stored (see the module's comment).
    if parts.status.is_server_error() || parts.headers.contains_key(header::SET_COOKIE) {
        if let Err(err) = keys.release(&claim).await {
            tracing::warn!(error = %err, "could not release an idempotency reservation");
        }
    } else {
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers: serialize_headers(&parts.headers),
            body: body.to_vec(),
        };
        match keys.complete(&claim, &stored).await {
            Ok(true) => {}
            // A repeat took the key over (this request outlived its lease): it
            // answers for the key; our work, if any, could not have committed.
            Ok(false) => tracing::warn!("an idempotency reservation was taken over mid-request"),
            // The work is done and answered; a repeat will see "in progress"
            // until the lease passes, then answer with what the work created.
            Err(err) => tracing::warn!(error = %err, "could not save an idempotent response"),
        }
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn in_progress() -> Response {
    let mut response = ApiError::Conflict {
        code: "request_in_progress",
        message: "a request with this Idempotency-Key is still being processed; \
                  retry shortly to get its response"
            .into(),
        fields: None,
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn parse_key(value: Option<&HeaderValue>) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID",
        )
    };
    let key = value.and_then(|v| v.to_str().ok()).ok_or_else(invalid)?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(key.to_owned())
}

async fn scope_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    read_after: &ReadAfter,
    request_hash: &str,
) -> Result<String, ApiError> {
    let caller = match super::session_token(headers) {
        Some(token) => state.services.accounts.caller(token, read_after).await?,
        None => None,
    };
    Ok(match caller {
        Some(caller) => format!("user:{}", caller.user_id),
        // Only the same request can meet its own key again.
        None => format!("anonymous:{request_hash}"),
    })
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES)),
        Err(err) => Err(ApiError::bad_request(
            "unreadable_body",
            format!("could not read the request body: {err}"),
        )),
    }
}

/// What makes two requests "the same": method, path and query, and body bytes.
pub fn fingerprint(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .as_bytes(),
    );
    hasher.update([0]);
    hasher.update(body);
    token::hex(&hasher.finalize())
}

fn serialize_headers(headers: &axum::http::HeaderMap) -> String {
    let pairs: Vec<(&str, &str)> = REPLAYED_HEADERS
        .iter()
        .flat_map(|name| {
            headers
                .get_all(name)
                .iter()
                .filter_map(move |value| value.to_str().ok().map(|v| (name.as_str(), v)))
        })
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    let pairs: Vec<(String, String)> = serde_json::from_str(&stored.headers).unwrap_or_default();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_visible_ascii() {
        assert!(parse_key(Some(&HeaderValue::from_static("abc-123"))).is_ok());
        assert!(parse_key(Some(&HeaderValue::from_static(""))).is_err());
        assert!(parse_key(Some(&HeaderValue::from_static("has space"))).is_err());
        let long = HeaderValue::from_str(&"k".repeat(256)).unwrap();
        assert!(parse_key(Some(&long)).is_err());
    }

    #[test]
    fn fingerprints_differ_by_body_and_path() {
        let a = fingerprint(&Method::POST, &"/a".parse().unwrap(), b"{}");
        assert_eq!(a, fingerprint(&Method::POST, &"/a".parse().unwrap(), b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, &"/b".parse().unwrap(), b"{}"));
        assert_ne!(
            a,
            fingerprint(&Method::POST, &"/a".parse().unwrap(), b"{ }")
        );
    }
}
