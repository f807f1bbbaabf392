//! Co-ops and their users.

use uuid::Uuid;

use super::Db;
use super::idempotency::{self, Claim};
use crate::with_conn;
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
pub async fn create_coop(
    db: &Db,
    new: NewCoop<'_>,
    claim: Option<&Claim>,
) -> Result<Option<CreatedCoop>, sqlx::Error> {
    let created = CreatedCoop {
        coop_id: Uuid::now_v7(),
        coordinator_id: Uuid::now_v7(),
    };
    let at = now();
    with_conn!(db, conn => {
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
        tx.commit().await?;
    });
    Ok(Some(created))
}

pub async fn find_user_by_email(db: &Db, email: &Email) -> Result<Option<UserRow>, sqlx::Error> {
    const SQL: &str =
        "SELECT id, coop_id, email, password_hash, role, family_id FROM users WHERE email = $1";
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
