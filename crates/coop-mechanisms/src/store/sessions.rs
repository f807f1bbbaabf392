//! Session records (read through the cache by `session::SessionStore`).

use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};
use coop_domain::clock::now_s as unix_now;

pub async fn put(
    db: &Db,
    token_hash: &str,
    user_id: Uuid,
    data: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str =
        "INSERT INTO sessions (token_hash, user_id, data, expires_at) VALUES ($1, $2, $3, $4)";
    with_write_conn!(db, conn => {
        // Expired rows are swept as new ones arrive, so the table stays small
        // without a separate janitor.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(unix_now())
            .execute(&mut *conn)
            .await?;
        sqlx::query(SQL)
            .bind(token_hash)
            .bind(user_id)
            .bind(data)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

pub async fn get(db: &Db, token_hash: &str) -> Result<Option<String>, sqlx::Error> {
    const SQL: &str = "SELECT data FROM sessions WHERE token_hash = $1 AND expires_at >= $2";
    with_conn!(db, conn => {
        sqlx::query_scalar::<_, String>(SQL)
            .bind(token_hash)
            .bind(unix_now())
            .fetch_optional(&mut *conn)
            .await
    })
}

/// Rewrites a live session's record and expiry (its idle deadline moved).
pub async fn touch(
    db: &Db,
    token_hash: &str,
    data: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query("UPDATE sessions SET data = $2, expires_at = $3 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(data)
            .bind(expires_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

pub async fn delete(db: &Db, token_hash: &str) -> Result<(), sqlx::Error> {
    with_write_conn!(db, conn => {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Deletes every session of the user but `keep` (a token hash), and returns
/// the hashes deleted, so their cached copies can be dropped too.
pub async fn delete_for_user(
    db: &Db,
    user_id: Uuid,
    keep: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    const SQL: &str =
        "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash";
    with_write_conn!(db, conn => {
        sqlx::query_scalar::<_, String>(SQL)
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .fetch_all(&mut *conn)
            .await
    })
}
