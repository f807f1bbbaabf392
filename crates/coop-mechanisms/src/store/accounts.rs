//! A user's password and its resets. Reset tokens are single-use and
//! expiring, like invites, and only their hash is stored.

use uuid::Uuid;

use super::Db;
use super::coops::UserRow;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_ms;

pub async fn user(db: &Db, user_id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    const SQL: &str = "SELECT u.id, u.coop_id, c.verified_at IS NOT NULL AS coop_verified, \
         u.email, u.password_hash, u.role, u.family_id \
         FROM users u JOIN coops c ON c.id = u.coop_id WHERE u.id = $1";
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
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
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
    with_write_conn!(db, conn => {
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
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
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

pub async fn insert_email_change(
    db: &Db,
    token_hash: &str,
    user_id: Uuid,
    new_email: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "INSERT INTO email_changes (token_hash, user_id, new_email, expires_at, used_at, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(new_email)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

pub enum EmailChangeOutcome {
    /// The email is changed (the family's too, for a family's account);
    /// every session of the user ended (these token hashes).
    Done {
        coop_id: Uuid,
        family_id: Option<Uuid>,
        ended: Vec<String>,
    },
    Unknown,
    Used,
    Expired,
    /// The new address belongs to another account (or family) by now.
    Taken,
}

/// Uses the confirmation token and changes the user's email (and the
/// family's, for a family account), in one transaction. Every session of
/// the user ends: they carry the old address.
pub async fn confirm_email_change(
    db: &Db,
    token_hash: &str,
) -> Result<EmailChangeOutcome, sqlx::Error> {
    let now = now_ms();
    let at = coop_domain::clock::now();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let row: Option<(Uuid, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, new_email, expires_at, used_at FROM email_changes WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, new_email, expires_at, used_at)) = row else {
            return Ok(EmailChangeOutcome::Unknown);
        };
        if used_at.is_some() {
            return Ok(EmailChangeOutcome::Used);
        }
        if expires_at < now {
            return Ok(EmailChangeOutcome::Expired);
        }
        let marked = sqlx::query(
            "UPDATE email_changes SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(EmailChangeOutcome::Used);
        }
        let owner: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT coop_id, family_id FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((coop_id, family_id)) = owner else {
            return Ok(EmailChangeOutcome::Unknown);
        };
        // The link reached the new address: an unconfirmed founder's claim
        // on it was not the owner's.
        crate::release_unverified_claim!(tx, &new_email)?;
        let changed = sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
            .bind(user_id)
            .bind(&new_email)
            .execute(&mut *tx)
            .await;
        match changed {
            Ok(_) => {}
            Err(err) if super::is_unique_violation(&err) => return Ok(EmailChangeOutcome::Taken),
            Err(err) => return Err(err),
        }
        if let Some(family_id) = family_id {
            let changed = sqlx::query(
                "UPDATE families SET email = $3, version = version + 1, updated_at = $4 \
                 WHERE coop_id = $1 AND id = $2",
            )
            .bind(coop_id)
            .bind(family_id)
            .bind(&new_email)
            .bind(at)
            .execute(&mut *tx)
            .await;
            match changed {
                Ok(_) => {}
                Err(err) if super::is_unique_violation(&err) => {
                    return Ok(EmailChangeOutcome::Taken)
                }
                Err(err) => return Err(err),
            }
        }
        let ended = sqlx::query_scalar::<_, String>(
            "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(EmailChangeOutcome::Done { coop_id, family_id, ended })
    })
}
