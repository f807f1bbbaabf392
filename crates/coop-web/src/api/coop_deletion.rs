//! `/api/v1/coop/deletion`: deleting the co-op after a grace period
//! (`COOP_DELETION_GRACE`). A coordinator asks with their password and may
//! cancel until the grace period is over; everyone of the co-op sees the date.

use axum::extract::State;
use axum::http::StatusCode;
use coop_domain::clock;
use coop_services::deletion::Deletion as DeletionRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct DeletionRequest {
    /// The coordinator's own password, to confirm.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Deletion {
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    /// When everything of the co-op will be deleted.
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deletes_at: OffsetDateTime,
    /// False once the deletion has begun.
    pub cancellable: bool,
}

fn view(row: &DeletionRow) -> Deletion {
    Deletion {
        requested_at: clock::from_unix_ms(row.requested_at),
        deletes_at: clock::from_unix_ms(row.deletes_at),
        cancellable: row.started_at.is_none(),
    }
}

/// Schedule the co-op's deletion (coordinators, with their password): 202
/// with the date; the coordinators are emailed. Until then the co-op works.
#[utoipa::path(post, path = "/api/v1/coop/deletion", tag = "coops",
    request_body = DeletionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 202, body = Deletion, description = "Scheduled"),
              (status = 400, body = ErrorBody, description = "Malformed JSON"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not a coordinator"),
              (status = 409, body = ErrorBody, description = "A deletion is scheduled already"),
              (status = 422, body = ErrorBody, description = "Missing or wrong password"),
              (status = 503, body = ErrorBody, description = "Too many password checks at once; retry shortly")))]
pub async fn schedule(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    ApiJson(body): ApiJson<DeletionRequest>,
) -> Result<(StatusCode, ApiJson<Deletion>), ApiError> {
    let password = body
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| coop_domain::Invalid::field("password", "is required"))?;
    let row = state.services.deletion.schedule(&ctx, password).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(view(&row))))
}

/// The co-op's scheduled deletion (404 when none is).
#[utoipa::path(get, path = "/api/v1/coop/deletion", tag = "coops",
    responses((status = 200, body = Deletion), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "No deletion is scheduled")))]
pub async fn get(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<Deletion>, ApiError> {
    let row = state.services.deletion.get(&ctx).await?;
    Ok(ApiJson(view(&row)))
}

/// Cancel the co-op's deletion (coordinators), while it has not begun.
#[utoipa::path(delete, path = "/api/v1/coop/deletion", tag = "coops",
    responses((status = 204, description = "Cancelled"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Not a coordinator"),
              (status = 404, body = ErrorBody, description = "No deletion is scheduled"),
              (status = 409, body = ErrorBody, description = "The deletion has begun")))]
pub async fn cancel(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<StatusCode, ApiError> {
    state.services.deletion.cancel(&ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
