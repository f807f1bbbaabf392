//! `/api/v1/auth/...`: the rest of an account's life after signing in:
//! changing the password, signing out everywhere, and resetting a forgotten
//! password by an emailed single-use link.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::{Email, FieldCheck, Parsed, Password};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::session_cookie;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::http::session_token;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct ChangePassword {
    /// Any string; a wrong one is a 422.
    #[schema(value_type = String, required = true)]
    pub current_password: Option<String>,
    /// 10 to 1024 characters.
    #[schema(value_type = String, required = true, min_length = 10, max_length = 1024)]
    pub new_password: Option<String>,
}

/// Change the signed-in user's password. Every other session of the
/// account ends; this one stays.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions are signed out"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "No valid session"),
        (status = 422, body = ErrorBody, description = "Missing fields, a new password too short, or a wrong current password"),
        (status = 503, body = ErrorBody, description = "Too many sign-ins at once; retry shortly"),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let mut check = FieldCheck::default();
    let current = check.required("current_password", body.current_password.as_deref(), |s| {
        Ok(s.to_owned())
    });
    let new = check.required(
        "new_password",
        body.new_password.as_deref(),
        Password::parse,
    );
    let (current, new) = check.done(|| {
        Ok((
            current.field("current_password")?,
            new.field("new_password")?,
        ))
    })?;
    state
        .services
        .accounts
        .change_password(&ctx.caller, session_token(&headers), current, new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: every session of the account ends, this one too.
#[utoipa::path(post, path = "/api/v1/auth/logout-everywhere", tag = "auth",
    responses(
        (status = 204, description = "Every session of the account has ended"),
        (status = 401, body = ErrorBody, description = "No valid session"),
    ))]
pub async fn logout_everywhere(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<Response, ApiError> {
    state
        .services
        .accounts
        .sign_out_everywhere(&ctx.caller)
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.http.secure_cookies()),
    );
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    /// Any string: the answer is the same whether or not it is an account's.
    #[schema(value_type = String, required = true, example = "ada@example.org")]
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetRequested {
    pub message: String,
}

/// Ask for a password reset link. The answer is the same whether or not the
/// email has an account; if it has, the link arrives by email and works
/// once, for an hour.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, body = ResetRequested, description = "If the email has an account, a link is on its way"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 422, body = ErrorBody, description = "Missing email"),
    ))]
pub async fn request_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<(StatusCode, ApiJson<ResetRequested>), ApiError> {
    let mut check = FieldCheck::default();
    let email = check.required("email", body.email.as_deref(), |s| Ok(s.to_owned()));
    let email = check.done(|| email.field("email"))?;
    state
        .services
        .accounts
        .request_password_reset(&email)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ResetRequested {
            message: RESET_REQUESTED.to_owned(),
        }),
    ))
}

/// What anyone asking for a reset is told.
pub const RESET_REQUESTED: &str = "if this email belongs to an account, a link to choose a new \
     password is on its way; it works once, for an hour";

#[derive(Deserialize, ToSchema)]
pub struct ResetPassword {
    /// The `token` from the reset link in the email.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,256}$")]
    pub token: Option<String>,
    /// 10 to 1024 characters.
    #[schema(value_type = String, required = true, min_length = 10, max_length = 1024)]
    pub password: Option<String>,
}

/// Choose a new password with the token from a reset email. Every session of
/// the account ends; sign in with the new password.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth",
    request_body = ResetPassword,
    responses(
        (status = 204, description = "The password is changed; every session has ended"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 404, body = ErrorBody, description = "No such reset link"),
        (status = 409, body = ErrorBody, description = "The link was used already"),
        (status = 410, body = ErrorBody, description = "The link has expired"),
        (status = 422, body = ErrorBody, description = "Missing token, or a password too short"),
        (status = 503, body = ErrorBody, description = "Too many sign-ins at once; retry shortly"),
    ))]
pub async fn reset_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetPassword>,
) -> Result<StatusCode, ApiError> {
    let mut check = FieldCheck::default();
    let token = check.required("token", body.token.as_deref(), reset_token);
    let password = check.required("password", body.password.as_deref(), Password::parse);
    let (token, password) =
        check.done(|| Ok((token.field("token")?, password.field("password")?)))?;
    state
        .services
        .accounts
        .reset_password(&token, password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reset token as pasted: trimmed, bounded.
pub fn reset_token(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 256 {
        Err("must be the code from your reset link".to_owned())
    } else {
        Ok(raw.to_owned())
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeEmail {
    /// The account's password: changing where the account's mail goes
    /// needs it, even with a session.
    #[schema(value_type = String, required = true)]
    pub current_password: Option<String>,
    #[schema(value_type = String, required = true, example = "ada@example.org",
             format = Email, max_length = 254)]
    pub new_email: Option<String>,
}

/// Change the signed-in user's email. A confirmation link goes to the new
/// address; nothing changes until it is used.
#[utoipa::path(post, path = "/api/v1/auth/email", tag = "auth",
    request_body = ChangeEmail,
    responses(
        (status = 202, body = ResetRequested, description = "The confirmation link is on its way to the new address"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "No valid session"),
        (status = 422, body = ErrorBody, description = "Missing fields, a malformed email, the same email, or a wrong password"),
        (status = 503, body = ErrorBody, description = "Too many sign-ins at once; retry shortly"),
    ))]
pub async fn change_email(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    ApiJson(body): ApiJson<ChangeEmail>,
) -> Result<(StatusCode, ApiJson<ResetRequested>), ApiError> {
    let mut check = FieldCheck::default();
    let password = check.required("current_password", body.current_password.as_deref(), |s| {
        Ok(s.to_owned())
    });
    let email = check.required("new_email", body.new_email.as_deref(), Email::parse);
    let (password, email) = check.done(|| {
        Ok((
            password.field("current_password")?,
            email.field("new_email")?,
        ))
    })?;
    state
        .services
        .accounts
        .request_email_change(&ctx.caller, password, email)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ResetRequested {
            message: "a link to confirm the new email is on its way to it; it works once, \
                      for a day, and nothing changes until it is used"
                .to_owned(),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct ConfirmEmail {
    /// The `token` from the confirmation link sent to the new address.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,256}$")]
    pub token: Option<String>,
}

/// Confirm an email change with the token sent to the new address. Every
/// session of the account ends; sign in with the new email.
#[utoipa::path(post, path = "/api/v1/auth/email/confirm", tag = "auth",
    request_body = ConfirmEmail,
    responses(
        (status = 204, description = "The email is changed; every session has ended"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 404, body = ErrorBody, description = "No such confirmation link"),
        (status = 409, body = ErrorBody, description = "The link was used already, or the email belongs to another account now"),
        (status = 410, body = ErrorBody, description = "The link has expired"),
        (status = 422, body = ErrorBody, description = "Missing token"),
    ))]
pub async fn confirm_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ConfirmEmail>,
) -> Result<StatusCode, ApiError> {
    let mut check = FieldCheck::default();
    let token = check.required("token", body.token.as_deref(), reset_token);
    let token = check.done(|| token.field("token"))?;
    state.services.accounts.confirm_email_change(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyEmail {
    /// The `token` from the confirmation link sent when the co-op was started.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,256}$")]
    pub token: Option<String>,
}

/// Confirm a founder's email with the token from the link sent when the
/// co-op was started; the co-op's held emails (invites, notices) go out.
/// Confirming an address that is confirmed already answers 204 too.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth",
    request_body = VerifyEmail,
    responses(
        (status = 204, description = "The email is confirmed; held emails go out"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 404, body = ErrorBody, description = "No such confirmation link"),
        (status = 410, body = ErrorBody, description = "The link has expired"),
        (status = 422, body = ErrorBody, description = "Missing token"),
    ))]
pub async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyEmail>,
) -> Result<StatusCode, ApiError> {
    let mut check = FieldCheck::default();
    let token = check.required("token", body.token.as_deref(), reset_token);
    let token = check.done(|| token.field("token"))?;
    state.services.accounts.verify_email(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
