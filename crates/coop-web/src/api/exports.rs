//! `/api/v1/exports`: a co-op's data as one archive. A coordinator asks, a
//! job builds it and emails them a link, and the co-op's coordinators can
//! download it until it expires (`COOP_EXPORT_TTL`).

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::clock;
use coop_services::exports::Export as ExportRow;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::path_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    /// Being built; an email says when it is ready.
    Queued,
    /// Ready to download until `expires_at`.
    Ready,
    /// Its link expired and the archive was deleted.
    Expired,
    /// It could not be built; ask for a new one.
    Failed,
}

#[derive(Serialize, ToSchema)]
pub struct Export {
    pub export_id: Uuid,
    pub state: ExportState,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    /// When the archive was built (`null` while queued).
    #[serde(with = "clock::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ready_at: Option<OffsetDateTime>,
    /// Until when it can be downloaded (`null` while queued).
    #[serde(with = "clock::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// The archive's size in bytes, once built.
    pub size_bytes: Option<i64>,
    /// Where to download it (a zip), once ready.
    pub download_path: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExportList {
    pub items: Vec<Export>,
}

pub fn view(row: ExportRow) -> Export {
    let state = match row.state.as_str() {
        "ready" => ExportState::Ready,
        "expired" => ExportState::Expired,
        "failed" => ExportState::Failed,
        _ => ExportState::Queued,
    };
    Export {
        export_id: row.id,
        download_path: matches!(state, ExportState::Ready)
            .then(|| format!("/api/v1/exports/{}/archive", row.id)),
        state,
        requested_at: clock::from_unix_ms(row.created_at),
        ready_at: row.ready_at.map(clock::from_unix_ms),
        expires_at: row.expires_at.map(clock::from_unix_ms),
        size_bytes: row.archive_bytes,
    }
}

/// Ask for an export of the co-op's data (coordinators): 202, a job builds
/// the archive and emails a download link. One export at a time per co-op.
#[utoipa::path(post, path = "/api/v1/exports", tag = "exports",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 202, body = Export, description = "Queued; an email will say when it is ready"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not a coordinator"),
              (status = 409, body = ErrorBody, description = "An export of this co-op is being built already")))]
pub async fn request(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<(StatusCode, ApiJson<Export>), ApiError> {
    let row = state.services.exports.request(&ctx).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(view(row))))
}

/// The co-op's exports, newest first (coordinators).
#[utoipa::path(get, path = "/api/v1/exports", tag = "exports",
    responses((status = 200, body = ExportList), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Not a coordinator")))]
pub async fn list(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<ExportList>, ApiError> {
    let rows = state.services.exports.list(&ctx).await?;
    Ok(ApiJson(ExportList {
        items: rows.into_iter().map(view).collect(),
    }))
}

/// One export: its state and expiry (coordinators).
#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "exports",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Export), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Not a coordinator"),
              (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Export>, ApiError> {
    let id = path_id(&id, not_found)?;
    let row = state.services.exports.get(&ctx, id).await?;
    Ok(ApiJson(view(row)))
}

/// Download the archive (coordinators): a zip of CSV and JSON files with a
/// README describing each. 410 once it expired.
#[utoipa::path(get, path = "/api/v1/exports/{id}/archive", tag = "exports",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "application/zip", description = "The archive (Content-Disposition: attachment)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not a coordinator"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Still being built"),
              (status = 410, body = ErrorBody, description = "Expired (the file was deleted), or the build failed")))]
pub async fn archive(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, not_found)?;
    let (export, bytes) = state.services.exports.archive(&ctx, id).await?;
    let day = clock::from_unix_ms(export.ready_at.unwrap_or(export.created_at)).date();
    let filename = format!("coop-export-{day}-{}.zip", export.id.simple());
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

fn not_found() -> ApiError {
    ApiError::NotFound("no export with that id in your co-op".into())
}
