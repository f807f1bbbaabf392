//! Forms: their values and problems for re-display, and the CSRF guard.
//!
//! CSRF: a random token in an HttpOnly, SameSite=Strict cookie (`coop_csrf`),
//! repeated in a hidden field of every form; a POST whose field does not
//! match its cookie is refused with a page saying to reload. Another site can
//! neither read the cookie nor make the browser send it, so it cannot forge
//! the pair (the double-submit pattern with a cookie only our pages can see).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coop_domain::FieldErrors;
use http_body_util::BodyExt;

use super::PageError;
use crate::http::cookie;
use crate::state::AppState;

pub const CSRF_COOKIE: &str = "coop_csrf";

/// The request's CSRF token (set by `guard`).
#[derive(Clone, Debug)]
pub struct Csrf(pub String);

impl Csrf {
    pub fn of(parts: &Parts) -> Self {
        parts
            .extensions
            .get::<Csrf>()
            .cloned()
            .unwrap_or_else(|| Csrf(String::new()))
    }
}

/// Gives every page request its CSRF token (a new cookie when it has none),
/// and refuses a form post whose token does not match.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let existing = cookie(req.headers(), CSRF_COOKIE)
        .filter(|t| coop_domain::token::plausible(t))
        .map(str::to_owned);
    if req.method() == Method::POST {
        let Some(expected) = existing.clone() else {
            return PageError::Csrf.into_response();
        };
        let (parts, body) = req.into_parts();
        let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
            return PageError::BadForm("the form could not be read".into()).into_response();
        };
        let sent: Option<String> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
        if sent
            .as_deref()
            .is_none_or(|sent| !constant_time_eq(sent, &expected))
        {
            return PageError::Csrf.into_response();
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(coop_domain::token::generate);
    req.extensions_mut().insert(Csrf(token.clone()));
    let mut response = next.run(req).await;
    if fresh {
        let secure = if state.http.secure_cookies() {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!("{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    response
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A form's values (to show them again) and problems (next to their fields).
#[derive(Default)]
pub struct Form {
    values: BTreeMap<String, String>,
    errors: FieldErrors,
    summary: String,
}

impl Form {
    pub fn with(values: &[(&str, String)]) -> Self {
        Self {
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn failed(mut self, errors: FieldErrors, summary: impl Into<String>) -> Self {
        self.errors = errors;
        self.summary = summary.into();
        self
    }

    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    pub fn error(&self, name: &str) -> Option<&str> {
        self.errors.get(name).map(String::as_str)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || !self.summary.is_empty()
    }

    pub fn summary(&self) -> &str {
        if self.summary.is_empty() {
            "Some fields need attention: see the messages next to them."
        } else {
            &self.summary
        }
    }
}

/// A posted form's fields. A body that cannot be read (a field twice, bad
/// encoding, another content type) gets a page in plain words, never the
/// framework's plain-text rejection.
pub struct PostedForm<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for PostedForm<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(fields)) => Ok(Self(fields)),
            Err(_) => Err(PageError::BadForm(
                "the form could not be read (a field came twice, or in a form Coop does not \
                 know)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
