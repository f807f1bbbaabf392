//! Payments: accepted at once (202, `pending`), charged by a worker through the
//! payment provider, then `succeeded` or `failed`.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::families::visible_family;
use crate::domain::FieldCheck;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::{AuthUser, Coordinator};
use crate::http::idempotency;
use crate::http::json::ApiJson;
use crate::jobs;
use crate::state::AppState;
use crate::store::idempotency::Claim;
use crate::store::payments::PaymentRow;
use crate::store::{self, jobs::now_ms};

/// Largest single payment: $100,000.00 in cents.
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000;
const MAX_DESCRIPTION_CHARS: usize = 200;

#[derive(Deserialize, ToSchema)]
pub struct PaymentInput {
    /// Whole cents, 1 to 10,000,000.
    #[schema(value_type = i64, example = 12500)]
    pub amount_cents: Option<serde_json::Value>,
    #[schema(example = "Autumn term fee")]
    pub description: Option<String>,
    /// ISO 4217 code, lower case; default `usd`.
    #[schema(example = "usd")]
    pub currency: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Payment {
    pub payment_id: Uuid,
    pub family_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub description: String,
    /// `pending`, then `succeeded` or `failed`.
    pub state: String,
    pub provider_charge_id: Option<String>,
    pub failure_reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
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
            created_at: row.created_at,
            updated_at: row.updated_at,
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
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Bad amount or description, or no payment provider configured"),
    ))]
pub async fn create_payment(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    Path(family_id): Path<String>,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<PaymentInput>,
) -> Result<Response, ApiError> {
    let family_id = visible_family(&session, &family_id)?;
    let mut check = FieldCheck::default();
    let amount = match &body.amount_cents {
        None | Some(serde_json::Value::Null) => {
            check.missing("amount_cents");
            None
        }
        Some(value) => check.check("amount_cents", parse_amount(value)),
    };
    let description = check.required("description", body.description.as_deref(), |raw| {
        let trimmed = raw.trim();
        match trimmed.chars().count() {
            0 => Err("must not be empty".to_owned()),
            n if n > MAX_DESCRIPTION_CHARS => Err(format!(
                "must be at most {MAX_DESCRIPTION_CHARS} characters"
            )),
            _ => Ok(trimmed.to_owned()),
        }
    });
    let currency = match body.currency.as_deref() {
        None => Some("usd".to_owned()),
        Some(raw) => check.check("currency", parse_currency(raw)),
    };
    check.finish()?;
    let (Some(amount), Some(description), Some(currency)) = (amount, description, currency) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let claim = claim.map(|Extension(claim)| claim);
    if let Some([id]) = idempotency::committed(claim.as_ref())? {
        // An earlier attempt with this key created the payment, then its
        // instance died before answering: answer for it, charge nothing more.
        let row = store::payments::get(&state.db, session.coop_id, id)
            .await?
            .filter(|row| row.family_id == family_id)
            .ok_or_else(|| {
                ApiError::NotFound("this request created a payment that no longer exists".into())
            })?;
        return Ok(accepted(row));
    }
    if state.config.payments_url.is_none() {
        return Err(ApiError::Unprocessable {
            code: "payments_not_configured",
            message: "this Coop has no payment provider: set COOP_PAYMENTS_URL".into(),
        });
    }
    if store::families::get(&state.db, session.coop_id, family_id)
        .await?
        .is_none()
    {
        return Err(super::families::not_found());
    }
    let at = now_ms();
    let row = PaymentRow {
        id: Uuid::now_v7(),
        coop_id: session.coop_id,
        family_id,
        amount_cents: amount,
        currency,
        description,
        state: "pending".into(),
        provider_charge_id: None,
        failure_reason: None,
        created_at: at,
        updated_at: at,
    };
    let job = jobs::payment_job(session.coop_id, row.id, state.config.job_max_attempts);
    if !store::payments::create(&state.db, &row, &job, claim.as_ref()).await? {
        return Err(idempotency::taken_over());
    }
    Ok(accepted(row))
}

fn accepted(row: PaymentRow) -> Response {
    let location = format!("/api/v1/families/{}/payments/{}", row.family_id, row.id);
    let mut response = (StatusCode::ACCEPTED, ApiJson(Payment::from(row))).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A family's payments, newest first (the latest 200).
#[utoipa::path(get, path = "/api/v1/families/{id}/payments", tag = "payments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentList), (status = 404, body = ErrorBody)))]
pub async fn list_payments(
    State(state): State<AppState>,
    AuthUser(session): AuthUser,
    Path(family_id): Path<String>,
) -> Result<ApiJson<PaymentList>, ApiError> {
    let family_id = visible_family(&session, &family_id)?;
    let rows = store::payments::for_family(&state.db, session.coop_id, family_id, 200).await?;
    Ok(ApiJson(PaymentList {
        items: rows.into_iter().map(Payment::from).collect(),
    }))
}

/// One payment.
#[utoipa::path(get, path = "/api/v1/families/{id}/payments/{payment_id}", tag = "payments",
    params(("id" = Uuid, Path), ("payment_id" = Uuid, Path)),
    responses((status = 200, body = Payment), (status = 404, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    AuthUser(session): AuthUser,
    Path((family_id, payment_id)): Path<(String, String)>,
) -> Result<ApiJson<Payment>, ApiError> {
    let family_id = visible_family(&session, &family_id)?;
    let not_found = || ApiError::NotFound("no payment with that id for this family".into());
    let payment_id = Uuid::parse_str(&payment_id).map_err(|_| not_found())?;
    let row = store::payments::get(&state.db, session.coop_id, payment_id)
        .await?
        .filter(|row| row.family_id == family_id)
        .ok_or_else(not_found)?;
    Ok(ApiJson(Payment::from(row)))
}

fn parse_amount(value: &serde_json::Value) -> Result<i64, String> {
    let problem = || format!("must be a whole number of cents from 1 to {MAX_AMOUNT_CENTS}");
    match value.as_i64() {
        Some(cents) if (1..=MAX_AMOUNT_CENTS).contains(&cents) => Ok(cents),
        _ => Err(problem()),
    }
}

fn parse_currency(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_lowercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(code)
    } else {
        Err("must be a three-letter ISO 4217 code such as usd or eur".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_whole_cents_within_bounds() {
        assert_eq!(parse_amount(&json!(1)), Ok(1));
        assert_eq!(parse_amount(&json!(MAX_AMOUNT_CENTS)), Ok(MAX_AMOUNT_CENTS));
        for bad in [
            json!(0),
            json!(-5),
            json!(MAX_AMOUNT_CENTS + 1),
            json!(1e30),
            json!(12.5),
            json!("100"),
        ] {
            assert!(parse_amount(&bad).is_err(), "{bad}");
        }
    }
}
