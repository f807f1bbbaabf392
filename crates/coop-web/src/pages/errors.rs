//! Errors a person can meet, as pages in plain words that say what to do next.
//! Nothing here ever shows JSON or a stack trace; internal errors are logged
//! and shown as an apology.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::forms::Csrf;
use super::layout::Layout;
use super::{page, redirect};

#[derive(Debug)]
pub enum PageError {
    NotFound(String),
    Forbidden(String),
    /// A conflict the person can resolve (e.g. a schedule clash).
    Conflict(String),
    Gone(String),
    /// The form's token did not match: a stale page or another site's form.
    Csrf,
    BadForm(String),
    /// Sign in first.
    SignIn,
    Unavailable(String),
    Internal(anyhow::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: &'static str,
    message: String,
    next: &'static str,
}

impl From<coop_services::Error> for PageError {
    fn from(err: coop_services::Error) -> Self {
        use coop_services::Error as E;
        match err {
            E::NotFound(m) => Self::NotFound(m),
            E::Forbidden(m) => Self::Forbidden(m),
            E::Unauthenticated => Self::SignIn,
            E::Conflict { message, .. } => Self::Conflict(message),
            E::Gone { message, .. } => Self::Gone(message),
            E::VersionMismatch(m) => Self::Conflict(m),
            E::TakenOver => Self::Conflict("this was already being done; reload the page".into()),
            E::Unavailable { dependency, source } => {
                tracing::warn!(dependency, error = %source, "dependency unavailable");
                Self::Unavailable(format!("{dependency} is unavailable right now"))
            }
            E::Invalid(invalid) => Self::BadForm(invalid.to_string()),
            E::Unprocessable { message, .. } | E::TooLarge { message, .. } => {
                Self::BadForm(message)
            }
            E::InvalidCredentials => Self::BadForm("the email or password is incorrect".into()),
            E::Internal(err) => Self::Internal(err),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message, next) = match self {
            Self::SignIn => return redirect("/sign-in"),
            Self::NotFound(m) => (
                StatusCode::NOT_FOUND,
                "Not found",
                m,
                "It may have been removed, or the link may be incomplete. Go back, or start again from your home page.",
            ),
            Self::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "Not for this account",
                m,
                "If you think you should see this, ask your co-op's coordinator.",
            ),
            Self::Conflict(m) => (
                StatusCode::CONFLICT,
                "That could not be done",
                m,
                "Go back, change what the message says, and try again.",
            ),
            Self::Gone(m) => (
                StatusCode::GONE,
                "This link has expired",
                m,
                "Ask your co-op's coordinator for a new one.",
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Please try that again",
                "This form was sent from an old page or from another site, so it was not accepted."
                    .to_owned(),
                "Go back, reload the page, and send the form again.",
            ),
            Self::BadForm(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Something in the form needs attention",
                m,
                "Go back, correct it, and send the form again.",
            ),
            Self::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Coop is busy",
                m,
                "Nothing was lost. Wait a few seconds and try again.",
            ),
            Self::Internal(err) => {
                tracing::error!(error = ?err, "internal error on a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side",
                    "We have logged it and will look into it.".to_owned(),
                    "Try again in a moment; if it keeps happening, tell your co-op's coordinator.",
                )
            }
        };
        let layout = Layout::new(heading, None, &Csrf(String::new()));
        let mut response = page(
            status,
            &ErrorPage {
                layout,
                heading,
                message,
                next,
            },
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        response
    }
}

/// A page route's result.
pub type PageResult = Result<Response, PageError>;

/// Any plain-text 4xx a page route answers (the framework's rejection of a
/// query or path it cannot read, e.g. a parameter given twice) becomes a
/// page in plain words: a person never sees a bare framework message.
pub async fn plain_rejections_as_pages(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() && plain) {
        return response;
    }
    match status {
        StatusCode::NOT_FOUND => PageError::NotFound("There is no page at this address.".into()),
        _ => PageError::BadForm(
            "the address or form could not be read (a part came twice, or in a shape Coop \
             does not know)"
                .into(),
        ),
    }
    .into_response()
}
