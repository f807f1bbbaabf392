//! Pages for an account's credentials: a forgotten password reset from an
//! emailed link, the password and the email changed on the profile (a new
//! email confirmed from a link sent to it), and signing out everywhere.

use super::forms::PostedForm;
use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use coop_domain::{Email, FieldErrors, Password};
use serde::Deserialize;

use super::errors::PageResult;
use super::forms::{Csrf, Form};
use super::layout::{INVITE_JS, Layout, SignedInPage, capitalized};
use super::{PageError, ok, page, redirect};
use crate::api::account::reset_token;
use crate::api::auth::session_cookie;
use crate::http::session_token;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct Forgot {
    layout: Layout,
    form: Form,
    sent: bool,
}

pub async fn forgot_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&Forgot {
        layout: Layout::new("Forgot your password?", None, &csrf),
        form: Form::default(),
        sent: false,
    })
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

/// Answers the same whether or not the email has an account.
pub async fn forgot(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<ForgotForm>,
) -> PageResult {
    if form.email.trim().is_empty() {
        let mut errors = FieldErrors::new();
        errors.insert("email".into(), "Enter the email you sign in with.".into());
        return Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Forgot {
                layout: Layout::new("Forgot your password?", None, &csrf),
                form: Form::default().failed(errors, ""),
                sent: false,
            },
        ));
    }
    state
        .services
        .accounts
        .request_password_reset(form.email.trim())
        .await?;
    Ok(ok(&Forgot {
        layout: Layout::new("Forgot your password?", None, &csrf),
        form: Form::default(),
        sent: true,
    }))
}

#[derive(Template)]
#[template(path = "reset_password.html")]
struct Reset {
    layout: Layout,
    form: Form,
    script: &'static str,
}

pub async fn reset_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&Reset {
        layout: Layout::new("Choose a new password", None, &csrf),
        form: Form::default(),
        script: INVITE_JS,
    })
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<ResetForm>,
) -> PageResult {
    let again = |errors, summary: String| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Reset {
                layout: Layout::new("Choose a new password", None, &csrf),
                form: Form::with(&[("token", form.token.clone())]).failed(errors, summary),
                script: INVITE_JS,
            },
        )
    };
    let mut errors = FieldErrors::new();
    let token = reset_token(&form.token)
        .map_err(|_| {
            errors.insert(
                "token".into(),
                "Paste the code from your reset email.".into(),
            )
        })
        .ok();
    let password = Password::parse(&form.password)
        .map_err(|problem| errors.insert("password".into(), format!("The password {problem}.")))
        .ok();
    let (Some(token), Some(password)) = (token, password) else {
        return Ok(again(errors, String::new()));
    };
    match state
        .services
        .accounts
        .reset_password(&token, password)
        .await
    {
        Ok(()) => Ok(redirect("/sign-in?done=password-reset")),
        Err(coop_services::Error::NotFound(message))
        | Err(coop_services::Error::Gone { message, .. })
        | Err(coop_services::Error::Conflict { message, .. }) => Ok(again(
            Default::default(),
            format!(
                "{}. You can ask for a new link on the sign-in page.",
                capitalized(&message)
            ),
        )),
        Err(err) => Err(PageError::from(err)),
    }
}

#[derive(Template)]
#[template(path = "profile.html")]
pub(super) struct Profile {
    pub layout: Layout,
    pub email: String,
    pub role: &'static str,
    /// The password form (with its problems, after a failed change).
    pub form: Form,
    /// The email form.
    pub email_form: Form,
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change(
    State(state): State<AppState>,
    me: SignedInPage,
    headers: HeaderMap,
    PostedForm(form): PostedForm<ChangeForm>,
) -> PageResult {
    let again = |errors: FieldErrors| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Profile {
                layout: me.layout("Profile"),
                email: me.ctx.caller.email.clone(),
                role: me.ctx.caller.role.as_str(),
                form: Form::default().failed(errors, ""),
                email_form: Form::default(),
            },
        )
    };
    let new = match Password::parse(&form.new_password) {
        Ok(new) => new,
        Err(problem) => {
            let mut errors = FieldErrors::new();
            errors.insert(
                "new_password".into(),
                format!("The new password {problem}."),
            );
            return Ok(again(errors));
        }
    };
    match state
        .services
        .accounts
        .change_password(
            &me.ctx.caller,
            session_token(&headers),
            form.current_password,
            new,
        )
        .await
    {
        Ok(()) => Ok(redirect("/profile?done=password-changed")),
        Err(coop_services::Error::Invalid(_)) => {
            let mut errors = FieldErrors::new();
            errors.insert(
                "current_password".into(),
                "This is not your current password. Type it again; if you forgot it, sign out and use \u{201c}Forgot your password?\u{201d}.".into(),
            );
            Ok(again(errors))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn sign_out_everywhere(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    state
        .services
        .accounts
        .sign_out_everywhere(&me.ctx.caller)
        .await?;
    let mut response = redirect("/sign-in?done=signed-out-everywhere");
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie("", 0, state.http.secure_cookies()),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    new_email: String,
    #[serde(default)]
    email_password: String,
}

pub async fn change_email(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(form): PostedForm<EmailForm>,
) -> PageResult {
    let again = |errors: FieldErrors| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Profile {
                layout: me.layout("Profile"),
                email: me.ctx.caller.email.clone(),
                role: me.ctx.caller.role.as_str(),
                form: Form::default(),
                email_form: Form::with(&[("new_email", form.new_email.clone())]).failed(errors, ""),
            },
        )
    };
    let new_email = match Email::parse(form.new_email.trim()) {
        Ok(email) => email,
        Err(problem) => {
            let mut errors = FieldErrors::new();
            errors.insert("new_email".into(), format!("The email {problem}."));
            return Ok(again(errors));
        }
    };
    match state
        .services
        .accounts
        .request_email_change(&me.ctx.caller, form.email_password, new_email)
        .await
    {
        Ok(()) => Ok(redirect("/profile?done=email-sent")),
        Err(coop_services::Error::Invalid(invalid)) => {
            let errors = invalid
                .0
                .into_iter()
                .map(|(field, problem)| match field.as_str() {
                    "current_password" => (
                        "email_password".to_owned(),
                        "This is not your password. Type it again.".to_owned(),
                    ),
                    _ => ("new_email".to_owned(), format!("This email {problem}.")),
                })
                .collect();
            Ok(again(errors))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "confirm_email.html")]
struct ConfirmEmail {
    layout: Layout,
    form: Form,
    script: &'static str,
}

pub async fn confirm_email_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&ConfirmEmail {
        layout: Layout::new("Confirm your new email", None, &csrf),
        form: Form::default(),
        script: INVITE_JS,
    })
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    token: String,
}

pub async fn confirm_email(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<ConfirmForm>,
) -> PageResult {
    let again = |errors, summary: String| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &ConfirmEmail {
                layout: Layout::new("Confirm your new email", None, &csrf),
                form: Form::with(&[("token", form.token.clone())]).failed(errors, summary),
                script: INVITE_JS,
            },
        )
    };
    let token = match pasted_code(&form.token) {
        Ok(token) => token,
        Err(errors) => return Ok(again(errors, String::new())),
    };
    match state.services.accounts.confirm_email_change(&token).await {
        Ok(()) => {
            let mut response = redirect("/sign-in?done=email-changed");
            response.headers_mut().append(
                header::SET_COOKIE,
                session_cookie("", 0, state.http.secure_cookies()),
            );
            Ok(response)
        }
        Err(err) => Ok(again(Default::default(), unusable_link(err)?)),
    }
}

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyEmail {
    layout: Layout,
    form: Form,
    script: &'static str,
}

pub async fn verify_email_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&VerifyEmail {
        layout: Layout::new("Confirm your email", None, &csrf),
        form: Form::default(),
        script: INVITE_JS,
    })
}

/// A founder confirms their email: the co-op's held emails go out.
pub async fn verify_email(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<ConfirmForm>,
) -> PageResult {
    let again = |errors, summary: String| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &VerifyEmail {
                layout: Layout::new("Confirm your email", None, &csrf),
                form: Form::with(&[("token", form.token.clone())]).failed(errors, summary),
                script: INVITE_JS,
            },
        )
    };
    let token = match pasted_code(&form.token) {
        Ok(token) => token,
        Err(errors) => return Ok(again(errors, String::new())),
    };
    match state.services.accounts.verify_email(&token).await {
        Ok(()) => Ok(redirect("/home?done=email-verified")),
        Err(err) => Ok(again(Default::default(), unusable_link(err)?)),
    }
}

/// The code from a confirmation email, as pasted into the form (or copied
/// there from the link by the page's script), or the field's error.
fn pasted_code(raw: &str) -> Result<String, FieldErrors> {
    reset_token(raw).map_err(|_| {
        let mut errors = FieldErrors::new();
        errors.insert(
            "token".into(),
            "Paste the code from the confirmation email.".into(),
        );
        errors
    })
}

/// A link that cannot be used (unknown, used or expired) is said on the
/// form, in the service's words; any other failure is the page's error.
fn unusable_link(err: coop_services::Error) -> Result<String, PageError> {
    match err {
        coop_services::Error::NotFound(message)
        | coop_services::Error::Gone { message, .. }
        | coop_services::Error::Conflict { message, .. } => {
            Ok(format!("{}.", capitalized(&message)))
        }
        err => Err(PageError::from(err)),
    }
}
