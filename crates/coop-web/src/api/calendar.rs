//! A family's calendar as an iCalendar feed that calendar apps can subscribe to.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::families::family_id;
use super::ical;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::state::AppState;

/// The family's co-op calendar entries (iCalendar, RFC 5545).
#[utoipa::path(get, path = "/api/v1/families/{id}/calendar.ics", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/calendar", description = "iCalendar feed"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn family_calendar(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (family, rows) = state
        .services
        .calendar
        .for_family(&ctx, family_id(&id)?)
        .await?;
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
    let body = ical::calendar(&family.family_name, &events, coop_domain::clock::now());
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
