//! `/api/v1/semesters/{id}/classes` and `/api/v1/classes`: the catalog with
//! seats left, one class, its roster, enrolling and dropping.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::FieldCheck;
use coop_domain::clock;
use coop_domain::courses::{
    self, ClassInput as RawClass, EnrollmentState, Meeting, MeetingInput, NewClass, Weekday,
};
use coop_services::classes::Class as ClassRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::families::if_match;
use super::ical;
use super::input::{number, path_id};
use super::semesters::{Semester, semester_id};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct MeetingJson {
    /// `monday` … `sunday` (its first three letters, in any case, are
    /// accepted too).
    #[schema(value_type = String, required = true, example = "monday", pattern = "^(monday|tuesday|wednesday|thursday|friday|saturday|sunday)$")]
    pub weekday: Option<String>,
    /// `HH:MM`, 24-hour, the co-op's local time.
    #[schema(value_type = String, required = true, example = "09:30", pattern = "^\\s*([01][0-9]|2[0-3]):[0-5][0-9]\\s*$")]
    pub starts_at: Option<String>,
    /// 5–720.
    #[schema(value_type = i64, required = true, example = 60, minimum = 5, maximum = 720)]
    pub minutes: Option<serde_json::Value>,
    #[schema(example = "Hall B", max_length = 100)]
    pub room: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ClassInput {
    /// 1–200 characters (trimmed; not only spaces, no control characters).
    #[schema(value_type = String, required = true, example = "Watercolor for beginners",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub title: Option<String>,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    /// Seats: 1–10,000.
    #[schema(value_type = i64, required = true, example = 12, minimum = 1, maximum = 10000)]
    pub capacity: Option<serde_json::Value>,
    /// Whole cents, 0 (free) to 10,000,000; default 0.
    #[schema(value_type = Option<i64>, example = 4500, minimum = 0, maximum = 10_000_000)]
    pub fee_cents: Option<serde_json::Value>,
    /// ISO 4217; default `usd`.
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    /// Age at the semester's start, 0–120.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 120)]
    pub min_age: Option<serde_json::Value>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 120)]
    pub max_age: Option<serde_json::Value>,
    /// School grade, -1 (pre-K) to 12; 0 is kindergarten.
    #[schema(value_type = Option<i64>, minimum = -1, maximum = 12)]
    pub min_grade: Option<serde_json::Value>,
    #[schema(value_type = Option<i64>, minimum = -1, maximum = 12)]
    pub max_grade: Option<serde_json::Value>,
    /// A user of the co-op (the coordinator or a parent) who teaches it.
    #[schema(format = Uuid)]
    pub teacher_user_id: Option<String>,
    /// Weekly meetings (at most 14), not overlapping.
    #[schema(value_type = Vec<MeetingJson>, required = true, max_items = 14)]
    pub meetings: Option<Vec<MeetingJson>>,
}

impl ClassInput {
    fn parse(&self) -> Result<NewClass, ApiError> {
        Ok(NewClass::parse(RawClass {
            title: self.title.as_deref(),
            description: self.description.as_deref(),
            capacity: number(&self.capacity),
            fee_cents: number(&self.fee_cents),
            currency: self.currency.as_deref(),
            min_age: number(&self.min_age),
            max_age: number(&self.max_age),
            min_grade: number(&self.min_grade),
            max_grade: number(&self.max_grade),
            teacher_user_id: self.teacher_user_id.as_deref(),
            meetings: self.meetings.as_ref().map(|list| {
                list.iter()
                    .map(|m| MeetingInput {
                        weekday: m.weekday.as_deref(),
                        starts_at: m.starts_at.as_deref(),
                        minutes: number(&m.minutes),
                        room: m.room.as_deref(),
                    })
                    .collect()
            }),
        })?)
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeetingOut {
    #[schema(example = "monday")]
    pub weekday: String,
    #[schema(example = "09:30")]
    pub starts_at: String,
    pub minutes: u16,
    pub room: Option<String>,
}

impl From<&Meeting> for MeetingOut {
    fn from(m: &Meeting) -> Self {
        Self {
            weekday: m.weekday.as_str().to_owned(),
            starts_at: format!("{:02}:{:02}", m.starts_at.hour(), m.starts_at.minute()),
            minutes: m.minutes,
            room: m.room.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Class {
    pub class_id: Uuid,
    pub semester_id: Uuid,
    pub title: String,
    pub description: String,
    pub teacher_user_id: Option<Uuid>,
    pub capacity: i32,
    pub seats_taken: i32,
    pub seats_left: i32,
    /// Children waiting for a seat.
    pub waitlist_length: i32,
    pub fee_cents: i64,
    pub currency: String,
    pub min_age: Option<i32>,
    pub max_age: Option<i32>,
    pub min_grade: Option<i32>,
    pub max_grade: Option<i32>,
    pub meetings: Vec<MeetingOut>,
    pub version: i64,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<&ClassRow> for Class {
    fn from(row: &ClassRow) -> Self {
        Self {
            class_id: row.id,
            semester_id: row.semester_id,
            title: row.title.clone(),
            description: row.description.clone(),
            teacher_user_id: row.teacher_user_id,
            capacity: row.capacity,
            seats_taken: row.seats_taken,
            seats_left: row.seats_left(),
            waitlist_length: row.waitlist_length,
            fee_cents: row.fee_cents,
            currency: row.currency.clone(),
            min_age: row.min_age,
            max_age: row.max_age,
            min_grade: row.min_grade,
            max_grade: row.max_grade,
            meetings: row.meetings().iter().map(MeetingOut::from).collect(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Catalog {
    pub semester: Semester,
    pub items: Vec<Class>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogFilter {
    /// Only classes meeting on this weekday (`monday` … `sunday`; its first
    /// three letters, in any case, are accepted too).
    #[param(value_type = String, required = false, pattern = "^(monday|tuesday|wednesday|thursday|friday|saturday|sunday)$")]
    pub weekday: Option<String>,
    /// Only classes a child of this age (at the semester's start) may take.
    #[param(value_type = u32, required = false, minimum = 0, maximum = 120)]
    pub age: Option<String>,
}

/// Add a class to a semester (coordinators).
#[utoipa::path(post, path = "/api/v1/semesters/{id}/classes", tag = "classes",
    params(("id" = Uuid, Path, description = "The semester")),
    request_body = ClassInput,
    responses((status = 201, body = Class), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_class(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(semester): Path<String>,
    ApiJson(body): ApiJson<ClassInput>,
) -> Result<Response, ApiError> {
    let semester = semester_id(&semester)?;
    let new = body.parse()?;
    let row = state.services.classes.create(&ctx, semester, &new).await?;
    Ok(class_response(StatusCode::CREATED, &row))
}

/// The semester's catalog: every class with its seats left and waitlist.
#[utoipa::path(get, path = "/api/v1/semesters/{id}/classes", tag = "classes",
    params(("id" = Uuid, Path, description = "The semester"), CatalogFilter),
    responses((status = 200, body = Catalog), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn catalog(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(semester): Path<String>,
    filter: Result<Query<CatalogFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let semester = semester_id(&semester)?;
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut check = FieldCheck::default();
    let weekday = filter
        .weekday
        .as_deref()
        .and_then(|raw| check.check("weekday", Weekday::parse(raw)));
    let age = filter.age.as_deref().and_then(|raw| {
        check.check(
            "age",
            raw.parse::<i32>()
                .ok()
                .filter(|a| (0..=120).contains(a))
                .ok_or_else(|| "must be a whole number from 0 to 120".to_owned()),
        )
    });
    check.finish()?;
    let (semester, classes) = state.services.classes.catalog(&ctx, semester).await?;
    // A `Catalog`, written from each class's remembered JSON (see
    // `crate::rendered_classes`) instead of serialising every class again.
    let semester =
        serde_json::to_vec(&Semester::from(semester)).map_err(|e| ApiError::Internal(e.into()))?;
    let mut body = Vec::with_capacity(semester.len() + 512 * classes.len() + 32);
    body.extend_from_slice(br#"{"semester":"#);
    body.extend_from_slice(&semester);
    body.extend_from_slice(br#","items":["#);
    let mut first = true;
    for class in classes.iter().filter(|c| {
        age.is_none_or(|age| {
            c.min_age.is_none_or(|lo| age >= lo) && c.max_age.is_none_or(|hi| age <= hi)
        })
    }) {
        let rendered = state.rendered_classes.get(class, |row| {
            serde_json::to_vec(&Class::from(row)).expect("a class serialises to JSON")
        });
        if weekday.is_some_and(|day| !rendered.meets_on(day)) {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&rendered.json);
    }
    body.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One class with its seats.
#[utoipa::path(get, path = "/api/v1/classes/{id}", tag = "classes",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Class), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_class(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state.services.classes.get(&ctx, class_id(&id)?).await?;
    Ok(class_response(StatusCode::OK, &row))
}

/// Replace a class's fields (coordinators). Capacity cannot go below the
/// seats taken (409); raising it gives seats to the waitlist at once.
#[utoipa::path(put, path = "/api/v1/classes/{id}", tag = "classes",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version you read")),
    request_body = ClassInput,
    responses((status = 200, body = Class), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Capacity below the seats taken"),
              (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_class(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ClassInput>,
) -> Result<Response, ApiError> {
    let id = class_id(&id)?;
    let expected = if_match(&headers)?;
    let new = body.parse()?;
    let row = state
        .services
        .classes
        .update(&ctx, id, &new, expected)
        .await?;
    Ok(class_response(StatusCode::OK, &row))
}

fn class_response(status: StatusCode, row: &ClassRow) -> Response {
    let mut response = (status, ApiJson(Class::from(row))).into_response();
    if let Ok(etag) = format!("\"{}\"", row.version).parse() {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[derive(Deserialize, ToSchema)]
pub struct EnrollInput {
    #[schema(value_type = String, required = true, format = Uuid)]
    pub child_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementState {
    Enrolled,
    Waitlisted,
}

#[derive(Serialize, ToSchema)]
pub struct Placement {
    pub enrollment_id: Uuid,
    pub class_id: Uuid,
    pub child_id: Uuid,
    #[schema(value_type = PlacementState)]
    pub state: EnrollmentState,
    /// Place on the waitlist (1 = next to get a seat); waitlisted only.
    pub position: Option<i64>,
    pub seats_left: i32,
    pub waitlist_length: i32,
}

/// Enroll a child: a seat while there is one (201 `enrolled`), else the
/// waitlist (201 `waitlisted` with its `position`). 200 when the child already
/// had that place.
#[utoipa::path(post, path = "/api/v1/classes/{id}/enrollments", tag = "enrollments",
    params(("id" = Uuid, Path)),
    request_body = EnrollInput,
    responses((status = 201, body = Placement), (status = 200, body = Placement, description = "Already enrolled or waitlisted"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Registration not open or closed, or a schedule conflict"),
              (status = 422, body = ErrorBody, description = "Not eligible (age or grade), or bad input")))]
pub async fn enroll(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EnrollInput>,
) -> Result<Response, ApiError> {
    let class = class_id(&id)?;
    let mut check = FieldCheck::default();
    let child = check.required("child_id", body.child_id.as_deref(), |raw| {
        Uuid::parse_str(raw.trim()).map_err(|_| "is not a child id".to_owned())
    });
    check.finish()?;
    let Some(child) = child else {
        return Err(ApiError::field("child_id", "is required"));
    };
    let placed = state
        .services
        .enrollments
        .enroll(&ctx, class, child)
        .await?;
    let status = if placed.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        ApiJson(Placement {
            enrollment_id: placed.enrollment.id,
            class_id: class,
            child_id: child,
            state: placed.enrollment.state,
            position: placed.position,
            seats_left: placed.class.seats_left(),
            waitlist_length: placed.class.waitlist_length,
        }),
    )
        .into_response())
}

/// Drop a child from a class (also when already dropped: 204). A freed seat
/// goes to the first child on the waitlist, whose family is emailed.
#[utoipa::path(delete, path = "/api/v1/classes/{id}/enrollments/{child_id}", tag = "enrollments",
    params(("id" = Uuid, Path), ("child_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn drop_child(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path((id, child)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let class = class_id(&id)?;
    let child = path_id(&child, || {
        ApiError::NotFound("no child with that id in this family".into())
    })?;
    state
        .services
        .enrollments
        .drop_child(&ctx, class, child)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RosterChild {
    pub child_id: Uuid,
    pub first_name: String,
    pub family_id: Uuid,
    pub family_name: String,
    pub family_email: String,
}

#[derive(Serialize, ToSchema)]
pub struct WaitingChild {
    /// 1 = next to get a seat.
    pub position: i64,
    #[serde(flatten)]
    pub child: RosterChild,
}

#[derive(Serialize, ToSchema)]
pub struct Roster {
    pub class: Class,
    pub enrolled: Vec<RosterChild>,
    pub waitlist: Vec<WaitingChild>,
}

/// The class's roster: enrolled children and the waitlist in order
/// (coordinators and the class's teacher).
#[utoipa::path(get, path = "/api/v1/classes/{id}/roster", tag = "classes",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Roster), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn roster(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Roster>, ApiError> {
    let (class, lines) = state.services.classes.roster(&ctx, class_id(&id)?).await?;
    let mut enrolled = Vec::new();
    let mut waitlist = Vec::new();
    for line in lines {
        let child = RosterChild {
            child_id: line.child_id,
            first_name: line.first_name,
            family_id: line.family_id,
            family_name: line.family_name,
            family_email: line.family_email,
        };
        match line.state {
            EnrollmentState::Waitlisted => waitlist.push(WaitingChild {
                position: waitlist.len() as i64 + 1,
                child,
            }),
            _ => enrolled.push(child),
        }
    }
    Ok(ApiJson(Roster {
        class: Class::from(&class),
        enrolled,
        waitlist,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ClassList {
    pub items: Vec<Class>,
}

/// The classes the caller teaches.
#[utoipa::path(get, path = "/api/v1/teaching/classes", tag = "classes",
    responses((status = 200, body = ClassList), (status = 401, body = ErrorBody)))]
pub async fn taught(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<ClassList>, ApiError> {
    let rows = state.services.classes.taught(&ctx).await?;
    Ok(ApiJson(ClassList {
        items: rows.iter().map(Class::from).collect(),
    }))
}

/// The class's meetings as an iCalendar feed (its teacher and coordinators).
#[utoipa::path(get, path = "/api/v1/classes/{id}/calendar.ics", tag = "classes",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/calendar", description = "iCalendar feed"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn class_calendar(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (class, semester) = state
        .services
        .classes
        .for_calendar(&ctx, class_id(&id)?)
        .await?;
    let holidays = semester.holidays();
    let meetings = class.meetings();
    let uids: Vec<String> = (0..meetings.len())
        .map(|i| format!("class-{}-m{i}@coop", class.id))
        .collect();
    let description = format!("{} ({})", class.title, semester.name);
    let recurrences: Vec<_> = meetings
        .iter()
        .map(|m| courses::recurrence(m, semester.starts_on, semester.ends_on, &holidays))
        .collect();
    let weekly: Vec<ical::Weekly<'_>> = meetings
        .iter()
        .zip(&recurrences)
        .zip(&uids)
        .filter_map(|((m, r), uid)| {
            let r = r.as_ref()?;
            Some(ical::Weekly {
                uid,
                summary: &class.title,
                description: &description,
                location: m.room.as_deref(),
                first: r.first,
                starts_at: m.starts_at,
                ends_at: m.ends_at(),
                until: r.until,
                skipped: &r.skipped,
            })
        })
        .collect();
    let body = ical::calendar(&class.title, &[], &weekly, clock::now());
    Ok(ical::response(body))
}

pub(crate) fn class_id(raw: &str) -> Result<Uuid, ApiError> {
    path_id(raw, || {
        ApiError::NotFound("no class with that id in your co-op".into())
    })
}
