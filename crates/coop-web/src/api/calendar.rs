//! A family's calendar as an iCalendar feed that calendar apps can subscribe to.

use axum::extract::{Path, State};
use axum::response::Response;
use coop_domain::courses::{self, Meeting};

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
    let family_id = family_id(&id)?;
    let (family, rows) = state.services.calendar.for_family(&ctx, family_id).await?;
    let classes = state.services.enrollments.schedule(&ctx, family_id).await?;
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
