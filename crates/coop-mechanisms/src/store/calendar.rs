//! Calendar entries the co-op keeps for each family.

use time::Date;
use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_ms;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub key: String,
    pub summary: String,
    pub description: String,
    pub starts_on: Date,
    pub created_at: i64,
}

pub struct NewEvent {
    pub key: String,
    pub summary: String,
    pub description: String,
    pub starts_on: Date,
}

/// Inserts the events whose keys are new; a rerun of the same job adds nothing.
pub async fn insert_all(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    let at = now_ms();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        for event in events {
            sqlx::query(
                "INSERT INTO calendar_events (id, coop_id, family_id, key, summary, description, starts_on, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(coop_id)
            .bind(family_id)
            .bind(&event.key)
            .bind(&event.summary)
            .bind(&event.description)
            .bind(event.starts_on)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

pub async fn for_family(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<EventRow>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, key, summary, description, starts_on, created_at FROM calendar_events \
             WHERE coop_id = $1 AND family_id = $2 ORDER BY starts_on, key",
        )
        .bind(coop_id)
        .bind(family_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// Makes `token_hash` the family's calendar subscription, replacing any
/// earlier one (its link stops working).
pub async fn set_feed(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    token_hash: &str,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "INSERT INTO calendar_feeds (family_id, coop_id, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (family_id) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at = excluded.created_at",
        )
        .bind(family_id)
        .bind(coop_id)
        .bind(token_hash)
        .bind(coop_domain::clock::now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// (co-op, family) whose subscription `token_hash` is.
pub async fn feed_owner(db: &Db, token_hash: &str) -> Result<Option<(Uuid, Uuid)>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as("SELECT coop_id, family_id FROM calendar_feeds WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *conn)
            .await
    })
}
