//! A user's password and its resets. Reset tokens are single-use and
//! expiring, like invites, and only their hash is stored.

use uuid::Uuid;

use super::Db;
use super::coops::UserRow;
use crate::with_conn;
use coop_domain::clock::now_ms;

pub async fn user(db: &Db, user_id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    const SQL: &str =
        "SELECT id, coop_id, email, password_hash, role, family_id FROM users WHERE id = $1";
    with_conn!(db, conn => {
        sqlx::query_as::<_, UserRow>(SQL)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// Sets the password and ends every other session of the user, together:
/// whoever knew the old password is signed out by the change. Returns the
/// token hashes of the sessions ended.
pub async fn set_password(
    db: &Db,
    user_id: Uuid,
    password_hash: &str,
    keep_session: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query_scalar::<_, String>(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
        )
        .bind(user_id)
        .bind(keep_session.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended)
    })
}

pub async fn insert_reset(
    db: &Db,
    token_hash: &str,
    user_id: Uuid,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query(
            "INSERT INTO password_resets (token_hash, user_id, expires_at, used_at, created_at) \
             VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

pub enum ResetOutcome {
    /// The password is set; these sessions (token hashes) were ended.
    Done {
        user_id: Uuid,
        ended: Vec<String>,
    },
    Unknown,
    Used,
    Expired,
}

/// Uses the reset token and sets the password, in one transaction: of two
/// concurrent uses exactly one sets a password. Every session of the user
/// ends (whoever took over the account is signed out).
pub async fn redeem_reset(
    db: &Db,
    token_hash: &str,
    password_hash: &str,
) -> Result<ResetOutcome, sqlx::Error> {
    let now = now_ms();
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let row: Option<(Uuid, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, expires_at, used_at FROM password_resets WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, expires_at, used_at)) = row else {
            return Ok(ResetOutcome::Unknown);
        };
        if used_at.is_some() {
            return Ok(ResetOutcome::Used);
        }
        if expires_at < now {
            return Ok(ResetOutcome::Expired);
        }
        let marked = sqlx::query(
            "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(ResetOutcome::Used);
        }
        // Any other reset link the user was sent stops working too.
        sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query_scalar::<_, String>(
            "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ResetOutcome::Done { user_id, ended })
    })
}
