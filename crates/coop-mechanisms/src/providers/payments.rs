//! The payment provider's HTTP API, behind a circuit breaker.
//!
//! `POST {COOP_PAYMENTS_URL}/charges` with the payment's id as the
//! `Idempotency-Key`: however often a job is rerun, the provider charges once.
//! `POST {COOP_PAYMENTS_URL}/refunds` likewise with the refund's id, behind the
//! same breaker (one provider, one health).

use std::time::Instant;

use serde::Deserialize;
use uuid::Uuid;

use super::ProviderSettings;
use super::breaker::Breaker;

pub struct Charge<'a> {
    pub payment_id: Uuid,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub description: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChargeResult {
    Succeeded {
        charge_id: String,
    },
    Declined {
        charge_id: Option<String>,
        reason: String,
    },
}

#[derive(Debug)]
pub enum ChargeError {
    /// The breaker is open: no call was made; try again at `retry_at`.
    Open { retry_at: Instant },
    /// No usable answer (unreachable, timeout, 5xx, 429): retry later.
    Transient(String),
    /// The provider refused the request itself (e.g. 401, 400): retrying the
    /// same request cannot help.
    Permanent(String),
}

#[derive(Deserialize)]
struct ProviderAnswer {
    id: Option<String>,
    status: Option<String>,
    failure_reason: Option<String>,
}

/// Money going back to a family, against a charge the provider made.
pub struct Refund<'a> {
    pub refund_id: Uuid,
    pub payment_id: Uuid,
    pub charge_id: Option<&'a str>,
    pub amount_cents: i64,
    pub currency: &'a str,
}

pub struct PaymentProvider {
    http: reqwest::Client,
    charges_url: String,
    refunds_url: String,
    breaker: Breaker,
}

impl PaymentProvider {
    /// `None` when no provider is configured.
    pub fn new(config: &ProviderSettings) -> anyhow::Result<Option<Self>> {
        let Some(base) = &config.payments_url else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(config.provider_timeout)
            .connect_timeout(config.provider_timeout)
            .build()?;
        Ok(Some(Self {
            http,
            charges_url: format!("{base}/charges"),
            refunds_url: format!("{base}/refunds"),
            breaker: Breaker::new("payments", config.breaker()),
        }))
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub async fn charge(&self, charge: &Charge<'_>) -> Result<ChargeResult, ChargeError> {
        let body = serde_json::json!({
            "amount_cents": charge.amount_cents,
            "currency": charge.currency,
            "description": charge.description,
            "reference": charge.payment_id,
        });
        self.guarded(&self.charges_url, charge.payment_id, &body)
            .await
    }

    /// Returns money; `Succeeded` carries the provider's refund id, `Declined`
    /// its reason.
    pub async fn refund(&self, refund: &Refund<'_>) -> Result<ChargeResult, ChargeError> {
        let body = serde_json::json!({
            "amount_cents": refund.amount_cents,
            "currency": refund.currency,
            "charge_id": refund.charge_id,
            "reference": refund.payment_id,
        });
        self.guarded(&self.refunds_url, refund.refund_id, &body)
            .await
    }

    async fn guarded(
        &self,
        url: &str,
        key: Uuid,
        body: &serde_json::Value,
    ) -> Result<ChargeResult, ChargeError> {
        let permit = self
            .breaker
            .try_acquire(Instant::now())
            .map_err(|rejected| ChargeError::Open {
                retry_at: rejected.retry_at,
            })?;
        let result = self.call(url, key, body).await;
        let provider_healthy = !matches!(result, Err(ChargeError::Transient(_)));
        self.breaker
            .record(permit, provider_healthy, Instant::now());
        result
    }

    async fn call(
        &self,
        url: &str,
        key: Uuid,
        body: &serde_json::Value,
    ) -> Result<ChargeResult, ChargeError> {
        let response = self
            .http
            .post(url)
            .header("Idempotency-Key", key.to_string())
            .json(body)
            .send()
            .await
            .map_err(|e| ChargeError::Transient(format!("payment provider unreachable: {e}")))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let answer: Option<ProviderAnswer> = serde_json::from_str(&body).ok();
        classify(status.as_u16(), answer).map_err(|problem| match problem {
            Problem::Transient => ChargeError::Transient(format!(
                "payment provider answered {status}: {}",
                truncate(&body)
            )),
            Problem::Permanent => ChargeError::Permanent(format!(
                "payment provider refused the request ({status}): {}",
                truncate(&body)
            )),
        })
    }
}

enum Problem {
    Transient,
    Permanent,
}

/// What an answer means for the payment.
fn classify(status: u16, answer: Option<ProviderAnswer>) -> Result<ChargeResult, Problem> {
    match status {
        200..=299 => {
            let answer = answer.ok_or(Problem::Transient)?;
            match answer.status.as_deref() {
                Some("succeeded") => Ok(ChargeResult::Succeeded {
                    charge_id: answer.id.unwrap_or_default(),
                }),
                Some("failed") => Ok(ChargeResult::Declined {
                    charge_id: answer.id,
                    reason: answer.failure_reason.unwrap_or_else(|| "declined".into()),
                }),
                // Still processing, or an answer we do not understand: ask again.
                _ => Err(Problem::Transient),
            }
        }
        // Payment Required: the charge was attempted and declined.
        402 => Ok(ChargeResult::Declined {
            charge_id: answer.as_ref().and_then(|a| a.id.clone()),
            reason: answer
                .and_then(|a| a.failure_reason)
                .unwrap_or_else(|| "declined".into()),
        }),
        408 | 409 | 425 | 429 | 500..=599 => Err(Problem::Transient),
        _ => Err(Problem::Permanent),
    }
}

fn truncate(body: &str) -> String {
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &str) -> Option<ProviderAnswer> {
        Some(ProviderAnswer {
            id: Some("ch_1".into()),
            status: Some(status.into()),
            failure_reason: Some("card_declined".into()),
        })
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert!(matches!(
            classify(201, answer("succeeded")),
            Ok(ChargeResult::Succeeded { .. })
        ));
        assert!(matches!(
            classify(200, answer("failed")),
            Ok(ChargeResult::Declined { .. })
        ));
        assert!(matches!(
            classify(402, answer("failed")),
            Ok(ChargeResult::Declined { reason, .. }) if reason == "card_declined"
        ));
        assert!(matches!(classify(503, None), Err(Problem::Transient)));
        assert!(matches!(classify(429, None), Err(Problem::Transient)));
        assert!(matches!(classify(200, None), Err(Problem::Transient)));
        assert!(matches!(classify(401, None), Err(Problem::Permanent)));
    }
}
