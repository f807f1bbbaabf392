//! `coop backup --to PATH` and `coop restore --from PATH`: a consistent copy of
//! a Coop's data, taken while it serves, and put back into a fresh place.
//!
//! A backup is a folder:
//! - embedded tier: `coop.sqlite3`, made by SQLite's `VACUUM INTO` (one read
//!   transaction: a consistent snapshot that includes every write committed
//!   before it began, taken beside a running server without stopping it),
//!   and `files/`, the data directory's other files (the outbox of unsent
//!   email);
//! - PostgreSQL: `coop.pgdump`, made by `pg_dump --format=custom` (one
//!   snapshot as well), restored with `pg_restore`;
//! - `manifest.json` in both: which kind it is and when it was taken.
//!
//! It is written under a temporary name and renamed when complete, so a
//! folder with the final name is always a whole backup.

mod postgres;
pub mod schedule;
mod sqlite;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

/// Where the data is: the same settings (and variables) as `coop serve`.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// The embedded tier's data folder (its SQLite file and outbox).
    #[arg(
        long = "data-dir",
        env = "COOP_DATA_DIR",
        default_value = "./coop-data"
    )]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…`. Default: SQLite in the data dir.
    #[arg(
        long = "database-url",
        env = "COOP_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The folder to write the backup to (must not exist yet).
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A folder written by `coop backup`.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// Where to restore: a data dir without a database yet, or an empty
    /// PostgreSQL database.
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// "coop-backup/1".
    pub format: String,
    /// "sqlite" or "postgres".
    pub backend: String,
    /// RFC 3339, when the snapshot began.
    pub taken_at: String,
    pub bytes: u64,
}

const FORMAT: &str = "coop-backup/1";

pub enum Source {
    Sqlite { file: PathBuf, data_dir: PathBuf },
    Postgres { url: String },
}

impl DataArgs {
    pub fn source(&self) -> anyhow::Result<Source> {
        match &self.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Source::Postgres { url: url.clone() })
            }
            Some(url) if url.starts_with("sqlite:") => Ok(Source::Sqlite {
                file: sqlite::file_of(url)?,
                data_dir: self.data_dir.clone(),
            }),
            Some(other) => anyhow::bail!(
                "COOP_DATABASE_URL expects sqlite://PATH or postgres://USER@HOST:PORT/DB, got {}",
                coop_runtime::values::redact_url(other)
            ),
            None => Ok(Source::Sqlite {
                file: self.data_dir.join("coop.sqlite3"),
                data_dir: self.data_dir.clone(),
            }),
        }
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let manifest = write_backup(&args.data.source()?, &args.to).await?;
    println!(
        "backup of the {} database taken at {} written to {} ({} bytes, {:.1} s)",
        manifest.backend,
        manifest.taken_at,
        args.to.display(),
        manifest.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes a backup of `source` to the folder `to`; used by `coop backup` and
/// by the embedded tier's daily backups.
pub async fn write_backup(source: &Source, to: &Path) -> anyhow::Result<Manifest> {
    anyhow::ensure!(
        !to.exists(),
        "{} already exists: back up to a new folder",
        to.display()
    );
    let partial = partial_name(to);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing an unfinished backup at {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("could not create {}", partial.display()))?;
    let taken_at = now_rfc3339();
    let (backend, bytes) = match source {
        Source::Sqlite { file, data_dir } => {
            ("sqlite", sqlite::backup(file, data_dir, &partial).await?)
        }
        Source::Postgres { url } => ("postgres", postgres::backup(url, &partial).await?),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        backend: backend.into(),
        taken_at,
        bytes,
    };
    std::fs::write(
        partial.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("could not move the backup into place at {}", to.display()))?;
    Ok(manifest)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(args.from.join("manifest.json")).with_context(|| {
            format!(
                "{} is not a Coop backup (no manifest.json)",
                args.from.display()
            )
        })?,
    )
    .context("manifest.json of the backup is not readable")?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "the backup's format is {}, this coop reads {FORMAT}",
        manifest.format
    );
    match (manifest.backend.as_str(), args.data.source()?) {
        ("sqlite", Source::Sqlite { file, data_dir }) => {
            sqlite::restore(&args.from, &file, &data_dir).await?
        }
        ("postgres", Source::Postgres { url }) => postgres::restore(&args.from, &url).await?,
        (backend, _) => anyhow::bail!(
            "this backup is of a {backend} database and restores only into one of the same kind; \
             to move between SQLite and PostgreSQL, restore it, then use `coop transfer`"
        ),
    }
    println!(
        "restored the backup taken at {} from {} ({:.1} s)",
        manifest.taken_at,
        args.from.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn partial_name(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    to.with_file_name(name)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
