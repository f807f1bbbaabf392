//! Accepting the invite from a welcome email: creates the family's account.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{LoginResponse, Me, session_cookie};
use crate::domain::{FieldCheck, Password, Role};
use crate::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::jobs::effects::hash_token;
use crate::session::SessionData;
use crate::state::AppState;
use crate::store::invites::{AcceptOutcome, NewFamilyUser};
use crate::store::{self, jobs::now_ms};

#[derive(Deserialize, ToSchema)]
pub struct AcceptInvite {
    /// The `token` from the invite link in the welcome email.
    pub token: Option<String>,
    /// At least 10 characters.
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
    check.finish()?;
    let (Some(token), Some(password)) = (token, password) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    let invite = store::invites::find(&state.db, &hash_token(&token))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(
                "this invite does not exist; check that you copied the whole link, \
                 or ask your co-op's coordinator for a new one"
                    .into(),
            )
        })?;
    if invite.used_at.is_some() {
        return Err(used());
    }
    if invite.expires_at < now_ms() {
        return Err(ApiError::Gone {
            code: "invite_expired",
            message: "this invite has expired; ask your co-op's coordinator to enroll you again \
                      or send a new invite"
                .into(),
        });
    }
    let family = store::families::get(&state.db, invite.coop_id, invite.family_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound("the family this invite was for no longer exists".into())
        })?;
    let password_hash = password.hash().await?;
    let user_id = Uuid::now_v7();
    let user = NewFamilyUser {
        user_id,
        email: &family.email,
        name: &family.family_name,
        password_hash: &password_hash.0,
    };
    match store::invites::accept(&state.db, &invite, &user).await? {
        AcceptOutcome::Accepted => {}
        AcceptOutcome::AlreadyUsed => return Err(used()),
        AcceptOutcome::AccountExists => {
            return Err(ApiError::Conflict {
                code: "account_exists",
                message: format!(
                    "an account for {} exists already; log in with it instead",
                    family.email
                ),
                fields: None,
            });
        }
    }

    let mut session = SessionData {
        user_id,
        coop_id: invite.coop_id,
        role: Role::Family,
        email: family.email.clone(),
        family_id: Some(family.id),
        expires_at: 0,
    };
    let token = state.sessions.create(&mut session).await?;
    let cookie = session_cookie(
        &token,
        state.sessions.ttl().as_secs(),
        state.config.secure_cookies,
    );
    let mut response = (
        StatusCode::CREATED,
        ApiJson(LoginResponse {
            user: Me::from(&session),
        }),
    )
        .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

fn used() -> ApiError {
    ApiError::Conflict {
        code: "invite_used",
        message: "this invite was used already; log in with the password chosen then".into(),
        fields: None,
    }
}

/// The page the invite link opens: choose a password, then it calls the API. The
/// file links the stylesheet by its logical name; served, it links the hashed one.
pub async fn accept_invite_page() -> Html<&'static str> {
    static PAGE: LazyLock<String> =
        LazyLock::new(|| crate::assets::link_hashed(include_str!("accept_invite.html")));
    Html(PAGE.as_str())
}
