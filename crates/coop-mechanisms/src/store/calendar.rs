//! Calendar entries the co-op keeps for each family.

use time::Date;
use uuid::Uuid;

use super::Db;
use crate::with_conn;
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
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
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
