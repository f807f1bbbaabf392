//! Payments: created `pending` together with the job that charges them.

use coop_domain::PaymentState;
use uuid::Uuid;

use super::Db;
use super::idempotency::{self, Claim};
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_ms;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub family_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub description: String,
    #[sqlx(try_from = "String")]
    pub state: PaymentState,
    pub provider_charge_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, coop_id, family_id, amount_cents, currency, description, state, \
                       provider_charge_id, failure_reason, created_at, updated_at";

/// Inserts the payment and the job that will charge it in one transaction.
/// Under an Idempotency-Key `claim` they commit only if the claim still holds
/// the key, together with the record of the payment's id on it; false when it
/// did not (nothing was written).
pub async fn create(
    db: &Db,
    payment: &PaymentRow,
    job: &NewJob,
    claim: Option<&Claim>,
) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        if let Some(claim) = claim
            && !crate::record_idempotent_work!(tx, claim, &idempotency::resource(&[payment.id]))?
        {
            return Ok(false);
        }
        sqlx::query(&format!(
            "INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(payment.id)
        .bind(payment.coop_id)
        .bind(payment.family_id)
        .bind(payment.amount_cents)
        .bind(&payment.currency)
        .bind(&payment.description)
        .bind(payment.state.as_str())
        .bind(&payment.provider_charge_id)
        .bind(&payment.failure_reason)
        .bind(payment.created_at)
        .bind(payment.updated_at)
        .execute(&mut *tx)
        .await?;
        crate::enqueue_job!(tx, job)?;
        tx.commit().await?;
    });
    Ok(true)
}

pub async fn get(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

pub async fn for_family(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    limit: u32,
) -> Result<Vec<PaymentRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE coop_id = $1 AND family_id = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(coop_id)
            .bind(family_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
    })
}

/// Records the provider's answer, once: a payment leaves `pending` only one way.
pub async fn settle(
    db: &Db,
    id: Uuid,
    succeeded: bool,
    provider_charge_id: Option<&str>,
    failure_reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let done = sqlx::query(
            "UPDATE payments SET state = $2, provider_charge_id = $3, failure_reason = $4, updated_at = $5 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(if succeeded {
            PaymentState::Succeeded.as_str()
        } else {
            PaymentState::Failed.as_str()
        })
        .bind(provider_charge_id)
        .bind(failure_reason)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// For a job that finds its payment: by id alone (the job carries no session).
pub async fn get_by_id(db: &Db, id: Uuid) -> Result<Option<PaymentRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE id = $1");
    with_conn!(db, conn => {
        sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}
