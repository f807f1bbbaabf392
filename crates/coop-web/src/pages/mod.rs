//! The web app: server-rendered pages from compile-time-checked askama
//! templates (`templates/`), calling the same services as the JSON API (one
//! set of rules, two faces). Every form works without JavaScript: it posts,
//! and the answer redirects (post/redirect/get) or shows the form again with
//! each problem next to its field. htmx (vendored, `/static/htmx.*.js`) only
//! enhances: "load more", live seats left. No inline scripts or styles, so the
//! strict Content-Security-Policy holds.
//!
//! Why askama: templates are checked and compiled with the crate (a typo in a
//! field name is a build error, not a blank page), rendering is a plain
//! function call (fast enough for the catalog's budget), and it is what
//! rustdoc and docs.rs use.
//!
//! Pages for signed-in people are `Cache-Control: private, no-store`: no
//! shared cache may keep them. Forms carry a CSRF token (`forms::Csrf`).

mod account;
mod coop;
mod coordinator;
mod errors;
mod family;
mod forms;
mod layout;
mod operations;
mod password;
mod public;
mod teaching;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use errors::{PageError, plain_rejections_as_pages};
pub use forms::{Csrf, Form, guard as csrf_guard};
pub use layout::{Layout, Nav, SignedInPage};

use crate::state::AppState;

/// Every page route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(public::landing))
        .route("/sign-in", get(public::sign_in_page).post(public::sign_in))
        .route("/sign-out", post(public::sign_out))
        .route("/sign-up", get(public::sign_up_page).post(public::sign_up))
        .route(
            "/accept-invite",
            get(public::accept_invite_page).post(public::accept_invite),
        )
        .route("/home", get(account::home))
        .route("/profile", get(account::profile))
        .route("/profile/password", post(password::change))
        .route("/profile/email", post(password::change_email))
        .route(
            "/confirm-email",
            get(password::confirm_email_page).post(password::confirm_email),
        )
        .route(
            "/verify-email",
            get(password::verify_email_page).post(password::verify_email),
        )
        .route(
            "/profile/sign-out-everywhere",
            post(password::sign_out_everywhere),
        )
        .route(
            "/forgot-password",
            get(password::forgot_page).post(password::forgot),
        )
        .route(
            "/reset-password",
            get(password::reset_page).post(password::reset),
        )
        .route("/announcements", get(account::announcements))
        .route("/announcements/{id}", get(account::announcement))
        .route(
            "/announcements/new",
            get(coordinator::new_announcement_page).post(coordinator::send_announcement),
        )
        .route("/families", get(coordinator::families))
        .route(
            "/families/new",
            get(coordinator::new_family_page).post(coordinator::add_family),
        )
        .route("/families/{id}", get(coordinator::family))
        .route(
            "/families/{id}/edit",
            get(coordinator::edit_family_page).post(coordinator::edit_family),
        )
        .route("/families/{id}/remove", post(coordinator::remove_family))
        .route("/families/{id}/invite", post(coordinator::resend_invite))
        .route("/families/{id}/payments", post(coordinator::charge_family))
        .route(
            "/families/{id}/payments/{payment_id}/retry",
            post(coordinator::retry_payment),
        )
        .route(
            "/families/{id}/children/new",
            get(family::new_child_page).post(family::add_child),
        )
        .route("/semesters", get(coordinator::semesters))
        .route(
            "/semesters/new",
            get(coordinator::new_semester_page).post(coordinator::add_semester),
        )
        .route("/semesters/{id}", get(coordinator::semester))
        .route(
            "/semesters/{id}/edit",
            get(coordinator::edit_semester_page).post(coordinator::edit_semester),
        )
        .route(
            "/semesters/{id}/classes/new",
            get(coordinator::new_class_page).post(coordinator::add_class),
        )
        .route("/classes/{id}", get(teaching::class))
        .route(
            "/classes/{id}/edit",
            get(coordinator::edit_class_page).post(coordinator::edit_class),
        )
        .route("/classes/{id}/enroll", post(family::enroll))
        .route("/classes/{id}/drop", post(family::drop_class))
        .route("/classes/{id}/seats", get(family::seats))
        .route("/jobs", get(coordinator::jobs))
        .route("/coop", get(coop::show))
        .route("/coop/export", post(coop::export))
        .route("/coop/deletion", post(coop::delete))
        .route("/coop/deletion/cancel", post(coop::cancel))
        .route("/jobs/{id}/retry", post(coordinator::retry_job))
        .route("/catalog", get(family::catalog))
        .route("/schedule", get(family::schedule))
        .route("/schedule/feed", post(family::new_feed))
        .route("/pay", get(family::pay_page).post(family::pay))
        .route("/teaching", get(teaching::teaching))
        .route("/operations", get(operations::page))
        .route("/operations/charts", get(operations::fragment))
}

/// What a page may load and where its forms may go: only this origin, no
/// inline script or style (htmx is configured in base.html to add none), no
/// framing. Set on every page, error pages included.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every page and page redirect carries: never stored by shared
/// caches, the policy above, and no referrer to other sites (an invite link
/// holds its token in the address).
fn harden(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A rendered page, never stored by shared caches.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, axum::response::Html(html)).into_response();
            harden(response.headers_mut());
            response
        }
        Err(err) => PageError::Internal(anyhow::anyhow!("rendering a page: {err}")).into_response(),
    }
}

/// `page` with 200.
pub fn ok(template: &impl Template) -> Response {
    page(StatusCode::OK, template)
}

/// After a successful form: `303 See Other`, so a reload does not post again.
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    harden(response.headers_mut());
    response
}
