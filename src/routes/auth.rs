use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Email, FieldCheck, PasswordHash, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::AuthUser;
use crate::http::json::ApiJson;
use crate::session::{COOKIE_NAME, SessionData, token_from_headers};
use crate::state::AppState;
use crate::store;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "ada@example.org")]
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: Me,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: Uuid,
    pub coop_id: Uuid,
    pub role: Role,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
}

impl From<&SessionData> for Me {
    fn from(s: &SessionData) -> Self {
        Self {
            user_id: s.user_id,
            coop_id: s.coop_id,
            role: s.role,
            email: s.email.clone(),
            family_id: s.family_id,
        }
    }
}

/// Log in; sets the `coop_session` cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "Logged in; a new session cookie is set"),
        (status = 401, body = ErrorBody, description = "Email or password is incorrect"),
        (status = 422, body = ErrorBody, description = "Missing fields"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let mut check = FieldCheck::default();
    let email = check.required("email", body.email.as_deref(), |s| Ok(s.to_owned()));
    let password = check.required("password", body.password.as_deref(), |s| Ok(s.to_owned()));
    check.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    // A malformed email cannot belong to anyone: same answer as a wrong one, after
    // the same amount of work.
    let user = match Email::parse(&email) {
        Ok(email) => store::coops::find_user_by_email(&state.db, &email).await?,
        Err(_) => None,
    };
    let stored_hash = user.as_ref().map(|u| PasswordHash(u.password_hash.clone()));
    let verified = PasswordHash::verify(stored_hash, password).await?;
    let user = match user {
        Some(user) if verified => user,
        _ => return Err(ApiError::InvalidCredentials),
    };

    // A log-in replaces whatever session the client had.
    if let Some(old) = token_from_headers(&headers) {
        state.sessions.delete(&old).await?;
    }
    let mut session = SessionData {
        user_id: user.id,
        coop_id: user.coop_id,
        role: user.role(),
        email: user.email.clone(),
        family_id: user.family_id,
        expires_at: 0,
    };
    let token = state.sessions.create(&mut session).await?;
    let cookie = session_cookie(
        &token,
        state.sessions.ttl().as_secs(),
        state.config.secure_cookies,
    );
    let mut response = ApiJson(LoginResponse {
        user: Me::from(&session),
    })
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Log out: the session is deleted from the shared store.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out (also when there was no session)")))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = token_from_headers(&headers) {
        state.sessions.delete(&token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.config.secure_cookies),
    );
    Ok(response)
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, body = Me),
        (status = 401, body = ErrorBody, description = "No valid session"),
    ))]
pub async fn me(AuthUser(session): AuthUser) -> ApiJson<Me> {
    ApiJson(Me::from(&session))
}

pub(crate) fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    // Tokens are URL-safe base64, so the value is always a valid header.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}
