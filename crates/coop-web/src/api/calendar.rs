//! A family's calendar as an iCalendar feed that calendar apps can subscribe to.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use coop_domain::courses::{self, Meeting};
use coop_services::Ctx;
use serde::Serialize;
use utoipa::ToSchema;

use super::families::family_id;
use super::ical;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
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
    let family_id = family_id(&id)?;
    calendar(&state, &ctx, family_id).await
}

#[derive(Serialize, ToSchema)]
pub struct Feed {
    /// The subscription address for a calendar app. It works without a
    /// session: keep it private. A new one replaces it.
    pub url: String,
    pub path: String,
}

/// A secret address where calendar apps subscribe to the family's calendar
/// (the family or a coordinator). Each call makes a new address and the
/// previous one stops working.
#[utoipa::path(post, path = "/api/v1/families/{id}/calendar-feed", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 201, body = Feed, description = "The new subscription address"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn new_feed(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, ApiJson<Feed>), ApiError> {
    let family_id = family_id(&id)?;
    let feed = state.services.calendar.new_feed(&ctx, family_id).await?;
    let path = feed_path(&feed);
    Ok((
        StatusCode::CREATED,
        ApiJson(Feed {
            url: absolute(&state, &headers, &path),
            path,
        }),
    ))
}

/// Where a subscription is read.
pub fn feed_path(feed: &str) -> String {
    format!("/calendar/{feed}.ics")
}

/// `path` on the address the client used (https when cookies are `Secure`,
/// that is, when Coop is served over TLS).
pub fn absolute(state: &AppState, headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if state.http.secure_cookies() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}{path}")
}

/// A family's calendar by its subscription address: no session, the
/// address is the credential.
#[utoipa::path(get, path = "/calendar/{file}", tag = "families",
    params(("file" = String, Path, description = "The token from the subscription address, then `.ics`")),
    responses((status = 200, content_type = "text/calendar", description = "iCalendar feed"),
              (status = 404, body = ErrorBody, description = "No such subscription (or it was replaced)")))]
pub async fn feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::NotFound(
            "no calendar at this address; it may have been replaced by a newer link: \
             copy the current one from your schedule page"
                .into(),
        )
    };
    let token = file.strip_suffix(".ics").ok_or_else(not_found)?;
    let ctx = state
        .services
        .calendar
        .feed_reader(token)
        .await?
        .ok_or_else(not_found)?;
    let family_id = ctx.caller.family_id.ok_or_else(not_found)?;
    calendar(&state, &ctx, family_id).await
}

/// The family's calendar, for whoever `ctx` is.
async fn calendar(
    state: &AppState,
    ctx: &Ctx,
    family_id: uuid::Uuid,
) -> Result<Response, ApiError> {
    let (family, rows) = state.services.calendar.for_family(ctx, family_id).await?;
    let classes = state.services.enrollments.schedule(ctx, family_id).await?;
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
    // One weekly event per child, class and meeting: stable UIDs, so a
    // calendar app updates an event rather than adding it again.
    struct Lesson {
        uid: String,
        summary: String,
        description: String,
        meeting: Meeting,
        recurrence: courses::Recurrence,
    }
    let mut lessons = Vec::new();
    for class in &classes {
        let holidays = holidays(&class.holidays);
        let meetings: Vec<Meeting> = serde_json::from_str(&class.meetings).unwrap_or_default();
        for (i, meeting) in meetings.into_iter().enumerate() {
            if let Some(recurrence) =
                courses::recurrence(&meeting, class.starts_on, class.ends_on, &holidays)
            {
                lessons.push(Lesson {
                    uid: format!(
                        "class-{}-m{i}-child-{}@coop",
                        class.class_id, class.child_id
                    ),
                    summary: format!("{} — {}", class.title, class.first_name),
                    description: format!("{} takes {}", class.first_name, class.title),
                    meeting,
                    recurrence,
                });
            }
        }
    }
    let weekly: Vec<ical::Weekly<'_>> = lessons
        .iter()
        .map(|l| ical::Weekly {
            uid: &l.uid,
            summary: &l.summary,
            description: &l.description,
            location: l.meeting.room.as_deref(),
            first: l.recurrence.first,
            starts_at: l.meeting.starts_at,
            ends_at: l.meeting.ends_at(),
            until: l.recurrence.until,
            skipped: &l.recurrence.skipped,
        })
        .collect();
    let body = ical::calendar(
        &family.family_name,
        &events,
        &weekly,
        coop_domain::clock::now(),
    );
    Ok(ical::response(body))
}

fn holidays(json: &str) -> Vec<time::Date> {
    serde_json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| coop_domain::parse_date(d).ok())
        .collect()
}
