//! `/api/v1/auth`: logging in and out, and who is logged in.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::{FieldCheck, Parsed, Role};
use coop_services::Caller;
use coop_services::accounts::SignedIn as NewSession;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::http::auth::AnySession;
use crate::http::json::ApiJson;
use crate::http::{session_cookie_name, session_token};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Any string: one that is no account's email is answered like a wrong
    /// password (401).
    #[schema(value_type = String, required = true, example = "ada@example.org")]
    pub email: Option<String>,
    /// Any string; a wrong one is a 401.
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: Me,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Coordinator,
    Family,
    Operator,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: Uuid,
    /// The caller's co-op; the nil UUID for a platform operator, who belongs
    /// to none.
    pub coop_id: Uuid,
    #[schema(value_type = RoleName)]
    pub role: Role,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
}

impl From<&Caller> for Me {
    fn from(caller: &Caller) -> Self {
        Self {
            user_id: caller.user_id,
            coop_id: caller.coop_id,
            role: caller.role,
            email: caller.email.clone(),
            family_id: caller.family_id,
        }
    }
}

/// Log in; sets the `coop_session` cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "Logged in; a new session cookie is set"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 401, body = ErrorBody, description = "Email or password is incorrect"),
        (status = 422, body = ErrorBody, description = "Missing fields"),
        (status = 503, body = ErrorBody, description = "Too many sign-ins at once; retry shortly"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let mut check = FieldCheck::default();
    let email = check.required("email", body.email.as_deref(), |s| Ok(s.to_owned()));
    let password = check.required("password", body.password.as_deref(), |s| Ok(s.to_owned()));
    let (email, password) =
        check.done(|| Ok((email.field("email")?, password.field("password")?)))?;
    // A log-in replaces whatever session the client had.
    let signed_in = state
        .services
        .accounts
        .log_in(&email, password, session_token(&headers))
        .await?;
    Ok(session_response(&state, StatusCode::OK, signed_in))
}

/// Log out: the session is deleted from the shared store.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out (also when there was no session)")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .services
        .accounts
        .log_out(session_token(&headers))
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.http.secure_cookies()),
    );
    Ok(response)
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, body = Me),
        (status = 401, body = ErrorBody, description = "No valid session"),
    ))]
pub async fn me(AnySession(ctx): AnySession) -> ApiJson<Me> {
    ApiJson(Me::from(&ctx.caller))
}

/// The answer to a request that began a session: the user, and the cookie.
pub(crate) fn session_response(
    state: &AppState,
    status: StatusCode,
    signed_in: NewSession,
) -> Response {
    let cookie = session_cookie(
        &signed_in.token,
        state.services.accounts.session_ttl().as_secs(),
        state.http.secure_cookies(),
    );
    let mut response = (
        status,
        ApiJson(LoginResponse {
            user: Me::from(&signed_in.caller),
        }),
    )
        .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

pub(crate) fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let name = session_cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    // Tokens are URL-safe base64, so the value is always a valid header.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}
