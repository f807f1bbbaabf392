//! `/api/v1/families/{id}/children`: a family's children, its enrollments and
//! its balance.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use coop_domain::clock;
use coop_domain::courses::{EnrollmentState, NewChild};
use coop_services::children::Child as ChildRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::classes::PlacementState;
use super::families::family_id;
use super::input::{number, path_id};
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct ChildInput {
    /// 1–200 characters (trimmed; not only spaces, no control characters).
    #[schema(value_type = String, required = true, example = "Emma",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub first_name: Option<String>,
    /// `YYYY-MM-DD`; a birth date or a grade (or both) is required.
    #[schema(example = "2018-05-14", format = Date)]
    pub birth_date: Option<String>,
    /// -1 (pre-K) to 12; 0 is kindergarten.
    #[schema(value_type = Option<i64>, minimum = -1, maximum = 12)]
    pub grade: Option<serde_json::Value>,
}

impl ChildInput {
    fn parse(&self) -> Result<NewChild, ApiError> {
        Ok(NewChild::parse(
            self.first_name.as_deref(),
            self.birth_date.as_deref(),
            number(&self.grade),
            clock::now().date(),
        )?)
    }
}

#[derive(Serialize, ToSchema)]
pub struct Child {
    pub child_id: Uuid,
    pub family_id: Uuid,
    pub first_name: String,
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    pub grade: Option<i32>,
    pub version: i64,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<ChildRow> for Child {
    fn from(row: ChildRow) -> Self {
        Self {
            child_id: row.id,
            family_id: row.family_id,
            first_name: row.first_name,
            birth_date: row.birth_date.map(|d| d.to_string()),
            grade: row.grade,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChildList {
    pub items: Vec<Child>,
}

/// Add a child to a family (the family itself, or a coordinator).
#[utoipa::path(post, path = "/api/v1/families/{id}/children", tag = "children",
    params(("id" = Uuid, Path)),
    request_body = ChildInput,
    responses((status = 201, body = Child), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_child(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
    ApiJson(body): ApiJson<ChildInput>,
) -> Result<(StatusCode, ApiJson<Child>), ApiError> {
    let family = family_id(&family)?;
    let new = body.parse()?;
    let row = state.services.children.add(&ctx, family, &new).await?;
    Ok((StatusCode::CREATED, ApiJson(row.into())))
}

/// A family's children.
#[utoipa::path(get, path = "/api/v1/families/{id}/children", tag = "children",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ChildList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_children(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
) -> Result<ApiJson<ChildList>, ApiError> {
    let rows = state
        .services
        .children
        .of_family(&ctx, family_id(&family)?)
        .await?;
    Ok(ApiJson(ChildList {
        items: rows.into_iter().map(Child::from).collect(),
    }))
}

/// One child.
#[utoipa::path(get, path = "/api/v1/families/{id}/children/{child_id}", tag = "children",
    params(("id" = Uuid, Path), ("child_id" = Uuid, Path)),
    responses((status = 200, body = Child), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_child(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path((family, child)): Path<(String, String)>,
) -> Result<ApiJson<Child>, ApiError> {
    let row = state
        .services
        .children
        .get(&ctx, family_id(&family)?, child_id(&child)?)
        .await?;
    Ok(ApiJson(row.into()))
}

/// Replace a child's fields.
#[utoipa::path(put, path = "/api/v1/families/{id}/children/{child_id}", tag = "children",
    params(("id" = Uuid, Path), ("child_id" = Uuid, Path)),
    request_body = ChildInput,
    responses((status = 200, body = Child), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_child(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path((family, child)): Path<(String, String)>,
    ApiJson(body): ApiJson<ChildInput>,
) -> Result<ApiJson<Child>, ApiError> {
    let (family, child) = (family_id(&family)?, child_id(&child)?);
    let new = body.parse()?;
    let row = state
        .services
        .children
        .update(&ctx, family, child, &new)
        .await?;
    Ok(ApiJson(row.into()))
}

/// Remove a child that holds no class seat or waitlist place (409 otherwise).
#[utoipa::path(delete, path = "/api/v1/families/{id}/children/{child_id}", tag = "children",
    params(("id" = Uuid, Path), ("child_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The child holds a seat or a waitlist place")))]
pub async fn remove_child(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path((family, child)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (family, child) = (family_id(&family)?, child_id(&child)?);
    state.services.children.remove(&ctx, family, child).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct FamilyEnrollment {
    pub enrollment_id: Uuid,
    pub class_id: Uuid,
    pub class_title: String,
    pub semester_id: Uuid,
    pub child_id: Uuid,
    pub first_name: String,
    #[schema(value_type = PlacementState)]
    pub state: EnrollmentState,
    /// 1 = next to get a seat (waitlisted only).
    pub position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct FamilyEnrollments {
    pub items: Vec<FamilyEnrollment>,
}

/// The family's children's current classes and waitlist places.
#[utoipa::path(get, path = "/api/v1/families/{id}/enrollments", tag = "enrollments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = FamilyEnrollments), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn family_enrollments(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
) -> Result<ApiJson<FamilyEnrollments>, ApiError> {
    let rows = state
        .services
        .enrollments
        .of_family(&ctx, family_id(&family)?)
        .await?;
    Ok(ApiJson(FamilyEnrollments {
        items: rows
            .into_iter()
            .map(|r| FamilyEnrollment {
                enrollment_id: r.id,
                class_id: r.class_id,
                class_title: r.class_title,
                semester_id: r.semester_id,
                child_id: r.child_id,
                first_name: r.first_name,
                state: r.state,
                position: r.position,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct CurrencyBalance {
    pub currency: String,
    /// Fees charged less fees credited back.
    pub fees_cents: i64,
    /// Payments that succeeded.
    pub paid_cents: i64,
    /// Money being or already returned through the provider.
    pub refunded_cents: i64,
    /// What the family owes now; negative: a credit.
    pub due_cents: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerLine {
    /// `fee` or `refund`.
    pub kind: String,
    pub amount_cents: i64,
    pub currency: String,
    pub description: String,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct FamilyBalance {
    pub family_id: Uuid,
    pub balances: Vec<CurrencyBalance>,
    /// Newest first.
    pub lines: Vec<LedgerLine>,
}

/// What the family owes, per currency, and the lines behind it.
#[utoipa::path(get, path = "/api/v1/families/{id}/balance", tag = "payments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = FamilyBalance), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn balance(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
) -> Result<ApiJson<FamilyBalance>, ApiError> {
    let family = family_id(&family)?;
    let (balances, lines) = state.services.enrollments.balance(&ctx, family).await?;
    Ok(ApiJson(FamilyBalance {
        family_id: family,
        balances: balances
            .into_iter()
            .map(|b| CurrencyBalance {
                due_cents: b.due_cents(),
                currency: b.currency,
                fees_cents: b.fees_cents,
                paid_cents: b.paid_cents,
                refunded_cents: b.refunded_cents,
            })
            .collect(),
        lines: lines
            .into_iter()
            .map(|l| LedgerLine {
                kind: l.kind,
                amount_cents: l.amount_cents,
                currency: l.currency,
                description: l.description,
                created_at: l.created_at,
            })
            .collect(),
    }))
}

fn child_id(raw: &str) -> Result<Uuid, ApiError> {
    path_id(raw, || {
        ApiError::NotFound("no child with that id in this family".into())
    })
}
