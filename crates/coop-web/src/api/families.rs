//! `/api/v1/families`: the co-op's families.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use coop_domain::{FieldCheck, NewFamily, clock};
use coop_mechanisms::store::idempotency::Claim;
use coop_services::families::{self, Family as FamilyRow};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

pub const DEFAULT_PAGE: u32 = 50;

#[derive(Deserialize, ToSchema)]
pub struct FamilyInput {
    /// 1–200 characters (trimmed; not only spaces, no control characters).
    #[schema(value_type = String, required = true, example = "The Smiths",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub family_name: Option<String>,
    #[schema(value_type = String, required = true, example = "smiths@example.org",
             format = Email, max_length = 254)]
    pub email: Option<String>,
    /// `YYYY-MM-DD`; today (UTC) when omitted.
    #[schema(example = "2026-09-01", format = Date)]
    pub enrollment_date: Option<String>,
}

impl FamilyInput {
    fn parse(&self) -> Result<NewFamily, ApiError> {
        Ok(NewFamily::parse(
            self.family_name.as_deref(),
            self.email.as_deref(),
            self.enrollment_date.as_deref(),
            clock::now().date(),
        )?)
    }
}

#[derive(Serialize, ToSchema)]
pub struct Family {
    pub family_id: Uuid,
    pub coop_id: Uuid,
    pub family_name: String,
    pub email: String,
    #[schema(example = "2026-09-01", format = Date)]
    pub enrollment_date: String,
    /// Increases with every change; send it back in `If-Match` to update safely.
    pub version: i64,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
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
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–200, default 50.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` from the previous page (16 bytes, URL-safe base64
    /// without padding).
    #[param(value_type = String, required = false, pattern = "^([A-Za-z0-9_-]{21}[AQgw])?$")]
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
    SignedIn(ctx): SignedIn,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<FamilyInput>,
) -> Result<Response, ApiError> {
    let new = body.parse()?;
    let claim = claim.map(|Extension(claim)| claim);
    let row = state
        .services
        .families
        .enroll(&ctx, &new, claim.as_ref())
        .await?;
    let location = format!("/api/v1/families/{}", row.id);
    let mut response = family_response(StatusCode::CREATED, row);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Read one family. Another co-op's family is a 404, as if it did not exist.
#[utoipa::path(get, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Family), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_family(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state.services.families.get(&ctx, family_id(&id)?).await?;
    Ok(family_response(StatusCode::OK, row))
}

/// List the co-op's families, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/families", tag = "families",
    params(ListParams),
    responses((status = 200, body = FamilyPage), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_families(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<ApiJson<FamilyPage>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut check = FieldCheck::default();
    let limit = check.optional(
        "limit",
        params.limit.as_deref(),
        || DEFAULT_PAGE,
        parse_limit,
    );
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => check.check("cursor", decode_cursor(raw)),
    };
    check.finish()?;
    let page = state
        .services
        .families
        .list(&ctx, after, limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(ApiJson(FamilyPage {
        items: page.items.into_iter().map(Family::from).collect(),
        next_cursor: page.next_after.map(encode_cursor),
    }))
}

/// Replace a family's fields. With `If-Match: <version>` the update applies only
/// if nobody changed the family since that version (else 412).
#[utoipa::path(put, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The version you read")),
    request_body = FamilyInput,
    responses((status = 200, body = Family), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "Another family in the co-op has this email"),
              (status = 412, body = ErrorBody, description = "Changed since the version in If-Match"),
              (status = 422, body = ErrorBody)))]
pub async fn update_family(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FamilyInput>,
) -> Result<Response, ApiError> {
    let id = family_id(&id)?;
    let expected = if_match(&headers)?;
    let new = body.parse()?;
    let row = state
        .services
        .families
        .update(&ctx, id, &new, expected)
        .await?;
    Ok(family_response(StatusCode::OK, row))
}

/// Remove a family (optionally only if still at the `If-Match` version).
#[utoipa::path(delete, path = "/api/v1/families/{id}", tag = "families",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn delete_family(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = family_id(&id)?;
    let expected = if_match(&headers)?;
    state.services.families.remove(&ctx, id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_limit(raw: &str) -> Result<u32, String> {
    let max = families::MAX_PAGE;
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {max}")),
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
pub(crate) fn family_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::NotFound("no family with that id in your co-op".into()))
}

/// `If-Match: 3`, `"3"` or `W/"3"`; `*` means "whatever version exists".
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
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
