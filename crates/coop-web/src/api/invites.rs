//! Accepting the invite from a welcome email: creates the family's account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use coop_domain::{FieldCheck, Parsed, Password};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{LoginResponse, session_response};
use crate::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct AcceptInvite {
    /// The `token` from the invite link in the welcome email.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,256}$")]
    pub token: Option<String>,
    /// 10 to 1024 characters.
    #[schema(value_type = String, required = true, min_length = 10, max_length = 1024)]
    pub password: Option<String>,
}

/// Create a family's account from the invite in its welcome email; logs it in.
#[utoipa::path(post, path = "/api/v1/auth/accept-invite", tag = "auth",
    request_body = AcceptInvite,
    responses(
        (status = 201, body = LoginResponse, description = "Account created; a session cookie is set"),
        (status = 404, body = ErrorBody, description = "No such invite"),
        (status = 409, body = ErrorBody, description = "The invite was used already"),
        (status = 410, body = ErrorBody, description = "The invite has expired"),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Too many sign-ins at once; retry shortly"),
    ))]
pub async fn accept_invite(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AcceptInvite>,
) -> Result<Response, ApiError> {
    let mut check = FieldCheck::default();
    let token = check.required("token", body.token.as_deref(), |s| {
        let s = s.trim();
        if s.is_empty() || s.len() > 256 {
            Err("must be the token from your invite link".to_owned())
        } else {
            Ok(s.to_owned())
        }
    });
    let password = check.required("password", body.password.as_deref(), Password::parse);
    let (token, password) =
        check.done(|| Ok((token.field("token")?, password.field("password")?)))?;
    let signed_in = state
        .services
        .accounts
        .accept_invite(&token, password)
        .await?;
    Ok(session_response(&state, StatusCode::CREATED, signed_in))
}
