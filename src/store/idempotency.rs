//! Storage for `Idempotency-Key` records (see `http::idempotency`).

use super::{Db, unix_now};
use crate::with_conn;

/// How long a key is remembered.
pub const RETENTION_SECS: i64 = 24 * 60 * 60;

pub struct StoredResponse {
    pub status: u16,
    /// JSON array of [name, value] pairs.
    pub headers: String,
    pub body: Vec<u8>,
}

pub enum Begin {
    /// The key is new: it is now reserved for this request.
    Proceed,
    /// The same request already completed: answer with its response.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running (or died mid-way).
    InProgress,
}

#[derive(sqlx::FromRow)]
struct Record {
    request_hash: String,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    created_at: i64,
}

/// Reserves `(scope, key)` for a request, or reports what already holds it. The
/// reservation is an INSERT that only one of several concurrent requests can win.
pub async fn begin(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
) -> Result<Begin, sqlx::Error> {
    const RESERVE: &str = "INSERT INTO idempotency (scope, key, request_hash, created_at) \
                           VALUES ($1, $2, $3, $4) ON CONFLICT (scope, key) DO NOTHING";
    const READ: &str = "SELECT request_hash, status, headers, body, created_at \
                        FROM idempotency WHERE scope = $1 AND key = $2";
    const EXPIRE: &str =
        "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND created_at = $3";
    // Two rounds suffice: the second follows the removal of an expired record.
    for _ in 0..2 {
        let now = unix_now();
        let outcome = with_conn!(db, conn => {
            let inserted = sqlx::query(RESERVE)
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if inserted == 1 {
                return Ok(Begin::Proceed);
            }
            let record = sqlx::query_as::<_, Record>(READ)
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
            match record {
                Some(r) if r.created_at < now - RETENTION_SECS => {
                    sqlx::query(EXPIRE)
                        .bind(scope)
                        .bind(key)
                        .bind(r.created_at)
                        .execute(&mut *conn)
                        .await?;
                    None
                }
                Some(r) if r.request_hash != request_hash => Some(Begin::Mismatch),
                Some(Record { status: Some(status), headers, body, .. }) => {
                    Some(Begin::Replay(StoredResponse {
                        status: u16::try_from(status).unwrap_or(200),
                        headers: headers.unwrap_or_else(|| "[]".into()),
                        body: body.unwrap_or_default(),
                    }))
                }
                Some(_) => Some(Begin::InProgress),
                // Removed between our INSERT and SELECT: try to reserve again.
                None => None,
            }
        });
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Ok(Begin::InProgress)
}

pub async fn complete(
    db: &Db,
    scope: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE idempotency SET status = $1, headers = $2, body = $3 \
                       WHERE scope = $4 AND key = $5";
    with_conn!(db, conn => {
        sqlx::query(SQL)
            .bind(i32::from(response.status))
            .bind(&response.headers)
            .bind(&response.body)
            .bind(scope)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Releases a reservation whose request failed on our side, so a retry may run.
pub async fn abandon(db: &Db, scope: &str, key: &str) -> Result<(), sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query("DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Deletes records older than the retention period; run periodically.
pub async fn purge_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let cutoff = unix_now() - RETENTION_SECS;
    Ok(with_conn!(db, conn => {
        sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(cutoff)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    }))
}
