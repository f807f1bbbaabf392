//! The HTTP API: one module per resource. Every API route is registered once,
//! here, through utoipa-axum's `routes!`, which takes the path and method from
//! the handler's `#[utoipa::path]` annotation and adds the operation to the
//! OpenAPI document: a route cannot be served without being documented.

pub mod account;
pub mod admin;
pub mod announcements;
pub mod auth;
pub mod calendar;
pub mod children;
pub mod classes;
pub mod coop_deletion;
pub mod coops;
pub mod docs;
pub mod documents;
pub mod exports;
pub mod families;
pub mod health;
mod ical;
mod input;
pub mod invites;
pub mod operations;
pub mod payments;
pub mod semesters;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{
    MAX_BODY_BYTES, fallback, idempotency, metrics, rate_limit, read_after, same_origin,
    security_headers, shared_responses, timeout, trace,
};
use crate::state::AppState;

/// The API's routes and the OpenAPI document that describes them.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, document) = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(coops::create_coop))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(invites::accept_invite))
        .routes(routes!(account::change_password))
        .routes(routes!(account::logout_everywhere))
        .routes(routes!(account::request_reset))
        .routes(routes!(account::reset_password))
        .routes(routes!(account::change_email))
        .routes(routes!(account::confirm_email))
        .routes(routes!(account::verify_email))
        .routes(routes!(families::list_families, families::create_family))
        .routes(routes!(
            families::get_family,
            families::update_family,
            families::delete_family
        ))
        .routes(routes!(calendar::family_calendar))
        .routes(routes!(calendar::new_feed))
        .routes(routes!(calendar::feed))
        .routes(routes!(payments::list_payments, payments::create_payment))
        .routes(routes!(payments::get_payment))
        .routes(routes!(children::list_children, children::add_child))
        .routes(routes!(
            children::get_child,
            children::update_child,
            children::remove_child
        ))
        .routes(routes!(children::family_enrollments))
        .routes(routes!(children::balance))
        .routes(routes!(
            semesters::list_semesters,
            semesters::create_semester
        ))
        .routes(routes!(semesters::get_semester, semesters::update_semester))
        .routes(routes!(classes::catalog, classes::create_class))
        .routes(routes!(classes::get_class, classes::update_class))
        .routes(routes!(classes::enroll))
        .routes(routes!(classes::drop_child))
        .routes(routes!(classes::roster))
        .routes(routes!(classes::class_calendar))
        .routes(routes!(classes::taught))
        .routes(routes!(announcements::list, announcements::send))
        .routes(routes!(announcements::get))
        .routes(routes!(exports::list, exports::request))
        .routes(routes!(exports::get))
        .routes(routes!(exports::archive))
        .merge(
            // Uploads are limited by COOP_DOCUMENT_MAX_BYTES as they stream,
            // not by the API's 64 KiB body limit.
            OpenApiRouter::new()
                .routes(routes!(documents::list, documents::upload))
                .layer(middleware::map_request(crate::http::uploads::pace))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(
            documents::get,
            documents::rename,
            documents::delete
        ))
        .routes(routes!(documents::content))
        .routes(routes!(documents::thumbnail))
        .routes(routes!(
            coop_deletion::get,
            coop_deletion::schedule,
            coop_deletion::cancel
        ))
        .routes(routes!(admin::list_jobs))
        .routes(routes!(admin::retry_job))
        .routes(routes!(operations::samples))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .split_for_parts();
    let mut document = document;
    rate_limit::document(&mut document);
    shared_responses::document(&mut document);
    documents::document(&mut document);
    (router, document)
}

/// The whole application. Layers listed later wrap the ones listed earlier.
pub fn router(state: AppState) -> Router {
    let (api, document) = api();
    let api = api
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        .layer(middleware::from_fn(same_origin::same_origin_writes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_after::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ));

    // Pages are compressed (brotli or gzip, as the browser accepts): a page's
    // budget is 60 KB transferred with its stylesheet and script.
    let pages = crate::pages::router()
        .layer(middleware::map_response(
            crate::pages::plain_rejections_as_pages,
        ))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::pages::csrf_guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_after::track,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit,
        ));

    Router::new()
        .route("/static/{name}", get(crate::assets::serve))
        .merge(api)
        .merge(pages)
        .merge(docs::docs_router(document))
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            timeout::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers::add,
        ))
        .layer(middleware::from_fn(metrics::track_requests))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn(trace::trace))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
