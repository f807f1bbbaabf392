//! Co-ops and their users.

use uuid::Uuid;

use super::Db;
use super::idempotency::{self, Claim};
use super::jobs::{NewJob, now_ms};
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now;
use coop_domain::{Email, Name, PasswordHash, Role};

pub struct NewCoop<'a> {
    pub name: &'a Name,
    pub coordinator_name: &'a Name,
    pub coordinator_email: &'a Email,
    pub coordinator_password: &'a PasswordHash,
}

pub struct CreatedCoop {
    pub coop_id: Uuid,
    pub coordinator_id: Uuid,
}

#[derive(sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    /// Whether the user's co-op is confirmed (its founder's email).
    pub coop_verified: bool,
    pub email: String,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub family_id: Option<Uuid>,
}

/// Creates the co-op and its first coordinator together: a co-op without a
/// coordinator could never be managed. Under an Idempotency-Key `claim` they
/// commit only if the claim still holds the key, together with the record of
/// both ids on it; `None` when it did not (nothing was written).
///
/// The co-op starts unconfirmed: `verification(coop_id, coordinator_id)`
/// makes the job that emails the founder their confirmation link, committed
/// with the co-op.
pub async fn create_coop(
    db: &Db,
    new: NewCoop<'_>,
    claim: Option<&Claim>,
    verification: impl Fn(Uuid, Uuid) -> NewJob,
) -> Result<Option<CreatedCoop>, sqlx::Error> {
    let created = CreatedCoop {
        coop_id: Uuid::now_v7(),
        coordinator_id: Uuid::now_v7(),
    };
    let job = verification(created.coop_id, created.coordinator_id);
    let at = now();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        if let Some(claim) = claim {
            let resource = idempotency::resource(&[created.coop_id, created.coordinator_id]);
            if !crate::record_idempotent_work!(tx, claim, &resource)? {
                return Ok(None);
            }
        }
        sqlx::query("INSERT INTO coops (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(created.coop_id)
            .bind(new.name.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO users (id, coop_id, email, name, password_hash, role, family_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(created.coordinator_id)
        .bind(created.coop_id)
        .bind(new.coordinator_email.as_str())
        .bind(new.coordinator_name.as_str())
        .bind(&new.coordinator_password.0)
        .bind(Role::Coordinator.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        crate::enqueue_job!(tx, &job)?;
        tx.commit().await?;
    });
    Ok(Some(created))
}

/// Stores a founder's confirmation link (its hash), made when its email is.
pub async fn insert_signup_verification(
    db: &Db,
    token_hash: &str,
    coop_id: Uuid,
    user_id: Uuid,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "INSERT INTO signup_verifications (token_hash, coop_id, user_id, expires_at, used_at, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5)",
        )
        .bind(token_hash)
        .bind(coop_id)
        .bind(user_id)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

pub enum VerifyOutcome {
    /// Confirmed now; its held jobs are due.
    Verified {
        coop_id: Uuid,
    },
    /// The co-op was confirmed before (another link, or this one).
    AlreadyVerified,
    Unknown,
    Expired,
}

/// Confirms the founder's email with a link's token: the co-op becomes
/// confirmed and its held jobs due, in one transaction.
pub async fn verify_signup(db: &Db, token_hash: &str) -> Result<VerifyOutcome, sqlx::Error> {
    let now = now_ms();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let row: Option<(Uuid, i64, Option<i64>)> = sqlx::query_as(
            "SELECT s.coop_id, s.expires_at, c.verified_at FROM signup_verifications s \
             JOIN coops c ON c.id = s.coop_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((coop_id, expires_at, verified_at)) = row else {
            return Ok(VerifyOutcome::Unknown);
        };
        if verified_at.is_some() {
            return Ok(VerifyOutcome::AlreadyVerified);
        }
        if expires_at < now {
            return Ok(VerifyOutcome::Expired);
        }
        let marked = sqlx::query(
            "UPDATE coops SET verified_at = $2 WHERE id = $1 AND verified_at IS NULL",
        )
        .bind(coop_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(VerifyOutcome::AlreadyVerified);
        }
        sqlx::query("UPDATE signup_verifications SET used_at = $2 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        crate::release_held_jobs!(tx, coop_id, now)?;
        tx.commit().await?;
        Ok(VerifyOutcome::Verified { coop_id })
    })
}

/// Whether the co-op's founder has confirmed their email.
pub async fn is_verified(db: &Db, coop_id: Uuid) -> Result<bool, sqlx::Error> {
    with_write_conn!(db, conn => {
        let verified: Option<Option<i64>> =
            sqlx::query_scalar("SELECT verified_at FROM coops WHERE id = $1")
                .bind(coop_id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(matches!(verified, Some(Some(_))))
    })
}

/// Frees an address held by the founder of a co-op that was never
/// confirmed: someone else just proved it is theirs (an invite's link
/// reached them), so the unconfirmed claim on it was not the owner's. The
/// unconfirmed co-op is removed with everything in it (nothing of it was
/// ever sent anywhere). Runs in the caller's transaction; true when it freed
/// the address.
#[macro_export]
macro_rules! release_unverified_claim {
    ($tx:expr, $email:expr) => {{
        sqlx::query(
            "DELETE FROM coops WHERE verified_at IS NULL AND id IN \
             (SELECT coop_id FROM users WHERE email = $1 AND role = 'coordinator')",
        )
        .bind($email)
        .execute(&mut *$tx)
        .await
        .map(|done| done.rows_affected() > 0)
    }};
}

pub async fn find_user_by_email(db: &Db, email: &Email) -> Result<Option<UserRow>, sqlx::Error> {
    const SQL: &str = "SELECT u.id, u.coop_id, c.verified_at IS NOT NULL AS coop_verified, \
         u.email, u.password_hash, u.role, u.family_id \
         FROM users u JOIN coops c ON c.id = u.coop_id WHERE u.email = $1";
    with_conn!(db, conn => {
        sqlx::query_as::<_, UserRow>(SQL)
            .bind(email.as_str())
            .fetch_optional(&mut *conn)
            .await
    })
}

pub async fn name(db: &Db, coop_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_scalar("SELECT name FROM coops WHERE id = $1")
            .bind(coop_id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// (user id, email, name) of every coordinator of the co-op.
pub async fn coordinators(
    db: &Db,
    coop_id: Uuid,
) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as(
            "SELECT id, email, name FROM users WHERE coop_id = $1 AND role = 'coordinator' ORDER BY id",
        )
        .bind(coop_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// (user id, name, email) of every user of the co-op, by name: who may teach.
pub async fn members(db: &Db, coop_id: Uuid) -> Result<Vec<(Uuid, String, String)>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as("SELECT id, name, email FROM users WHERE coop_id = $1 ORDER BY name, id LIMIT 2000")
            .bind(coop_id)
            .fetch_all(&mut *conn)
            .await
    })
}
