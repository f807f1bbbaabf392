//! Authentication as an extractor: a handler that takes `SignedIn` runs only
//! for a caller with a live session, and gets the request's context for the
//! services (who is asking, and the read-your-writes floor).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use coop_mechanisms::data::ReadAfter;
use coop_services::Ctx;

use crate::error::ApiError;
use crate::state::AppState;

pub struct SignedIn(pub Ctx);

impl FromRequestParts<AppState> for SignedIn {
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
        Ok(Self(Ctx::new(caller, read_after)))
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
