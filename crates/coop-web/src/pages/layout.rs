//! What every page shows around its content, and who is looking.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use coop_domain::Role;
use coop_services::Ctx;
use uuid::Uuid;

use super::forms::Csrf;
use super::redirect;
use crate::http::auth::request_read_after;
use crate::http::session_token;
use crate::state::AppState;

/// The signed-in person, for the navigation.
#[derive(Clone)]
pub struct Nav {
    pub email: String,
    pub coordinator: bool,
    /// Families see a "Teaching" link (a parent may teach classes).
    pub teaches: bool,
    /// Platform operators see the operations page and nothing of any co-op.
    pub operator: bool,
    pub family_id: Option<Uuid>,
}

/// The frame of a page: its title, the assets, the navigation and a notice.
pub struct Layout {
    pub title: String,
    pub css: &'static str,
    pub icon: &'static str,
    pub htmx: &'static str,
    pub nav: Option<Nav>,
    pub csrf: String,
    pub notice: Option<&'static str>,
}

const CSS: &str = crate::assets::url("coop.css");
const ICON: &str = crate::assets::url("favicon.svg");
const HTMX: &str = crate::assets::url("htmx.js");
pub const INVITE_JS: &str = crate::assets::url("invite.js");

impl Layout {
    pub fn new(title: impl Into<String>, nav: Option<Nav>, csrf: &Csrf) -> Self {
        Self {
            title: title.into(),
            css: CSS,
            icon: ICON,
            htmx: HTMX,
            nav,
            csrf: csrf.0.clone(),
            notice: None,
        }
    }

    /// A notice after a redirect (`?done=…`): known codes only, so no text
    /// from a URL ever reaches a page.
    pub fn with_notice(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(notice);
        self
    }
}

fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "signed-in" => "You are signed in.",
        "family-added" => {
            "The family is enrolled; their welcome email with an invite is on its way."
        }
        "family-saved" => "The family's details are saved.",
        "family-removed" => "The family is removed.",
        "invite-sent" => "A new invite is on its way to the family.",
        "child-added" => "The child is added.",
        "semester-saved" => "The semester is saved.",
        "class-saved" => "The class is saved.",
        "enrolled" => "Enrolled: the seat is yours.",
        "waitlisted" => {
            "The class is full: you are on the waitlist, and we will email you if a seat opens."
        }
        "already" => "Nothing changed: the child already had that place.",
        "dropped" => "Dropped. If the class had a waitlist, the next child gets the seat.",
        "announced" => "The announcement is on its way to every family.",
        "charged" => "The payment is on its way to the provider.",
        "retried" => "The job will run again shortly.",
        "paid" => "Thank you: your payment is on its way to the provider.",
        "check-email" => {
            "Check your email: a link to confirm it is on its way. Sign in now to set up \
             your co-op; families get their invites once you confirm."
        }
        "email-verified" => "Your email is confirmed: invites and notices go out now.",
        "account-ready" => "Your family's account is ready.",
        "password-changed" => "Your password is changed; your other devices are signed out.",
        "password-reset" => "Your password is changed. Sign in with it.",
        "signed-out-everywhere" => "You are signed out on every device.",
        "email-sent" => {
            "A link to confirm your new email is on its way to it. Your email changes when you open it."
        }
        "email-changed" => "Your email is changed. Sign in with the new one.",
        "export-asked" => "The export is being built; we will email you when it is ready.",
        "deletion-scheduled" => {
            "The co-op's deletion is scheduled; every coordinator is emailed. You can cancel it here."
        }
        "deletion-cancelled" => "The deletion is cancelled: the co-op stays.",
        _ => return None,
    })
}

/// A signed-in page request: the services' context and the frame's parts.
/// Without a live session, the person is sent to sign in (and back after).
pub struct SignedInPage {
    pub ctx: Ctx,
    pub nav: Nav,
    pub csrf: Csrf,
}

impl SignedInPage {
    pub fn layout(&self, title: impl Into<String>) -> Layout {
        Layout::new(title, Some(self.nav.clone()), &self.csrf)
    }

    pub fn coordinator(&self) -> bool {
        self.ctx.caller.role == Role::Coordinator
    }
}

impl FromRequestParts<AppState> for SignedInPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let csrf = Csrf::of(parts);
        let back = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/home");
            redirect(&format!("/sign-in?next={}", encode(next)))
        };
        let Some(token) = session_token(&parts.headers) else {
            return Err(back());
        };
        let read_after = request_read_after(parts);
        let caller = match state.services.accounts.caller(token, &read_after).await {
            Ok(Some(caller)) => caller,
            Ok(None) => return Err(back()),
            Err(err) => return Err(super::PageError::from(err).into_response()),
        };
        if caller.role == Role::Operator {
            // Operators belong to no co-op: every co-op page refuses them.
            // Their home is the operations page (sign-in lands on /home).
            if parts.uri.path() == "/home" {
                return Err(redirect("/operations"));
            }
            let refused = coop_services::Error::Forbidden(
                "Operators see no co-op's pages. The operations page is at /operations.".into(),
            );
            return Err(super::PageError::from(refused).into_response());
        }
        crate::http::trace::record_coop(caller.coop_id);
        let nav = Nav {
            email: caller.email.clone(),
            coordinator: caller.role == Role::Coordinator,
            teaches: caller.role == Role::Family,
            operator: false,
            family_id: caller.family_id,
        };
        Ok(Self {
            ctx: Ctx::new(caller, read_after),
            nav,
            csrf,
        })
    }
}

/// Percent-encodes a path for a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Only a local path may be a place to go back to (no open redirect).
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/home",
    }
}

/// `text` with its first letter upper-case: a service's message, or a
/// weekday, at the start of a sentence.
pub fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}
