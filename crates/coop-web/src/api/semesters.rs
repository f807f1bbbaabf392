//! `/api/v1/semesters`: semesters and their registration windows.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use coop_domain::clock;
use coop_domain::courses::{NewSemester, SemesterInput as RawSemester};
use coop_services::semesters::Semester as SemesterRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::families::if_match;
use super::input::path_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct SemesterInput {
    /// 1–200 characters (trimmed; not only spaces, no control characters).
    #[schema(value_type = String, required = true, example = "Fall 2026",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    #[schema(value_type = String, required = true, example = "2026-09-07", format = Date)]
    pub starts_on: Option<String>,
    /// Not before `starts_on`.
    #[schema(value_type = String, required = true, example = "2026-12-18", format = Date)]
    pub ends_on: Option<String>,
    /// Families can enroll from this moment (RFC 3339).
    #[schema(value_type = String, required = true, example = "2026-08-01T09:00:00Z", format = DateTime)]
    pub registration_opens_at: Option<String>,
    /// After `registration_opens_at`.
    #[schema(value_type = String, required = true, example = "2026-09-14T23:59:59Z", format = DateTime)]
    pub registration_closes_at: Option<String>,
    /// Dates without meetings (`YYYY-MM-DD`, inside the semester).
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl SemesterInput {
    fn parse(&self) -> Result<NewSemester, ApiError> {
        Ok(NewSemester::parse(RawSemester {
            name: self.name.as_deref(),
            starts_on: self.starts_on.as_deref(),
            ends_on: self.ends_on.as_deref(),
            registration_opens_at: self.registration_opens_at.as_deref(),
            registration_closes_at: self.registration_closes_at.as_deref(),
            holidays: self.holidays.iter().map(String::as_str).collect(),
        })?)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Before `registration_opens_at`.
    Upcoming,
    Open,
    Closed,
}

#[derive(Serialize, ToSchema)]
pub struct Semester {
    pub semester_id: Uuid,
    pub name: String,
    #[schema(format = Date)]
    pub starts_on: String,
    #[schema(format = Date)]
    pub ends_on: String,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registration_opens_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registration_closes_at: OffsetDateTime,
    /// Where registration stands now.
    pub registration: Registration,
    pub holidays: Vec<String>,
    pub version: i64,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<SemesterRow> for Semester {
    fn from(row: SemesterRow) -> Self {
        let now = clock::now();
        let registration = if now < row.registration_opens_at {
            Registration::Upcoming
        } else if now <= row.registration_closes_at {
            Registration::Open
        } else {
            Registration::Closed
        };
        Self {
            semester_id: row.id,
            holidays: row.holidays().iter().map(ToString::to_string).collect(),
            name: row.name,
            starts_on: row.starts_on.to_string(),
            ends_on: row.ends_on.to_string(),
            registration_opens_at: row.registration_opens_at,
            registration_closes_at: row.registration_closes_at,
            registration,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SemesterList {
    pub items: Vec<Semester>,
}

/// Create a semester (coordinators).
#[utoipa::path(post, path = "/api/v1/semesters", tag = "semesters",
    request_body = SemesterInput,
    responses((status = 201, body = Semester), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_semester(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    ApiJson(body): ApiJson<SemesterInput>,
) -> Result<(StatusCode, ApiJson<Semester>), ApiError> {
    let new = body.parse()?;
    let row = state.services.semesters.create(&ctx, &new).await?;
    Ok((StatusCode::CREATED, ApiJson(row.into())))
}

/// The co-op's semesters, newest first.
#[utoipa::path(get, path = "/api/v1/semesters", tag = "semesters",
    responses((status = 200, body = SemesterList), (status = 401, body = ErrorBody)))]
pub async fn list_semesters(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<SemesterList>, ApiError> {
    let rows = state.services.semesters.list(&ctx).await?;
    Ok(ApiJson(SemesterList {
        items: rows.into_iter().map(Semester::from).collect(),
    }))
}

/// One semester.
#[utoipa::path(get, path = "/api/v1/semesters/{id}", tag = "semesters",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Semester), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_semester(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Semester>, ApiError> {
    let id = semester_id(&id)?;
    Ok(ApiJson(
        state.services.semesters.get(&ctx, id).await?.into(),
    ))
}

/// Replace a semester's fields (coordinators); `If-Match: <version>` guards
/// against overwriting someone else's change.
#[utoipa::path(put, path = "/api/v1/semesters/{id}", tag = "semesters",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version you read")),
    request_body = SemesterInput,
    responses((status = 200, body = Semester), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn update_semester(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SemesterInput>,
) -> Result<ApiJson<Semester>, ApiError> {
    let id = semester_id(&id)?;
    let expected = if_match(&headers)?;
    let new = body.parse()?;
    let row = state
        .services
        .semesters
        .update(&ctx, id, &new, expected)
        .await?;
    Ok(ApiJson(row.into()))
}

pub(crate) fn semester_id(raw: &str) -> Result<Uuid, ApiError> {
    path_id(raw, || {
        ApiError::NotFound("no semester with that id in your co-op".into())
    })
}
