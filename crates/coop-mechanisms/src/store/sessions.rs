//! Session records (read through the cache by `session::SessionStore`).

use super::Db;
use crate::with_conn;
use coop_domain::clock::now_s as unix_now;

pub async fn put(
    db: &Db,
    token_hash: &str,
    data: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    const SQL: &str = "INSERT INTO sessions (token_hash, data, expires_at) VALUES ($1, $2, $3)";
    with_conn!(db, conn => {
        // Expired rows are swept as new ones arrive, so the table stays small
        // without a separate janitor.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(unix_now())
            .execute(&mut *conn)
            .await?;
        sqlx::query(SQL)
            .bind(token_hash)
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

pub async fn delete(db: &Db, token_hash: &str) -> Result<(), sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}
