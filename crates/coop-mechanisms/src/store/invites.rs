//! Invitations to create a family account: single-use, expiring. Only the
//! token's hash is stored, so a database leak does not leak usable links.

use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_ms;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteRow {
    pub token_hash: String,
    pub coop_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert(
    db: &Db,
    token_hash: &str,
    coop_id: Uuid,
    family_id: Uuid,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "INSERT INTO invites (token_hash, coop_id, family_id, expires_at, used_at, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5)",
        )
        .bind(token_hash)
        .bind(coop_id)
        .bind(family_id)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

pub async fn find(db: &Db, token_hash: &str) -> Result<Option<InviteRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, InviteRow>(
            "SELECT token_hash, coop_id, family_id, expires_at, used_at FROM invites WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await
    })
}

pub struct NewFamilyUser<'a> {
    pub user_id: Uuid,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
}

pub enum AcceptOutcome {
    Accepted,
    /// Someone used this invite first.
    AlreadyUsed,
    /// The family has an account already (another invite was accepted).
    AccountExists,
}

/// Marks the invite used and creates the family's account, in one transaction:
/// of two concurrent accepts exactly one creates an account.
pub async fn accept(
    db: &Db,
    invite: &InviteRow,
    user: &NewFamilyUser<'_>,
) -> Result<AcceptOutcome, sqlx::Error> {
    let at = coop_domain::clock::now();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let marked = sqlx::query(
            "UPDATE invites SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(&invite.token_hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(AcceptOutcome::AlreadyUsed);
        }
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE family_id = $1 AND role = 'family'",
        )
        .bind(invite.family_id)
        .fetch_optional(&mut *tx)
        .await?;
        if existing.is_some() {
            return Ok(AcceptOutcome::AccountExists);
        }
        crate::release_unverified_claim!(tx, user.email)?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, coop_id, email, name, password_hash, role, family_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'family', $6, $7)",
        )
        .bind(user.user_id)
        .bind(invite.coop_id)
        .bind(user.email)
        .bind(user.name)
        .bind(user.password_hash)
        .bind(invite.family_id)
        .bind(at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // The email belongs to another account already (log-in is by email).
            Err(err) if super::is_unique_violation(&err) => return Ok(AcceptOutcome::AccountExists),
            Err(err) => return Err(err),
        }
        tx.commit().await?;
    });
    Ok(AcceptOutcome::Accepted)
}
