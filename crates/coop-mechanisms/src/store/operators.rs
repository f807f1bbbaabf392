//! Platform operators: the people who run Coop itself, outside every co-op
//! (migration 0008). An operator is created from the command line with no
//! password and a one-time link to set one; the link is redeemed through the
//! same page and API call as a password reset, and works like one (single
//! use, expiring, only its hash stored, every session of the operator ends).

use uuid::Uuid;

use super::Db;
use super::accounts::ResetOutcome;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_ms;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRow {
    pub id: Uuid,
    pub email: String,
    /// NULL until the operator sets a password from their link.
    pub password_hash: Option<String>,
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<OperatorRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, OperatorRow>(
            "SELECT id, email, password_hash FROM operators WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&mut *conn)
        .await
    })
}

pub async fn find(db: &Db, id: Uuid) -> Result<Option<OperatorRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, OperatorRow>(
            "SELECT id, email, password_hash FROM operators WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
    })
}

pub enum Added {
    /// A new operator, and their first set-password link.
    New(Uuid),
    /// The address was an operator already: a new link (the old ones keep
    /// working until used or expired).
    Existing(Uuid),
    /// The address is a co-op member's account: one address, one account.
    MemberAccount,
}

/// Adds an operator (or finds the existing one) and stores a set-password
/// link for them, in one transaction.
pub async fn add(
    db: &Db,
    email: &str,
    token_hash: &str,
    expires_at: i64,
) -> Result<Added, sqlx::Error> {
    let now = now_ms();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&mut *tx)
            .await?;
        if members > 0 {
            return Ok(Added::MemberAccount);
        }
        let existing: Option<Uuid> = sqlx::query_scalar("SELECT id FROM operators WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
        let (added, id) = match existing {
            Some(id) => (Added::Existing(id), id),
            None => {
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO operators (id, email, password_hash, created_at) \
                     VALUES ($1, $2, NULL, $3)",
                )
                .bind(id)
                .bind(email)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (Added::New(id), id)
            }
        };
        sqlx::query(
            "INSERT INTO operator_password_links \
             (token_hash, operator_id, expires_at, used_at, created_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(token_hash)
        .bind(id)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(added)
    })
}

/// Uses a set-password link, in one transaction (of two concurrent uses one
/// sets the password), ending every session of the operator.
pub async fn redeem_link(
    db: &Db,
    token_hash: &str,
    password_hash: &str,
) -> Result<ResetOutcome, sqlx::Error> {
    let now = now_ms();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let row: Option<(Uuid, i64, Option<i64>)> = sqlx::query_as(
            "SELECT operator_id, expires_at, used_at FROM operator_password_links \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((operator_id, expires_at, used_at)) = row else {
            return Ok(ResetOutcome::Unknown);
        };
        if used_at.is_some() {
            return Ok(ResetOutcome::Used);
        }
        if expires_at < now {
            return Ok(ResetOutcome::Expired);
        }
        // Every other link of the operator stops working too.
        let marked = sqlx::query(
            "UPDATE operator_password_links SET used_at = $2 \
             WHERE operator_id = $1 AND used_at IS NULL",
        )
        .bind(operator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(ResetOutcome::Used);
        }
        sqlx::query("UPDATE operators SET password_hash = $2 WHERE id = $1")
            .bind(operator_id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query_scalar::<_, String>(
            "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash",
        )
        .bind(operator_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ResetOutcome::Done {
            user_id: operator_id,
            ended,
        })
    })
}
