//! The embedded tier: `VACUUM INTO` beside the running server, the data
//! directory's other files, and their way back.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use coop_runtime::DataLock;

const DATABASE: &str = "coop.sqlite3";
const FILES: &str = "files";

pub fn file_of(url: &str) -> anyhow::Result<PathBuf> {
    Ok(SqliteConnectOptions::from_str(url)
        .context("COOP_DATABASE_URL is not a valid sqlite:// URL")?
        .get_filename()
        .to_path_buf())
}

/// Returns the bytes written.
pub async fn backup(file: &Path, data_dir: &Path, into: &Path) -> anyhow::Result<u64> {
    anyhow::ensure!(
        file.exists(),
        "there is no SQLite database at {} (COOP_DATA_DIR / COOP_DATABASE_URL)",
        file.display()
    );
    // Read-only: a backup never writes the live database. VACUUM INTO reads
    // one snapshot while the server goes on writing (WAL).
    let mut conn = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("could not open {}", file.display()))?;
    let copy = into.join(DATABASE);
    sqlx::query("VACUUM INTO $1")
        .bind(copy.display().to_string())
        .execute(&mut conn)
        .await
        .with_context(|| format!("VACUUM INTO {}", copy.display()))?;
    drop(conn);
    let mut bytes = std::fs::metadata(&copy)?.len();
    bytes += copy_files(data_dir, &into.join(FILES), &|name| {
        skip_in_data_dir(name, file)
    })?;
    Ok(bytes)
}

/// What a backup does not take from the data dir: the live database (taken
/// by VACUUM INTO), its journal and lock, and earlier backups.
fn skip_in_data_dir(path: &Path, database: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let db = database.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with(db.as_ref()) || name == "backups" || name.ends_with(".partial")
}

pub async fn restore(from: &Path, file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !file.exists(),
        "{} already exists: restore into a fresh data dir (or move that database away first)",
        file.display()
    );
    // Nobody may start serving from the file while it is being put in place.
    let _lock = DataLock::exclusive(file)?;
    let staged = file.with_extension("restoring");
    std::fs::copy(from.join(DATABASE), &staged)
        .with_context(|| format!("copying the database to {}", staged.display()))?;
    let mut conn = SqliteConnectOptions::new()
        .filename(&staged)
        .connect()
        .await?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    drop(conn);
    anyhow::ensure!(
        check == "ok",
        "the backup's database fails SQLite's integrity check: {check}"
    );
    std::fs::rename(&staged, file)?;
    let files = from.join(FILES);
    if files.exists() {
        copy_files(&files, data_dir, &|_| false)?;
    }
    Ok(())
}

/// Copies a folder's tree; returns the bytes copied.
fn copy_files(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> anyhow::Result<u64> {
    let mut bytes = 0;
    std::fs::create_dir_all(to)?;
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if skip(&path) {
            continue;
        }
        let dest = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            bytes += copy_files(&path, &dest, skip)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(&path, &dest)
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(bytes)
}
