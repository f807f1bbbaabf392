//! PostgreSQL: `pg_dump --format=custom` (one consistent snapshot, taken while
//! Coop serves) and `pg_restore` into an empty database. Both programs come
//! with Debian's postgresql-client; their version must be at least the
//! server's.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use sqlx::Connection;
use tokio::process::Command;

use coop_runtime::values::redact_url;

const DUMP: &str = "coop.pgdump";

pub async fn backup(url: &str, into: &Path) -> anyhow::Result<u64> {
    let file = into.join(DUMP);
    run(
        Command::new("pg_dump")
            .arg("--format=custom")
            .arg("--no-owner")
            .arg("--file")
            .arg(&file)
            .arg("--dbname")
            .arg(url),
        "pg_dump",
        url,
    )
    .await?;
    Ok(std::fs::metadata(&file)?.len())
}

pub async fn restore(from: &Path, url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("could not connect to PostgreSQL at {}", redact_url(url)))?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    anyhow::ensure!(
        tables == 0,
        "{} already has {tables} table(s): restore into an empty database \
         (createdb a new one and point COOP_DATABASE_URL at it)",
        redact_url(url)
    );
    run(
        Command::new("pg_restore")
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg("--exit-on-error")
            .arg("--single-transaction")
            .arg("--dbname")
            .arg(url)
            .arg(from.join(DUMP)),
        "pg_restore",
        url,
    )
    .await
}

async fn run(command: &mut Command, name: &str, url: &str) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().await.map_err(|e| {
        anyhow::anyhow!(
            "could not run {name} ({e}): install PostgreSQL's client programs \
                 (Debian package postgresql-client)"
        )
    })?;
    anyhow::ensure!(
        output.status.success(),
        "{name} failed for {}: {}",
        redact_url(url),
        redact_url(String::from_utf8_lossy(&output.stderr).trim())
    );
    Ok(())
}
