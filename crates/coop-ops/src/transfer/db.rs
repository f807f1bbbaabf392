//! One end of a transfer: a SQLite file or a PostgreSQL database, opened for
//! reading (the source: read-only, and only while no Coop uses it) or for
//! writing (the target), with the few statements a transfer needs written once
//! for both backends.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use coop_runtime::DataLock;
use coop_runtime::values::redact_url;

use super::progress::{self, Position};
use super::schema::{Kind, Live, Table};
use super::value::Value;

/// The application name a transfer's PostgreSQL connections carry, and the one
/// Coop's own pools carry (store::postgres_options): how a transfer sees
/// whether a Coop is connected.
const APPLICATION_NAME: &str = "coop-transfer";
const COOP_APPLICATION_NAME: &str = "coop";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct Database {
    pub pool: Pool,
    /// The URL without its password, for messages.
    pub shown: String,
    /// SQLite: held for the whole transfer (see coop_runtime::data_lock).
    _lock: Option<DataLock>,
}

/// Runs `$body` once per backend with `$pool` bound to the pool.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            Pool::Postgres($pool) => $body,
            Pool::Sqlite($pool) => $body,
        }
    };
}

/// Decodes a row into values of the table's kinds.
macro_rules! decode_row {
    ($row:expr, $table:expr) => {{
        let row = $row;
        let mut values = Vec::with_capacity($table.columns.len());
        for (i, (_, kind)) in $table.columns.iter().enumerate() {
            values.push(match kind {
                Kind::Uuid => Value::Uuid(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
                Kind::I32 => Value::I32(row.try_get(i)?),
                Kind::I64 => Value::I64(row.try_get(i)?),
                Kind::Bytes => Value::Bytes(row.try_get(i)?),
                Kind::Date => Value::Date(row.try_get(i)?),
                Kind::Timestamp => Value::Timestamp(row.try_get(i)?),
            });
        }
        values
    }};
}

/// Binds one value with its own type (a NULL keeps its column's type, which
/// PostgreSQL needs to accept it).
macro_rules! bind_value {
    ($query:expr, $value:expr) => {
        match $value {
            Value::Uuid(v) => $query.bind(*v),
            Value::Text(v) => $query.bind(v.clone()),
            Value::I32(v) => $query.bind(*v),
            Value::I64(v) => $query.bind(*v),
            Value::Bytes(v) => $query.bind(v.clone()),
            Value::Date(v) => $query.bind(*v),
            Value::Timestamp(v) => $query.bind(*v),
        }
    };
}

impl Database {
    pub async fn open(url: &str, role: Role) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        if url.starts_with("sqlite:") {
            Self::open_sqlite(url, role, shown).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, role, shown).await
        } else {
            anyhow::bail!(
                "the {} must be sqlite://PATH or postgres://USER@HOST:PORT/DB, got {shown}",
                role.as_str()
            )
        }
    }

    async fn open_sqlite(url: &str, role: Role, shown: String) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("{shown} is not a valid sqlite:// URL"))?;
        let file: PathBuf = options.get_filename().to_path_buf();
        if role == Role::Source && !file.exists() {
            anyhow::bail!(
                "there is no SQLite database at {} (the source)",
                file.display()
            );
        }
        // Before opening: a server that starts now must find the lock taken.
        let lock = DataLock::exclusive(&file)?;
        let options = match role {
            // Read-only: the source is never written, not even by accident.
            Role::Source => options.read_only(true),
            Role::Target => options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true),
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.busy_timeout(std::time::Duration::from_secs(5)))
            .await
            .with_context(|| format!("could not open the SQLite database {shown}"))?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            shown,
            _lock: Some(lock),
        })
    }

    async fn open_postgres(url: &str, role: Role, shown: String) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("{shown} is not a valid PostgreSQL URL"))?
            .application_name(APPLICATION_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .with_context(|| {
                format!(
                    "could not connect to PostgreSQL at {shown} (the {})",
                    role.as_str()
                )
            })?;
        let db = Self {
            pool: Pool::Postgres(pool),
            shown,
            _lock: None,
        };
        db.refuse_if_in_use(role).await?;
        Ok(db)
    }

    /// PostgreSQL has no file to lock: a database is in use when a Coop
    /// process (`coop serve`, `coop worker`: their pools are named "coop") or
    /// another transfer is connected to it. Checked at the start; the final
    /// verification would also catch a write made during the copy.
    async fn refuse_if_in_use(&self, role: Role) -> anyhow::Result<()> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(());
        };
        let others: Vec<(String, i64)> = sqlx::query_as(
            "SELECT application_name, count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND application_name IN ($1, $2)
             GROUP BY application_name",
        )
        .bind(COOP_APPLICATION_NAME)
        .bind(APPLICATION_NAME)
        .fetch_all(pool)
        .await?;
        if let Some((name, count)) = others.first() {
            let who = if name == APPLICATION_NAME {
                "another coop transfer".to_owned()
            } else {
                format!("a running Coop ({count} connection(s) of `coop serve` or `coop worker`)")
            };
            anyhow::bail!(
                "the {} {} is in use by {who}: stop it first, so that nothing is written \
                 while it is copied",
                role.as_str(),
                self.shown
            );
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Applies Coop's migrations (the target's, before anything is copied).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => migrator(self.backend()).run(pool).await,
            Pool::Sqlite(pool) => migrator(self.backend()).run(pool).await,
        }
        .with_context(|| format!("applying Coop's migrations to {}", self.shown))
    }

    /// The migration versions applied to this database (none when it has
    /// never been migrated).
    pub async fn applied_migrations(&self) -> anyhow::Result<Vec<i64>> {
        let live = self.live_schema().await?;
        if !live.contains_key("_sqlx_migrations") {
            return Ok(Vec::new());
        }
        let versions: Vec<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(pool)
                .await?
        });
        Ok(versions)
    }

    /// Every table and its columns.
    pub async fn live_schema(&self) -> anyhow::Result<Live> {
        let rows: Vec<(String, String)> = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT c.table_name::text, c.column_name::text
                     FROM information_schema.columns c
                     JOIN information_schema.tables t
                       ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                     WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                     ORDER BY c.table_name, c.ordinal_position",
                )
                .fetch_all(pool)
                .await?
            }
            Pool::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
                     ORDER BY m.name, p.cid",
                )
                .fetch_all(pool)
                .await?
            }
        };
        let mut live = Live::new();
        for (table, column) in rows {
            live.entry(table).or_default().push(column);
        }
        Ok(live)
    }

    pub async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", quote(table));
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar(&sql).fetch_one(pool).await?);
        Ok(n)
    }

    /// Up to `limit` rows after `after` (a key), in key order.
    pub async fn read_batch(
        &self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        let columns = column_list(table);
        let key = table.key.iter().map(|k| quote(k)).collect::<Vec<_>>();
        let placeholders = (1..=key.len()).map(|i| format!("${i}")).collect::<Vec<_>>();
        let filter = match after {
            Some(_) => format!("WHERE ({}) > ({})", key.join(", "), placeholders.join(", ")),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {columns} FROM {} {filter} ORDER BY {} LIMIT {limit}",
            quote(table.name),
            key.join(", ")
        );
        let rows = with_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            for value in after.unwrap_or_default() {
                query = bind_value!(query, value);
            }
            let mut out = Vec::new();
            for row in query.fetch_all(pool).await? {
                out.push(decode_row!(row, table));
            }
            out
        });
        Ok(rows)
    }

    /// Inserts `rows` and records the resume position in one transaction: a
    /// crash leaves either both or neither, so a rerun neither skips nor
    /// doubles a row.
    pub async fn write_batch(
        &self,
        table: &Table,
        rows: &[Vec<Value>],
        position: &Position,
    ) -> anyhow::Result<()> {
        let width = table.columns.len();
        let values = (0..rows.len())
            .map(|r| {
                let row = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(table.name),
            column_list(table),
            values.join(", ")
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if !rows.is_empty() {
                let mut query = sqlx::query(&insert);
                for value in rows.iter().flatten() {
                    query = bind_value!(query, value);
                }
                query.execute(&mut *tx).await.with_context(|| {
                    format!("inserting into {} on the target", table.name)
                })?;
            }
            sqlx::query(progress::UPSERT)
                .bind(&position.table)
                .bind(&position.last_key)
                .bind(position.rows_copied)
                .bind(i64::from(position.done))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The transfer's positions on this (target) database, creating its table.
    pub async fn load_progress(&self) -> anyhow::Result<Vec<Position>> {
        let rows: Vec<(String, Option<String>, i64, i64)> = with_pool!(self, pool => {
            sqlx::query(progress::CREATE).execute(pool).await?;
            sqlx::query_as(progress::LOAD).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(table, last_key, rows_copied, done)| Position {
                table,
                last_key,
                rows_copied,
                done: done != 0,
            })
            .collect())
    }

    /// Records a position outside a batch (the source's name, a table found
    /// empty or finished).
    pub async fn save_progress(&self, position: &Position) -> anyhow::Result<()> {
        with_pool!(self, pool => {
            sqlx::query(progress::UPSERT)
                .bind(&position.table)
                .bind(&position.last_key)
                .bind(position.rows_copied)
                .bind(i64::from(position.done))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

pub fn migrator(backend: &str) -> sqlx::migrate::Migrator {
    if backend == "postgres" {
        sqlx::migrate!("../../migrations/postgres")
    } else {
        sqlx::migrate!("../../migrations/sqlite")
    }
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| quote(name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Identifiers come from schema.rs, never from input; quoted all the same
/// (`key` is a column name).
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}
