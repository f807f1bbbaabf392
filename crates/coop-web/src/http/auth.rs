//! Authentication as extractors: a handler that takes `SignedIn` runs only
//! for a co-op member with a live session, and gets the request's context for
//! the services (who is asking, and the read-your-writes floor). `Operator`
//! admits platform operators alone; `AnySession` anyone signed in.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use coop_domain::Role;
use coop_mechanisms::data::ReadAfter;
use coop_services::Ctx;

use crate::error::ApiError;
use crate::state::AppState;

/// A member of a co-op (coordinator or family). Platform operators are
/// refused (403) by every route that takes it: they belong to no co-op and
/// see none's data.
pub struct SignedIn(pub Ctx);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AnySession(ctx) = AnySession::from_request_parts(parts, state).await?;
        if ctx.caller.role == Role::Operator {
            return Err(ApiError::Forbidden(operator_refused().into()));
        }
        Ok(Self(ctx))
    }
}

/// What a co-op route tells a platform operator.
pub fn operator_refused() -> &'static str {
    "operators see no co-op's data; this is a co-op member's route (the operations page is /operations)"
}

/// Anyone with a live session, operators included (`/auth/me`).
pub struct AnySession(pub Ctx);

impl FromRequestParts<AppState> for AnySession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = super::session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let read_after = request_read_after(parts);
        let caller = state
            .services
            .accounts
            .caller(token, &read_after)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if caller.role != Role::Operator {
            super::trace::record_coop(caller.coop_id);
        }
        Ok(Self(Ctx::new(caller, read_after)))
    }
}

/// A platform operator. Without a session: 401, as on every route that needs
/// one. A co-op's member gets the 404 of a route that does not exist: the
/// operations endpoints are not advertised to them.
pub struct Operator(pub Ctx);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let not_found = format!(
            "no such endpoint: {} {}; see /docs for the API",
            parts.method,
            parts.uri.path()
        );
        match AnySession::from_request_parts(parts, state).await {
            Ok(AnySession(ctx)) if ctx.caller.role == Role::Operator => Ok(Self(ctx)),
            Ok(_) => Err(ApiError::NotFound(not_found)),
            Err(err) => Err(err),
        }
    }
}

/// The request's read-your-writes position (set by `read_after::track`).
pub fn request_read_after(parts: &Parts) -> ReadAfter {
    parts
        .extensions
        .get::<ReadAfter>()
        .cloned()
        .unwrap_or_default()
}
