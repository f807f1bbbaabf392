//! The OpenAPI document's frame (title, tags, shared schemas) and the Swagger
//! UI that renders it (its files are compiled in: nothing is fetched). The
//! operations themselves are added by the route registry in `api::router`,
//! from each handler's annotation: a route cannot be served undocumented.

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Coop API", description = "Co-ops, coordinators, families and children, semesters and classes, seat-limited enrollment with waitlists, fees and payments, announcements, invites and calendars. Times are RFC 3339 in UTC."),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    tags(
        (name = "coops", description = "Co-ops (tenants)"),
        (name = "auth", description = "Sessions"),
        (name = "families", description = "Families and their enrollment"),
        (name = "payments", description = "Charging families through the payment provider, and what they owe"),
        (name = "semesters", description = "Semesters and their registration windows"),
        (name = "classes", description = "Classes, the catalog with seats left, rosters"),
        (name = "children", description = "A family's children"),
        (name = "enrollments", description = "Enrolling children in classes, waitlists, drops"),
        (name = "announcements", description = "Messages to the co-op or a class, emailed through the queue"),
        (name = "exports", description = "A co-op's data as one archive, built by a job, downloadable until it expires"),
        (name = "documents", description = "Files shared in the co-op, the whole co-op, a class or a family; streamed to object storage"),
        (name = "admin", description = "Background jobs, for coordinators"),
        (name = "operations", description = "Health, readiness and metrics; the operations page's samples, for platform operators"),
    )
)]
pub struct ApiDoc;

pub fn docs_router(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", document))
}
