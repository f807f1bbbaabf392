//! `/api/v1/families/{id}/payments`: charging a family through the payment
//! provider. Accepted at once (202, `pending`), charged by a worker.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::{NewPayment, PaymentState, clock};
use coop_mechanisms::store::idempotency::Claim;
use coop_services::payments::Payment as PaymentRow;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::families::family_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct PaymentInput {
    /// Whole cents, 1 to 10,000,000.
    #[schema(value_type = i64, required = true, example = 12500, minimum = 1, maximum = 10_000_000)]
    pub amount_cents: Option<serde_json::Value>,
    /// 1–200 characters (trimmed; not only spaces, no control characters).
    #[schema(value_type = String, required = true, example = "Autumn term fee",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub description: Option<String>,
    /// ISO 4217 code; default `usd`.
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
}

impl PaymentInput {
    fn parse(&self) -> Result<NewPayment, ApiError> {
        // Anything but a JSON integer is "not a whole number of cents".
        let amount = match &self.amount_cents {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(value.as_i64()),
        };
        Ok(NewPayment::parse(
            amount,
            self.description.as_deref(),
            self.currency.as_deref(),
        )?)
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStateName {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Serialize, ToSchema)]
pub struct Payment {
    pub payment_id: Uuid,
    pub family_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub description: String,
    /// `pending`, then `succeeded` or `failed`.
    #[schema(value_type = PaymentStateName)]
    pub state: PaymentState,
    pub provider_charge_id: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<PaymentRow> for Payment {
    fn from(row: PaymentRow) -> Self {
        Self {
            payment_id: row.id,
            family_id: row.family_id,
            amount_cents: row.amount_cents,
            currency: row.currency,
            description: row.description,
            state: row.state,
            provider_charge_id: row.provider_charge_id,
            failure_reason: row.failure_reason,
            created_at: clock::from_unix_ms(row.created_at),
            updated_at: clock::from_unix_ms(row.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PaymentList {
    pub items: Vec<Payment>,
}

/// Charge a family. Answers 202 with the payment `pending`; poll its URL.
#[utoipa::path(post, path = "/api/v1/families/{id}/payments", tag = "payments",
    params(("id" = Uuid, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Send one to retry safely: a repeat returns the first answer and charges once")),
    request_body = PaymentInput,
    responses(
        (status = 202, body = Payment),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Bad amount or description, or no payment provider configured"),
    ))]
pub async fn create_payment(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<PaymentInput>,
) -> Result<Response, ApiError> {
    let family = family_id(&family)?;
    let new = body.parse()?;
    let claim = claim.map(|Extension(claim)| claim);
    let row = state
        .services
        .payments
        .create(&ctx, family, &new, claim.as_ref())
        .await?;
    let location = format!("/api/v1/families/{}/payments/{}", row.family_id, row.id);
    let mut response = (StatusCode::ACCEPTED, ApiJson(Payment::from(row))).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A family's payments, newest first (the latest 200).
#[utoipa::path(get, path = "/api/v1/families/{id}/payments", tag = "payments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_payments(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(family): Path<String>,
) -> Result<ApiJson<PaymentList>, ApiError> {
    let rows = state
        .services
        .payments
        .list(&ctx, family_id(&family)?)
        .await?;
    Ok(ApiJson(PaymentList {
        items: rows.into_iter().map(Payment::from).collect(),
    }))
}

/// One payment.
#[utoipa::path(get, path = "/api/v1/families/{id}/payments/{payment_id}", tag = "payments",
    params(("id" = Uuid, Path), ("payment_id" = Uuid, Path)),
    responses((status = 200, body = Payment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path((family, payment_id)): Path<(String, String)>,
) -> Result<ApiJson<Payment>, ApiError> {
    let family = family_id(&family)?;
    let payment_id = Uuid::parse_str(&payment_id)
        .map_err(|_| ApiError::NotFound("no payment with that id for this family".into()))?;
    let row = state
        .services
        .payments
        .get(&ctx, family, payment_id)
        .await?;
    Ok(ApiJson(Payment::from(row)))
}
