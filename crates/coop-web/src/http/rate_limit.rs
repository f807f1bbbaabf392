//! Rate limits at the doors that need no session: log-in, sign-up (founding a
//! co-op), invite acceptance and password reset (asking for the email, and
//! using its code), in the API and in the web app's forms. Each
//! attempt is charged twice: to the client's address (COOP_TRUSTED_PROXIES
//! decides what that is) and to the account it names (the email, or the
//! invite code). Past either budget: 429 with `Retry-After`, before any
//! password is hashed. One layer keyed by path, so the handlers stay as they
//! are and a new door is one line here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coop_mechanisms::rate_limit::{Decision, Quota, RateLimitSettings};

use crate::error::ApiError;
use crate::http::MAX_BODY_BYTES;
use crate::http::client_ip::{budget_key, client_address};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    LogIn,
    SignUp,
    AcceptInvite,
    /// Asking for a reset email: without a budget, anyone could make Coop
    /// mail an address over and over.
    RequestReset,
    ResetPassword,
}

impl Door {
    fn of(method: &Method, path: &str) -> Option<Self> {
        if method != Method::POST {
            return None;
        }
        match path {
            "/api/v1/auth/login" | "/sign-in" => Some(Self::LogIn),
            "/api/v1/coops" | "/sign-up" => Some(Self::SignUp),
            "/api/v1/auth/accept-invite" | "/accept-invite" => Some(Self::AcceptInvite),
            "/api/v1/auth/password-reset" | "/forgot-password" => Some(Self::RequestReset),
            // Redeeming an emailed token: the same budget for guesses.
            "/api/v1/auth/password-reset/confirm"
            | "/reset-password"
            | "/api/v1/auth/verify-email"
            | "/verify-email" => Some(Self::ResetPassword),
            _ => None,
        }
    }

    fn address_rule(self) -> &'static str {
        match self {
            Self::LogIn => "login_address",
            Self::SignUp => "sign_up_address",
            Self::AcceptInvite => "accept_invite_address",
            Self::RequestReset => "request_reset_address",
            Self::ResetPassword => "reset_password_address",
        }
    }

    fn account_rule(self) -> &'static str {
        match self {
            Self::LogIn => "login_account",
            Self::SignUp => "sign_up_account",
            Self::AcceptInvite => "accept_invite_account",
            Self::RequestReset => "request_reset_account",
            Self::ResetPassword => "reset_password_account",
        }
    }

    /// The account an attempt is about, from a JSON body or a form.
    fn account(self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let value = if is_form {
            let field = match self {
                Self::LogIn | Self::SignUp | Self::RequestReset => "email",
                Self::AcceptInvite | Self::ResetPassword => "token",
            };
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .ok()?
                .into_iter()
                .find_map(|(name, value)| (name == field).then_some(value))?
        } else {
            let json: serde_json::Value = serde_json::from_slice(body).ok()?;
            let value = match self {
                Self::LogIn | Self::RequestReset => &json["email"],
                Self::SignUp => &json["coordinator"]["email"],
                Self::AcceptInvite | Self::ResetPassword => &json["token"],
            };
            value.as_str()?.to_owned()
        };
        // Emails compare without case or surrounding spaces, as accounts do.
        let value = value.trim().to_lowercase();
        (!value.is_empty()).then_some(value)
    }
}

/// The rules and their quotas, for `RateLimiter::local` / `shared`.
pub fn rules(settings: &RateLimitSettings) -> Vec<(&'static str, Quota)> {
    if !settings.rate_limits {
        return Vec::new();
    }
    let mut rules = Vec::new();
    for door in [
        Door::LogIn,
        Door::SignUp,
        Door::AcceptInvite,
        Door::RequestReset,
        Door::ResetPassword,
    ] {
        rules.push((door.account_rule(), settings.per_account));
        let per_address = match door {
            Door::SignUp => settings.sign_up_per_address,
            Door::LogIn | Door::AcceptInvite | Door::RequestReset | Door::ResetPassword => {
                settings.per_address
            }
        };
        rules.push((door.address_rule(), per_address));
    }
    if let Some(per_session) = settings.per_session {
        rules.push((SESSION_RULE, per_session));
    }
    rules
}

/// The per-session budget's rule (COOP_RATE_LIMIT_SESSION).
const SESSION_RULE: &str = "api_session";

/// Adds the 429 answer to the operations behind a door, so the contract
/// lists it (the handlers' annotations know nothing of this layer).
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, schema::ObjectBuilder, schema::Type,
    };
    for path in [
        "/api/v1/auth/login",
        "/api/v1/coops",
        "/api/v1/auth/accept-invite",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
        "/api/v1/auth/verify-email",
    ] {
        let Some(operation) = openapi
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
        else {
            continue;
        };
        let response = ResponseBuilder::new()
            .description(
                "Too many attempts from this client address or for this account \
                 (`rate_limited`); retry after `Retry-After` seconds",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait"))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .insert("429".to_owned(), response.into());
    }
}

pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(door) = Door::of(request.method(), request.uri().path()) else {
        // The rest of the API: a session's own budget, when one is set (the
        // rule is absent otherwise, and the check allows at once).
        if request.uri().path().starts_with("/api/")
            && let Some(session) = super::session_token(request.headers())
            && let Decision::Limited { retry_after } = state
                .rate_limits
                .check(SESSION_RULE, &coop_domain::token::hash(session))
                .await
        {
            return too_many(true, retry_after);
        }
        return next.run(request).await;
    };
    let api = request.uri().path().starts_with("/api/");
    // No peer in tests that call the router directly: one shared budget.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let client = client_address(peer, request.headers(), &state.http.trusted_proxies);
    if let Decision::Limited { retry_after } = state
        .rate_limits
        .check(door.address_rule(), &budget_key(client))
        .await
    {
        return too_many(api, retry_after);
    }

    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return ApiError::PayloadTooLarge(MAX_BODY_BYTES).into_response(),
    };
    if let Some(account) = door.account(&parts.headers, &body)
        && let Decision::Limited { retry_after } =
            state.rate_limits.check(door.account_rule(), &account).await
    {
        return too_many(api, retry_after);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn too_many(api: bool, retry_after: Duration) -> Response {
    // Whole seconds, rounded up: retrying at the announced time succeeds.
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = if api {
        ApiError::TooManyRequests { seconds }.into_response()
    } else {
        crate::pages::PageError::Unavailable(format!(
            "There have been too many attempts. Wait {seconds} seconds and try again."
        ))
        .into_response()
    };
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_and_their_accounts() {
        assert_eq!(
            Door::of(&Method::POST, "/api/v1/auth/login"),
            Some(Door::LogIn)
        );
        assert_eq!(Door::of(&Method::GET, "/sign-in"), None);
        assert_eq!(Door::of(&Method::POST, "/api/v1/families"), None);
        let json = HeaderMap::new();
        assert_eq!(
            Door::SignUp.account(&json, br#"{"coordinator": {"email": " Ada@Example.org "}}"#),
            Some("ada@example.org".into())
        );
        assert_eq!(Door::LogIn.account(&json, b"not json"), None);
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(
            Door::AcceptInvite.account(&form, b"token=abc&password=x"),
            Some("abc".into())
        );
    }
}
