//! What families owe: the ledger (fees, credits), payments that succeeded, and
//! refunds through the provider.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct LedgerLine {
    pub id: Uuid,
    pub enrollment_id: Option<Uuid>,
    pub kind: String,
    pub amount_cents: i64,
    pub currency: String,
    pub description: String,
    pub created_at: OffsetDateTime,
}

/// A family's balance in one currency; positive: owed to the co-op.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct Balance {
    pub currency: String,
    pub fees_cents: i64,
    pub paid_cents: i64,
    pub refunded_cents: i64,
}

impl Balance {
    pub fn due_cents(&self) -> i64 {
        self.fees_cents - self.paid_cents + self.refunded_cents
    }
}

/// Ledger lines, newest first (the latest 500).
pub async fn lines(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<LedgerLine>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, LedgerLine>(
            "SELECT id, enrollment_id, kind, amount_cents, currency, description, created_at FROM ledger \
             WHERE coop_id = $1 AND family_id = $2 ORDER BY created_at DESC, id DESC LIMIT 500",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// The family's balance per currency it has any money in.
pub async fn balances(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<Balance>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, Balance>(
            "SELECT currency, CAST(SUM(fees) AS BIGINT) AS fees_cents, CAST(SUM(paid) AS BIGINT) AS paid_cents, \
             CAST(SUM(refunded) AS BIGINT) AS refunded_cents FROM ( \
               SELECT currency, amount_cents AS fees, 0 AS paid, 0 AS refunded FROM ledger WHERE coop_id = $1 AND family_id = $2 \
               UNION ALL SELECT currency, 0, amount_cents, 0 FROM payments WHERE coop_id = $1 AND family_id = $2 AND state = 'succeeded' \
               UNION ALL SELECT currency, 0, 0, amount_cents FROM refunds WHERE coop_id = $1 AND family_id = $2 AND state <> 'failed' \
             ) AS money GROUP BY currency ORDER BY currency",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_all(&mut *conn)
        .await
    })
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub family_id: Uuid,
    pub payment_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub state: String,
    pub provider_charge_id: Option<String>,
}

/// A refund with the charge it goes back against (for the refund job).
pub async fn refund(db: &Db, id: Uuid) -> Result<Option<RefundRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, RefundRow>(
            "SELECT r.id, r.coop_id, r.family_id, r.payment_id, r.amount_cents, r.currency, r.state, \
             p.provider_charge_id FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    })
}

/// Records the provider's answer, once: a refund leaves `pending` only one way.
pub async fn settle_refund(
    db: &Db,
    id: Uuid,
    succeeded: bool,
    provider_refund_id: Option<&str>,
    failure_reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let done = sqlx::query(
            "UPDATE refunds SET state = $2, provider_refund_id = $3, failure_reason = $4, updated_at = $5 \
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(provider_refund_id)
        .bind(failure_reason)
        .bind(coop_domain::clock::now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// A family that owes money, for the coordinators' dashboard.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub family_id: Uuid,
    pub family_name: String,
    pub currency: String,
    pub due_cents: i64,
}

/// The families that owe the most, per currency.
pub async fn dues(db: &Db, coop_id: Uuid, limit: u32) -> Result<Vec<Due>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, Due>(
            "SELECT f.id AS family_id, f.family_name, m.currency, CAST(SUM(m.amount) AS BIGINT) AS due_cents FROM ( \
               SELECT family_id, currency, amount_cents AS amount FROM ledger WHERE coop_id = $1 \
               UNION ALL SELECT family_id, currency, -amount_cents FROM payments WHERE coop_id = $1 AND state = 'succeeded' \
               UNION ALL SELECT family_id, currency, amount_cents FROM refunds WHERE coop_id = $1 AND state <> 'failed' \
             ) AS m JOIN families f ON f.id = m.family_id \
             GROUP BY f.id, f.family_name, m.currency HAVING SUM(m.amount) > 0 \
             ORDER BY due_cents DESC, f.family_name LIMIT $2",
        )
        .bind(coop_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
    })
}
