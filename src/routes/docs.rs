//! The OpenAPI document, generated from the handlers' annotations, and the
//! Swagger UI that renders it (its files are compiled in: nothing is fetched).

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Coop API", description = "Co-ops, coordinators, families and enrollment."),
    paths(
        super::coops::create_coop,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::families::create_family,
        super::families::list_families,
        super::families::get_family,
        super::families::update_family,
        super::families::delete_family,
        super::health::health,
        super::health::ready,
        super::health::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    tags(
        (name = "coops", description = "Co-ops (tenants)"),
        (name = "auth", description = "Sessions"),
        (name = "families", description = "Families and their enrollment"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

pub fn docs_router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", ApiDoc::openapi()))
}
