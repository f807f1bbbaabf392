//! The HTTP API: one module per resource, gathered into one router here.

pub mod admin;
pub mod auth;
pub mod calendar;
pub mod coops;
pub mod docs;
pub mod families;
pub mod health;
pub mod invites;
pub mod payments;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::http::{MAX_BODY_BYTES, fallback, idempotency, metrics, read_after, timeout};
use crate::state::AppState;

/// The whole application. Layers listed later wrap the ones listed earlier.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/coops", post(coops::create_coop))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/accept-invite", post(invites::accept_invite))
        .route(
            "/api/v1/families",
            get(families::list_families).post(families::create_family),
        )
        .route(
            "/api/v1/families/{id}",
            get(families::get_family)
                .put(families::update_family)
                .delete(families::delete_family),
        )
        .route(
            "/api/v1/families/{id}/calendar.ics",
            get(calendar::family_calendar),
        )
        .route(
            "/api/v1/families/{id}/payments",
            get(payments::list_payments).post(payments::create_payment),
        )
        .route(
            "/api/v1/families/{id}/payments/{payment_id}",
            get(payments::get_payment),
        )
        .route("/api/v1/admin/jobs", get(admin::list_jobs))
        .route("/api/v1/admin/jobs/{id}/retry", post(admin::retry_job))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_after::stamp_writes,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ));

    Router::new()
        .route("/", get(health::home))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/accept-invite", get(invites::accept_invite_page))
        .route("/static/{name}", get(crate::assets::serve))
        .merge(api)
        .merge(docs::docs_router())
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            timeout::limit,
        ))
        .layer(middleware::from_fn(metrics::track_requests))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
