//! Authentication as extractors: a handler that takes `AuthUser` can only run for
//! a caller with a live session.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::domain::Role;
use crate::error::ApiError;
use crate::session::{SessionData, token_from_headers};
use crate::state::AppState;

pub struct AuthUser(pub SessionData);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_from_headers(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let session = state
            .sessions
            .load(
                &token,
                crate::http::read_after::position(state, &parts.headers),
            )
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Self(session))
    }
}

/// A caller who coordinates its co-op.
pub struct Coordinator(pub SessionData);

impl FromRequestParts<AppState> for Coordinator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthUser(session) = AuthUser::from_request_parts(parts, state).await?;
        if session.role != Role::Coordinator {
            return Err(ApiError::Forbidden(
                "only a coordinator of this co-op may do this".into(),
            ));
        }
        Ok(Self(session))
    }
}
