//! Announcements and their delivery. Writing one commits the announcement and
//! one fan-out job; each fan-out job finds the next batch of recipient
//! families, records a delivery and queues an email job for each, and queues
//! the next fan-out job, all in one commit. So an announcement to thousands of
//! families never commits thousands of jobs in the request, and a rerun of any
//! job (its worker died) repeats nothing: deliveries are keyed by (announcement,
//! family), and job keys make a second insert a no-op.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Db;
use super::jobs::NewJob;
use crate::{with_conn, with_write_conn};

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct AnnouncementRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub class_id: Option<Uuid>,
    pub subject: String,
    pub body: String,
    pub author_id: Uuid,
    /// Known once the fan-out has found every recipient.
    pub recipients: Option<i32>,
    pub created_at: OffsetDateTime,
    pub sent: i64,
    pub pending: i64,
    pub failed: i64,
}

const SELECT: &str = "SELECT a.id, a.coop_id, a.class_id, a.subject, a.body, a.author_id, a.recipients, a.created_at, \
     (SELECT COUNT(*) FROM announcement_deliveries d WHERE d.announcement_id = a.id AND d.state = 'sent') AS sent, \
     (SELECT COUNT(*) FROM announcement_deliveries d WHERE d.announcement_id = a.id AND d.state = 'pending') AS pending, \
     (SELECT COUNT(*) FROM announcement_deliveries d WHERE d.announcement_id = a.id AND d.state = 'failed') AS failed \
     FROM announcements a";

pub struct NewAnnouncement<'a> {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub class_id: Option<Uuid>,
    pub subject: &'a str,
    pub body: &'a str,
    pub author_id: Uuid,
}

/// The announcement and its first fan-out job, together.
pub async fn create(
    db: &Db,
    new: &NewAnnouncement<'_>,
    fan_out: &NewJob,
) -> Result<(), sqlx::Error> {
    let at = coop_domain::clock::now();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        sqlx::query(
            "INSERT INTO announcements (id, coop_id, class_id, subject, body, author_id, recipients, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(new.id)
        .bind(new.coop_id)
        .bind(new.class_id)
        .bind(new.subject)
        .bind(new.body)
        .bind(new.author_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        crate::enqueue_job!(tx, fan_out)?;
        tx.commit().await?;
    });
    Ok(())
}

pub async fn get(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<AnnouncementRow>, sqlx::Error> {
    let sql = format!("{SELECT} WHERE a.coop_id = $1 AND a.id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, AnnouncementRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// The co-op's announcements, newest first; for a family (`for_family`), the
/// co-op-wide ones and those delivered to it.
pub async fn list(
    db: &Db,
    coop_id: Uuid,
    for_family: Option<Uuid>,
) -> Result<Vec<AnnouncementRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT} WHERE a.coop_id = $1 AND ($2 OR a.class_id IS NULL OR EXISTS (SELECT 1 FROM announcement_deliveries d \
         WHERE d.announcement_id = a.id AND d.family_id = $3)) ORDER BY a.created_at DESC, a.id DESC LIMIT 200"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, AnnouncementRow>(&sql)
            .bind(coop_id)
            .bind(for_family.is_none())
            .bind(for_family.unwrap_or_default())
            .fetch_all(&mut *conn)
            .await
    })
}

#[derive(sqlx::FromRow)]
struct Recipient {
    id: Uuid,
    email: String,
}

/// One batch of the fan-out (see the module comment). Returns how many
/// recipients it found; fewer than `batch` means the fan-out is complete.
pub async fn fan_out_batch(
    db: &Db,
    announcement_id: Uuid,
    after: Option<Uuid>,
    batch: u32,
    email_job: &(dyn Fn(Uuid, Uuid) -> NewJob + Sync),
    next_batch: &(dyn Fn(Uuid, Uuid) -> NewJob + Sync),
) -> Result<usize, sqlx::Error> {
    let at_ms = coop_domain::clock::now_ms();
    with_write_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let found: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
            "SELECT coop_id, class_id FROM announcements WHERE id = $1",
        )
        .bind(announcement_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((coop_id, class_id)) = found else {
            return Ok(0);
        };
        let recipients: Vec<Recipient> = match class_id {
            None => sqlx::query_as(
                "SELECT id, email FROM families WHERE coop_id = $1 AND ($2 OR id > $3) ORDER BY id LIMIT $4",
            )
            .bind(coop_id)
            .bind(after.is_none())
            .bind(after.unwrap_or_default())
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?,
            Some(class_id) => sqlx::query_as(
                "SELECT DISTINCT f.id, f.email FROM enrollments e JOIN families f ON f.id = e.family_id \
                 WHERE e.coop_id = $1 AND e.class_id = $2 AND e.state = 'enrolled' AND ($3 OR f.id > $4) \
                 ORDER BY f.id LIMIT $5",
            )
            .bind(coop_id)
            .bind(class_id)
            .bind(after.is_none())
            .bind(after.unwrap_or_default())
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?,
        };
        for r in &recipients {
            sqlx::query(
                "INSERT INTO announcement_deliveries (announcement_id, family_id, coop_id, email, state, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (announcement_id, family_id) DO NOTHING",
            )
            .bind(announcement_id)
            .bind(r.id)
            .bind(coop_id)
            .bind(&r.email)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            let job = email_job(coop_id, r.id);
            crate::enqueue_job!(tx, &job)?;
        }
        match recipients.last() {
            Some(last) if recipients.len() == batch as usize => {
                let job = next_batch(coop_id, last.id);
                crate::enqueue_job!(tx, &job)?;
            }
            _ => {
                sqlx::query(
                    "UPDATE announcements SET recipients = \
                     (SELECT COUNT(*) FROM announcement_deliveries WHERE announcement_id = $1) WHERE id = $1",
                )
                .bind(announcement_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(recipients.len())
    })
}

/// What an announcement email needs.
#[derive(Debug, sqlx::FromRow)]
pub struct Delivery {
    pub subject: String,
    pub body: String,
    pub email: String,
    pub family_name: String,
    pub coop_name: String,
    pub state: String,
}

pub async fn delivery(
    db: &Db,
    announcement_id: Uuid,
    family_id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, Delivery>(
            "SELECT a.subject, a.body, d.email, COALESCE(f.family_name, '') AS family_name, c.name AS coop_name, d.state \
             FROM announcement_deliveries d JOIN announcements a ON a.id = d.announcement_id \
             JOIN coops c ON c.id = a.coop_id LEFT JOIN families f ON f.id = d.family_id \
             WHERE d.announcement_id = $1 AND d.family_id = $2",
        )
        .bind(announcement_id)
        .bind(family_id)
        .fetch_optional(&mut *conn)
        .await
    })
}

/// Marks a delivery `sent` or `failed`.
pub async fn mark(
    db: &Db,
    announcement_id: Uuid,
    family_id: Uuid,
    sent: bool,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query(
            "UPDATE announcement_deliveries SET state = $3, updated_at = $4 WHERE announcement_id = $1 AND family_id = $2",
        )
        .bind(announcement_id)
        .bind(family_id)
        .bind(if sent { "sent" } else { "failed" })
        .bind(coop_domain::clock::now_ms())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}
