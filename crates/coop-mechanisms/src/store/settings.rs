//! The database section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use coop_runtime::values::{parse_duration, redact_url};

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Folder for the embedded tier's data: the SQLite file, outgoing mail when
    /// no SMTP server is set, backups.
    #[arg(
        long = "data-dir",
        env = "COOP_DATA_DIR",
        value_name = "COOP_DATA_DIR",
        default_value = "./coop-data"
    )]
    pub data_dir: PathBuf,

    /// `sqlite://…` or `postgres://…` (the primary). Default: SQLite in the data dir.
    #[arg(long = "database-url", env = "COOP_DATABASE_URL", value_name = "COOP_DATABASE_URL",
          hide_env_values = true, value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,

    /// Streaming replicas to read from, comma-separated `postgres://…` URLs.
    #[arg(long = "replica-urls", env = "COOP_REPLICA_URLS", value_name = "COOP_REPLICA_URLS",
          hide_env_values = true, value_delimiter = ',', value_parser = parse_replica_url)]
    pub replica_urls: Vec<String>,

    /// A replica further behind the primary than this is taken out of the read set.
    #[arg(long = "max-replica-lag", env = "COOP_MAX_REPLICA_LAG", value_name = "COOP_MAX_REPLICA_LAG",
          default_value = "5s", value_parser = parse_duration)]
    pub max_replica_lag: Duration,

    /// Longest a single SQL statement may run (PostgreSQL `statement_timeout`).
    #[arg(long = "db-statement-timeout", env = "COOP_DB_STATEMENT_TIMEOUT",
          value_name = "COOP_DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// Connections in the database pool (per instance and database server;
    /// SQLite: at most 8).
    #[arg(long = "db-pool-size", env = "COOP_DB_POOL_SIZE", value_name = "COOP_DB_POOL_SIZE",
          default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// How long a request waits for a pooled connection before answering 503.
    #[arg(long = "db-acquire-timeout", env = "COOP_DB_ACQUIRE_TIMEOUT",
          value_name = "COOP_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
}

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

/// URLs may carry passwords: `Debug` shows them redacted.
impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(url) => write!(f, "Sqlite({url:?})"),
            Self::Postgres(url) => write!(f, "Postgres({:?})", redact_url(url)),
        }
    }
}

impl DatabaseSettings {
    /// The database to use: the configured URL, or the embedded SQLite file.
    pub fn database(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| {
            DatabaseUrl::Sqlite(format!(
                "sqlite://{}",
                self.data_dir.join("coop.sqlite3").display()
            ))
        })
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.database(), DatabaseUrl::Sqlite(_))
    }

    /// The SQLite database file, on the embedded tier.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self.database() {
            DatabaseUrl::Sqlite(url) => {
                use std::str::FromStr;
                sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                    .ok()
                    .map(|options| options.get_filename().to_path_buf())
            }
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// On the embedded tier, the lock every process using the SQLite file
    /// holds so that `coop transfer` never copies it while it changes (see
    /// `coop_runtime::data_lock`). `None` on PostgreSQL.
    pub fn hold_data_lock(&self) -> anyhow::Result<Option<coop_runtime::DataLock>> {
        self.sqlite_file()
            .map(|file| coop_runtime::DataLock::serving(&file))
            .transpose()
    }
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    if value.starts_with("sqlite:") {
        Ok(DatabaseUrl::Sqlite(value.to_owned()))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(value.to_owned()))
    } else {
        Err(format!(
            "COOP_DATABASE_URL expects sqlite://PATH or postgres://USER@HOST:PORT/DB, got {:?}",
            redact_url(value)
        ))
    }
}

fn parse_replica_url(value: &str) -> Result<String, String> {
    match parse_database_url(value.trim()) {
        Ok(DatabaseUrl::Postgres(url)) => Ok(url),
        _ => Err(format!(
            "COOP_REPLICA_URLS expects comma-separated postgres://USER@HOST:PORT/DB URLs, got {:?}",
            redact_url(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_must_name_a_known_backend() {
        assert!(matches!(
            parse_database_url("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            parse_database_url("sqlite://x.db"),
            Ok(DatabaseUrl::Sqlite(_))
        ));
        let err = parse_database_url("mysql://root:hunter2@h/db").unwrap_err();
        assert!(err.contains("COOP_DATABASE_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
