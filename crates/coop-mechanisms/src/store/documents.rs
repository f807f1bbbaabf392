//! The `documents` rows: a document's metadata and where its bytes are
//! (`object_key` in the object store, see `crate::objects`).
//!
//! A row is inserted only after its object is complete, so a row always has
//! its object; deleting a row queues the job that deletes the object in the
//! same commit, so an object never outlives its row for long.

use uuid::Uuid;

use super::Db;
use super::jobs::NewJob;
use crate::with_conn;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub owner_id: Uuid,
    /// `coop`, `class` or `family`.
    pub visibility: String,
    pub class_id: Option<Uuid>,
    pub family_id: Option<Uuid>,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub object_key: String,
    pub thumbnail_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "d.id, d.coop_id, d.owner_id, d.visibility, d.class_id, d.family_id, d.name, \
     d.content_type, d.size_bytes, d.sha256, d.object_key, d.thumbnail_key, d.created_at, d.updated_at";

/// Who is looking: coordinators see everything of their co-op; anyone else
/// what is addressed to the co-op, to their family, or to a class they
/// teach or have a child enrolled in (enrolled now: a dropped or
/// waitlisted child's family does not).
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    Coordinator,
    Member {
        user_id: Uuid,
        family_id: Option<Uuid>,
    },
}

/// The visibility rule for a [`Viewer::Member`]: `$2` their family (may be
/// NULL), `$3` their user id.
const MEMBER_SEES: &str = "(d.visibility = 'coop' \
     OR (d.visibility = 'family' AND d.family_id = $2) \
     OR (d.visibility = 'class' AND ( \
          EXISTS (SELECT 1 FROM classes c WHERE c.id = d.class_id AND c.coop_id = d.coop_id \
                  AND c.teacher_user_id = $3) \
          OR EXISTS (SELECT 1 FROM enrollments e WHERE e.class_id = d.class_id \
                  AND e.coop_id = d.coop_id AND e.family_id = $2 AND e.state = 'enrolled'))))";

fn viewer_binds(viewer: Viewer) -> (Option<Uuid>, Option<Uuid>, &'static str) {
    match viewer {
        Viewer::Coordinator => (None, None, "TRUE"),
        Viewer::Member { user_id, family_id } => (family_id, Some(user_id), MEMBER_SEES),
    }
}

/// The co-op's documents `viewer` may see, newest first (at most `limit`).
pub async fn list(
    db: &Db,
    coop_id: Uuid,
    viewer: Viewer,
    limit: u32,
) -> Result<Vec<DocumentRow>, sqlx::Error> {
    let (family, user, rule) = viewer_binds(viewer);
    let sql = format!(
        "SELECT {COLUMNS} FROM documents d WHERE d.coop_id = $1 AND ($4 OR {rule}) \
         ORDER BY d.created_at DESC, d.id DESC LIMIT $5"
    );
    let everything = matches!(viewer, Viewer::Coordinator);
    with_conn!(db, conn => {
        sqlx::query_as::<_, DocumentRow>(&sql)
            .bind(coop_id)
            .bind(family)
            .bind(user)
            .bind(everything)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
    })
}

/// One document, if `viewer` may see it.
pub async fn get(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    viewer: Viewer,
) -> Result<Option<DocumentRow>, sqlx::Error> {
    let (family, user, rule) = viewer_binds(viewer);
    let sql = format!(
        "SELECT {COLUMNS} FROM documents d WHERE d.coop_id = $1 AND d.id = $5 AND ($4 OR {rule})"
    );
    let everything = matches!(viewer, Viewer::Coordinator);
    with_conn!(db, conn => {
        sqlx::query_as::<_, DocumentRow>(&sql)
            .bind(coop_id)
            .bind(family)
            .bind(user)
            .bind(everything)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// Whether a document with this id exists (any co-op): the sweep's question.
pub async fn exists(db: &Db, id: Uuid) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.is_some())
    })
}

/// Bytes the co-op's documents take.
pub async fn used_bytes(db: &Db, coop_id: Uuid) -> Result<i64, sqlx::Error> {
    with_conn!(db, conn => {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM documents WHERE coop_id = $1",
        )
        .bind(coop_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok(used.unwrap_or(0))
    })
}

/// Whether `user_id` teaches the class.
pub async fn teaches(
    db: &Db,
    coop_id: Uuid,
    class_id: Uuid,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM classes WHERE coop_id = $1 AND id = $2 AND teacher_user_id = $3",
        )
        .bind(coop_id)
        .bind(class_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(found.is_some())
    })
}

/// How an insert ended.
pub enum Inserted {
    Done,
    /// The co-op's documents would pass `quota` bytes (others were
    /// uploaded meanwhile): nothing was written. `used` before this one.
    OverQuota {
        used: i64,
    },
}

/// Inserts the row of a stored object with the jobs it causes (its
/// thumbnail), unless the co-op's documents would then take more than
/// `quota` bytes. The check and the insert are one transaction serialised
/// per co-op (PostgreSQL: the co-op's row is locked; SQLite: one writer), so
/// concurrent uploads cannot pass the quota together.
pub async fn insert(
    db: &Db,
    row: &DocumentRow,
    quota: i64,
    jobs: &[NewJob],
) -> Result<Inserted, sqlx::Error> {
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        if matches!(db, Db::Postgres(..)) {
            sqlx::query("SELECT id FROM coops WHERE id = $1 FOR UPDATE")
                .bind(row.coop_id)
                .execute(&mut *tx)
                .await?;
        }
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM documents WHERE coop_id = $1",
        )
        .bind(row.coop_id)
        .fetch_one(&mut *tx)
        .await?;
        let used = used.unwrap_or(0);
        if used.saturating_add(row.size_bytes) > quota {
            return Ok(Inserted::OverQuota { used });
        }
        sqlx::query(
            "INSERT INTO documents (id, coop_id, owner_id, visibility, class_id, family_id, name, \
             content_type, size_bytes, sha256, object_key, thumbnail_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(row.id)
        .bind(row.coop_id)
        .bind(row.owner_id)
        .bind(&row.visibility)
        .bind(row.class_id)
        .bind(row.family_id)
        .bind(&row.name)
        .bind(&row.content_type)
        .bind(row.size_bytes)
        .bind(&row.sha256)
        .bind(&row.object_key)
        .bind(&row.thumbnail_key)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        for job in jobs {
            crate::enqueue_job!(tx, job)?;
        }
        tx.commit().await?;
        Ok(Inserted::Done)
    })
}

/// Queues `job` on its own (an upload's sweep, before its first byte).
pub async fn enqueue(db: &Db, job: &NewJob) -> Result<(), sqlx::Error> {
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        crate::enqueue_job!(tx, job)?;
        tx.commit().await?;
    });
    Ok(())
}

/// Renames a document; false when there is no such row.
pub async fn rename(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    name: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let done = sqlx::query(
            "UPDATE documents SET name = $3, updated_at = $4 WHERE coop_id = $1 AND id = $2",
        )
        .bind(coop_id)
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Deletes the row with the job that deletes its object, together; false
/// when there was no such row.
pub async fn delete(db: &Db, coop_id: Uuid, id: Uuid, job: &NewJob) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        let done = sqlx::query("DELETE FROM documents WHERE coop_id = $1 AND id = $2")
            .bind(coop_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        crate::enqueue_job!(tx, job)?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Records the thumbnail; false when the document is gone (then the
/// caller removes the thumbnail it wrote).
pub async fn set_thumbnail(db: &Db, id: Uuid, key: &str) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let done = sqlx::query("UPDATE documents SET thumbnail_key = $2 WHERE id = $1")
            .bind(id)
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Up to `limit` of the co-op's documents (id and object keys), for its
/// deletion: their objects go first, then these rows ([`remove`]).
pub async fn of_coop(
    db: &Db,
    coop_id: Uuid,
    limit: u32,
) -> Result<Vec<(Uuid, String, Option<String>)>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_as::<_, (Uuid, String, Option<String>)>(
            "SELECT id, object_key, thumbnail_key FROM documents WHERE coop_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(coop_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
    })
}

/// Removes rows whose objects are deleted already.
pub async fn remove(db: &Db, coop_id: Uuid, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    with_conn!(db, conn => {
        let mut tx = sqlx::Connection::begin_with(&mut *conn, super::begin_write(db)).await?;
        for id in ids {
            sqlx::query("DELETE FROM documents WHERE coop_id = $1 AND id = $2")
                .bind(coop_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

/// Documents stored and their bytes, over every co-op (for the metrics).
pub async fn totals(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    with_conn!(db, conn => {
        let (count, bytes): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM documents",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok((count, bytes.unwrap_or(0)))
    })
}
