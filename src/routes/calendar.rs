//! A family's calendar as an iCalendar feed that calendar apps can subscribe to.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::families::visible_family;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::AuthUser;
use crate::jobs::ical;
use crate::state::AppState;
use crate::store;

/// The family's co-op calendar entries (iCalendar, RFC 5545).
#[utoipa::path(get, path = "/api/v1/families/{id}/calendar.ics", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/calendar", description = "iCalendar feed"),
              (status = 404, body = ErrorBody)))]
pub async fn family_calendar(
    State(state): State<AppState>,
    AuthUser(session): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let family_id = visible_family(&session, &id)?;
    let family = store::families::get(&state.db, session.coop_id, family_id)
        .await?
        .ok_or_else(super::families::not_found)?;
    let rows = store::calendar::for_family(&state.db, session.coop_id, family_id).await?;
    let uids: Vec<String> = rows.iter().map(|r| format!("{}@coop", r.key)).collect();
    let events: Vec<ical::Event<'_>> = rows
        .iter()
        .zip(&uids)
        .map(|(row, uid)| ical::Event {
            uid,
            summary: &row.summary,
            description: &row.description,
            date: row.starts_on,
        })
        .collect();
    let body = ical::calendar(
        &family.family_name,
        &events,
        time::OffsetDateTime::now_utc(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"calendar.ics\"",
            ),
        ],
        body,
    )
        .into_response())
}
