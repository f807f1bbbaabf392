//! `/api/v1/announcements`: a coordinator writes to the co-op or one class;
//! each family gets an email through the queue.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use coop_domain::{NewAnnouncement, clock};
use coop_services::announcements::Announcement as AnnouncementRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::path_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct AnnouncementInput {
    /// 1–200 characters on one line (trimmed; not only spaces).
    #[schema(value_type = String, required = true, example = "Field trip on Friday",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub subject: Option<String>,
    /// 1–20,000 characters (trimmed; line breaks and tabs allowed, no other
    /// control characters).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 20000,
             pattern = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]*$")]
    pub body: Option<String>,
    /// To this class's families only; omit for the whole co-op.
    #[schema(format = Uuid)]
    pub class_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// Families found so far (final once `complete`).
    pub recipients: i64,
    pub sent: i64,
    pub pending: i64,
    pub failed: i64,
    /// Every recipient has been found (the fan-out finished).
    pub complete: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Announcement {
    pub announcement_id: Uuid,
    pub class_id: Option<Uuid>,
    pub subject: String,
    pub body: String,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Delivery counts (coordinators only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

fn view(row: AnnouncementRow, counts: bool) -> Announcement {
    Announcement {
        announcement_id: row.id,
        class_id: row.class_id,
        delivery: counts.then(|| Delivery {
            recipients: row
                .recipients
                .map_or(row.sent + row.pending + row.failed, i64::from),
            sent: row.sent,
            pending: row.pending,
            failed: row.failed,
            complete: row.recipients.is_some(),
        }),
        subject: row.subject,
        body: row.body,
        created_at: row.created_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct AnnouncementList {
    pub items: Vec<Announcement>,
}

/// Send an announcement (coordinators): 202, emails go out through the queue.
#[utoipa::path(post, path = "/api/v1/announcements", tag = "announcements",
    request_body = AnnouncementInput,
    responses((status = 202, body = Announcement), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "No such class"),
              (status = 422, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    ApiJson(body): ApiJson<AnnouncementInput>,
) -> Result<(StatusCode, ApiJson<Announcement>), ApiError> {
    let new = NewAnnouncement::parse(
        body.subject.as_deref(),
        body.body.as_deref(),
        body.class_id.as_deref(),
    )?;
    let row = state.services.announcements.send(&ctx, &new).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(view(row, true))))
}

/// Announcements, newest first (families: those addressed to them).
#[utoipa::path(get, path = "/api/v1/announcements", tag = "announcements",
    responses((status = 200, body = AnnouncementList), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<AnnouncementList>, ApiError> {
    let counts = ctx.caller.role == coop_domain::Role::Coordinator;
    let rows = state.services.announcements.list(&ctx).await?;
    Ok(ApiJson(AnnouncementList {
        items: rows.into_iter().map(|r| view(r, counts)).collect(),
    }))
}

/// One announcement, with delivery counts for coordinators.
#[utoipa::path(get, path = "/api/v1/announcements/{id}", tag = "announcements",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Announcement), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Announcement>, ApiError> {
    let id = path_id(&id, || {
        ApiError::NotFound("no announcement with that id in your co-op".into())
    })?;
    let counts = ctx.caller.role == coop_domain::Role::Coordinator;
    let row = state.services.announcements.get(&ctx, id).await?;
    Ok(ApiJson(view(row, counts)))
}
