//! Pages for people not signed in: the landing page, signing in and out,
//! founding a co-op, accepting an invite.

use super::forms::PostedForm;
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use coop_domain::{CoordinatorInput, NewCoop, NewCoopInput, Password};
use serde::Deserialize;

use super::errors::PageResult;
use super::forms::{Csrf, Form};
use super::layout::{INVITE_JS, Layout, local_path};
use super::{PageError, ok, page, redirect};
use crate::api::auth::session_cookie;
use crate::http::session_token;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing {
    layout: Layout,
    version: &'static str,
    tier: &'static str,
}

/// `/`: what this is; signed-in people go on to their home page.
pub async fn landing(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
) -> Response {
    if session_token(&headers).is_some() {
        return redirect("/home");
    }
    ok(&Landing {
        layout: Layout::new("Welcome", None, &csrf),
        version: env!("CARGO_PKG_VERSION"),
        tier: state.tier,
    })
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    layout: Layout,
    form: Form,
    next: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    done: Option<String>,
}

pub async fn sign_in_page(
    Extension(csrf): Extension<Csrf>,
    Query(q): Query<NextQuery>,
) -> Response {
    ok(&SignIn {
        layout: Layout::new("Sign in", None, &csrf).with_notice(q.done.as_deref()),
        form: Form::default(),
        next: local_path(q.next.as_deref()).to_owned(),
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
    PostedForm(form): PostedForm<SignInForm>,
) -> PageResult {
    let next = local_path(form.next.as_deref()).to_owned();
    let signed_in = state
        .services
        .accounts
        .log_in(&form.email, form.password, session_token(&headers))
        .await;
    match signed_in {
        Ok(signed_in) => Ok(with_session(&state, &signed_in.token, &next)),
        Err(coop_services::Error::InvalidCredentials) => Ok(page(
            StatusCode::UNAUTHORIZED,
            &SignIn {
                layout: Layout::new("Sign in", None, &csrf),
                form: Form::with(&[("email", form.email)]).failed(
                    Default::default(),
                    "The email or password is incorrect. Check both and try again, or ask your coordinator to send a new invite.",
                ),
                next,
            },
        )),
        Err(err) => Err(err.into()),
    }
}

/// Sets the session cookie and goes on to `to`.
fn with_session(state: &AppState, token: &str, to: &str) -> Response {
    let mut response = redirect(to);
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie(
            token,
            state.services.accounts.session_ttl().as_secs(),
            state.http.secure_cookies(),
        ),
    );
    response
}

pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    state
        .services
        .accounts
        .log_out(session_token(&headers))
        .await?;
    let mut response = redirect("/");
    response.headers_mut().append(
        header::SET_COOKIE,
        session_cookie("", 0, state.http.secure_cookies()),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUp {
    layout: Layout,
    form: Form,
}

pub async fn sign_up_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&SignUp {
        layout: Layout::new("Start a co-op", None, &csrf),
        form: Form::default(),
    })
}

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    coop_name: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_up(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<SignUpForm>,
) -> PageResult {
    let again = |errors, summary: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SignUp {
                layout: Layout::new("Start a co-op", None, &csrf),
                form: Form::with(&[
                    ("coop_name", form.coop_name.clone()),
                    ("name", form.name.clone()),
                    ("email", form.email.clone()),
                ])
                .failed(errors, summary),
            },
        )
    };
    let parsed = NewCoop::parse(NewCoopInput {
        name: Some(&form.coop_name),
        coordinator: Some(CoordinatorInput {
            name: Some(&form.name),
            email: Some(&form.email),
            password: Some(&form.password),
        }),
    });
    let new = match parsed {
        Ok(new) => new,
        Err(invalid) => {
            // The domain names the API's fields; the form's are flat.
            let errors = invalid
                .0
                .into_iter()
                .map(|(field, problem)| {
                    let field = match field.as_str() {
                        "name" => "coop_name",
                        "coordinator.name" => "name",
                        "coordinator.email" => "email",
                        "coordinator.password" => "password",
                        other => other,
                    };
                    (field.to_owned(), problem)
                })
                .collect();
            return Ok(again(errors, ""));
        }
    };
    // Created or not (an address with an account gets an email instead),
    // the page says the same: the sign-up tells nobody which addresses
    // have accounts.
    state.services.accounts.create_coop(new, None).await?;
    Ok(redirect("/sign-in?done=check-email"))
}

#[derive(Template)]
#[template(path = "accept_invite.html")]
struct AcceptInvite {
    layout: Layout,
    form: Form,
    script: &'static str,
}

pub async fn accept_invite_page(Extension(csrf): Extension<Csrf>) -> Response {
    ok(&AcceptInvite {
        layout: Layout::new("Create your family's account", None, &csrf),
        form: Form::default(),
        script: INVITE_JS,
    })
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn accept_invite(
    State(state): State<AppState>,
    Extension(csrf): Extension<Csrf>,
    PostedForm(form): PostedForm<AcceptForm>,
) -> PageResult {
    let again = |errors, summary: String| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &AcceptInvite {
                layout: Layout::new("Create your family's account", None, &csrf),
                form: Form::with(&[("token", form.token.clone())]).failed(errors, summary),
                script: INVITE_JS,
            },
        )
    };
    let token = form.token.trim();
    let password = match Password::parse(&form.password) {
        Ok(password) => password,
        Err(problem) => {
            let mut errors = coop_domain::FieldErrors::new();
            errors.insert("password".into(), format!("The password {problem}."));
            return Ok(again(errors, String::new()));
        }
    };
    if token.is_empty() {
        let mut errors = coop_domain::FieldErrors::new();
        errors.insert(
            "token".into(),
            "Paste the invite code from your welcome email.".into(),
        );
        return Ok(again(errors, String::new()));
    }
    match state.services.accounts.accept_invite(token, password).await {
        Ok(signed_in) => Ok(with_session(
            &state,
            &signed_in.token,
            "/home?done=account-ready",
        )),
        Err(coop_services::Error::NotFound(message))
        | Err(coop_services::Error::Gone { message, .. })
        | Err(coop_services::Error::Conflict { message, .. }) => {
            Ok(again(Default::default(), message))
        }
        Err(err) => Err(PageError::from(err)),
    }
}
