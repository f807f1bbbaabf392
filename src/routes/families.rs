use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::cache::keys;
use crate::domain::{Email, FieldCheck, Name, Role};
use crate::error::{ApiError, ErrorBody, FieldErrors};
use crate::http::auth::{AuthUser, Coordinator};
use crate::http::idempotency;
use crate::http::json::ApiJson;
use crate::http::read_after;
use crate::jobs;
use crate::session::SessionData;
use crate::state::AppState;
use crate::store::idempotency::Claim;
use crate::store::replicas;
use crate::store::{
    self,
    families::{DeleteOutcome, FamilyFields, FamilyRow, UpdateOutcome},
};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

#[derive(Deserialize, ToSchema)]
pub struct FamilyInput {
    #[schema(example = "The Smiths")]
    pub family_name: Option<String>,
    #[schema(example = "smiths@example.org")]
    pub email: Option<String>,
    /// `YYYY-MM-DD`; today (UTC) when omitted.
    #[schema(example = "2026-09-01")]
    pub enrollment_date: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Family {
    pub family_id: Uuid,
    pub coop_id: Uuid,
    pub family_name: String,
    pub email: String,
    #[schema(example = "2026-09-01")]
    pub enrollment_date: String,
    /// Increases with every change; send it back in `If-Match` to update safely.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<FamilyRow> for Family {
    fn from(row: FamilyRow) -> Self {
        Self {
            family_id: row.id,
            coop_id: row.coop_id,
            family_name: row.family_name,
            email: row.email,
            enrollment_date: row.enrollment_date.to_string(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FamilyPage {
    pub items: Vec<Family>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListParams {
    /// 1–200, default 50.
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Enroll a family in the caller's co-op.
#[utoipa::path(post, path = "/api/v1/families", tag = "families",
    request_body = FamilyInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = Family),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "A family with this email exists in the co-op"),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_family(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<FamilyInput>,
) -> Result<Response, ApiError> {
    let (name, email, date) = parse_family(&body)?;
    let claim = claim.map(|Extension(claim)| claim);
    if let Some([id]) = idempotency::committed(claim.as_ref())? {
        // An earlier attempt with this key enrolled the family, then its
        // instance died before answering: answer for it.
        let row = store::families::get(&state.db, session.coop_id, id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(
                    "this request enrolled a family that has since been deleted".into(),
                )
            })?;
        return Ok(created(row));
    }
    let fields = FamilyFields {
        family_name: &name,
        email: &email,
        enrollment_date: date,
    };
    // The family and the jobs its enrollment causes commit together: no
    // welcome email is lost to a crash between the two.
    let max_attempts = state.config.job_max_attempts;
    let Some((row, jobs)) = store::families::insert(
        &state.db,
        session.coop_id,
        &fields,
        |row| jobs::enrollment_jobs(row.coop_id, row.id, max_attempts),
        claim.as_ref(),
    )
    .await
    .map_err(email_conflict)?
    else {
        return Err(idempotency::taken_over());
    };
    if state.config.jobs_inline {
        // In a task of its own, so a client that hangs up does not cancel a
        // job halfway (e.g. between an email's send and its record).
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
        let inline = state.clone();
        let _ = tokio::spawn(async move {
            jobs::worker::run_now(&inline.effects, &inline.worker_config, &ids).await;
        })
        .await;
    }
    Ok(created(row))
}

fn created(row: FamilyRow) -> Response {
    let location = format!("/api/v1/families/{}", row.id);
    let mut response = family_response(StatusCode::CREATED, row);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Read one family. Another co-op's family is a 404, as if it did not exist.
#[utoipa::path(get, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Family), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_family(
    State(state): State<AppState>,
    AuthUser(session): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = visible_family(&session, &id)?;
    let read_after = read_after::position(&state, &headers);
    let row = state
        .cache
        .get_or_load(&keys::family(session.coop_id, id), |floor| {
            replicas::read(
                &state.db,
                state.replicas.as_deref(),
                read_after.max(floor),
                |db| async move { store::families::get(&db, session.coop_id, id).await },
            )
        })
        .await?
        .ok_or_else(not_found)?;
    Ok(family_response(StatusCode::OK, row))
}

/// List the co-op's families, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/families", tag = "families",
    params(ListParams),
    responses((status = 200, body = FamilyPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_families(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ApiJson<FamilyPage>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut check = FieldCheck::default();
    let limit = match params.limit.as_deref() {
        None => Some(DEFAULT_PAGE),
        Some(raw) => check.check("limit", parse_limit(raw)),
    };
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => check.check("cursor", decode_cursor(raw)),
    };
    check.finish()?;
    let limit = limit.unwrap_or(DEFAULT_PAGE);

    // One extra row tells whether another page follows.
    let mut rows = replicas::read(
        &state.db,
        state.replicas.as_deref(),
        read_after::position(&state, &headers),
        |db| async move { store::families::list(&db, session.coop_id, after, limit + 1).await },
    )
    .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|row| encode_cursor(row.id))
    } else {
        None
    };
    Ok(ApiJson(FamilyPage {
        items: rows.into_iter().map(Family::from).collect(),
        next_cursor,
    }))
}

/// Replace a family's fields. With `If-Match: <version>` the update applies only
/// if nobody changed the family since that version (else 412).
#[utoipa::path(put, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version you read")),
    request_body = FamilyInput,
    responses((status = 200, body = Family), (status = 404, body = ErrorBody),
              (status = 412, body = ErrorBody, description = "Changed since the version in If-Match"),
              (status = 422, body = ErrorBody)))]
pub async fn update_family(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FamilyInput>,
) -> Result<Response, ApiError> {
    let id = family_id(&id)?;
    let expected = if_match(&headers)?;
    let (name, email, date) = parse_family(&body)?;
    let fields = FamilyFields {
        family_name: &name,
        email: &email,
        enrollment_date: date,
    };
    match store::families::update(&state.db, session.coop_id, id, &fields, expected)
        .await
        .map_err(email_conflict)?
    {
        UpdateOutcome::Updated(row) => {
            let written_at = family_changed(&state, session.coop_id, id).await;
            Ok(with_position(
                family_response(StatusCode::OK, row),
                written_at,
            ))
        }
        UpdateOutcome::NotFound => Err(not_found()),
        UpdateOutcome::VersionMismatch { current } => Err(version_mismatch(current)),
    }
}

/// Remove a family (optionally only if still at the `If-Match` version).
#[utoipa::path(delete, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn delete_family(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = family_id(&id)?;
    let expected = if_match(&headers)?;
    match store::families::delete(&state.db, session.coop_id, id, expected).await? {
        DeleteOutcome::Deleted => {
            let written_at = family_changed(&state, session.coop_id, id).await;
            Ok(with_position(
                StatusCode::NO_CONTENT.into_response(),
                written_at,
            ))
        }
        DeleteOutcome::NotFound => Err(not_found()),
        DeleteOutcome::VersionMismatch { current } => Err(version_mismatch(current)),
    }
}

fn parse_family(body: &FamilyInput) -> Result<(Name, Email, Date), ApiError> {
    let mut check = FieldCheck::default();
    let name = check.required("family_name", body.family_name.as_deref(), Name::parse);
    let email = check.required("email", body.email.as_deref(), Email::parse);
    let date = match body.enrollment_date.as_deref() {
        None => Some(OffsetDateTime::now_utc().date()),
        Some(raw) => check.check("enrollment_date", parse_date(raw)),
    };
    check.finish()?;
    match (name, email, date) {
        (Some(name), Some(email), Some(date)) => Ok((name, email, date)),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        ))),
    }
}

fn parse_date(raw: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), &format)
        .map_err(|_| format!("{raw:?} is not a date in the form YYYY-MM-DD"))
}

fn parse_limit(raw: &str) -> Result<u32, String> {
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_PAGE}")),
    }
}

fn encode_cursor(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(raw: &str) -> Result<Uuid, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| "is not a cursor returned by this endpoint".to_owned())
}

/// Ids that are not UUIDs cannot name a family: 404, like any unknown id.
fn family_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found())
}

/// `If-Match: 3`, `"3"` or `W/"3"`; `*` means "whatever version exists".
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or("").trim();
    if raw == "*" {
        return Ok(None);
    }
    let unquoted = raw.trim_start_matches("W/").trim_matches('"');
    unquoted.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must carry the family's version, e.g. If-Match: \"3\"",
        )
    })
}

fn family_response(status: StatusCode, row: FamilyRow) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", row.version));
    let mut response = (status, ApiJson(Family::from(row))).into_response();
    if let Ok(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// After a change to a family committed: drops it from every cache and returns
/// the write's WAL position (with replicas), which the invalidation carries.
async fn family_changed(state: &AppState, coop_id: Uuid, id: Uuid) -> Option<u64> {
    let written_at = state.write_position().await;
    state
        .cache
        .invalidate(&keys::family(coop_id, id), written_at)
        .await;
    written_at
}

/// Hands the write's WAL position to `read_after::stamp_writes`, which would
/// otherwise ask the primary for it again.
fn with_position(mut response: Response, written_at: Option<u64>) -> Response {
    if let Some(lsn) = written_at {
        response.extensions_mut().insert(read_after::WrittenAt(lsn));
    }
    response
}

/// The family id in a path, if the caller may see that family: coordinators
/// see their co-op's families (queries are scoped by co-op), a family account
/// only its own. Anything else is a 404, as if the family did not exist.
pub(crate) fn visible_family(session: &SessionData, raw: &str) -> Result<Uuid, ApiError> {
    let id = family_id(raw)?;
    if session.role == Role::Family && session.family_id != Some(id) {
        return Err(not_found());
    }
    Ok(id)
}

pub(crate) fn not_found() -> ApiError {
    ApiError::NotFound("no family with that id in your co-op".into())
}

fn version_mismatch(current: i64) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "the family changed since you read it (it is now at version {current}); \
         read it again and reapply your change"
    ))
}

fn email_conflict(err: sqlx::Error) -> ApiError {
    if store::is_unique_violation(&err) {
        let mut fields = FieldErrors::new();
        fields.insert(
            "email".into(),
            "is already used by another family in this co-op".into(),
        );
        ApiError::Conflict {
            code: "email_taken",
            message: "another family in this co-op has this email".into(),
            fields: Some(fields),
        }
    } else {
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Ok(id));
        assert!(decode_cursor("not-a-cursor").is_err());
    }

    #[test]
    fn if_match_accepts_common_forms() {
        let mut headers = HeaderMap::new();
        for (raw, expected) in [
            ("3", Some(3)),
            ("\"4\"", Some(4)),
            ("W/\"5\"", Some(5)),
            ("*", None),
        ] {
            headers.insert(header::IF_MATCH, HeaderValue::from_static(raw));
            assert_eq!(if_match(&headers).ok(), Some(expected), "{raw}");
        }
        headers.insert(header::IF_MATCH, HeaderValue::from_static("abc"));
        assert!(if_match(&headers).is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit("200"), Ok(200));
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("201").is_err());
        assert!(parse_limit("ten").is_err());
    }
}
