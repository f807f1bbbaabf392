//! The OpenAPI document, generated from the handlers' annotations, and the
//! Swagger UI that renders it (its files are compiled in: nothing is fetched).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Coop API", description = "Co-ops, coordinators, families, enrollment, invites, calendars and payments."),
    paths(
        super::coops::create_coop,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::invites::accept_invite,
        super::families::create_family,
        super::families::list_families,
        super::families::get_family,
        super::families::update_family,
        super::families::delete_family,
        super::calendar::family_calendar,
        super::payments::create_payment,
        super::payments::list_payments,
        super::payments::get_payment,
        super::admin::list_jobs,
        super::admin::retry_job,
        super::health::health,
        super::health::ready,
        super::health::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    tags(
        (name = "coops", description = "Co-ops (tenants)"),
        (name = "auth", description = "Sessions"),
        (name = "families", description = "Families and their enrollment"),
        (name = "payments", description = "Charging families through the payment provider"),
        (name = "admin", description = "Background jobs, for coordinators"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

pub fn docs_router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", ApiDoc::openapi()))
}
