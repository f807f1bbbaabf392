//! Where a transfer stands, kept in a table on the target: for each table, the
//! key of the last row copied and how many rows that is. It is written in the
//! same transaction as the rows it counts (db::Database::write_batch), so after
//! a crash or Ctrl-C the next run resumes exactly after the last committed
//! batch. A row named [`SOURCE`] remembers which source the copy came from, so
//! a run from another source does not resume someone else's copy. The table
//! is schema::PROGRESS_TABLE.

use super::schema::Table;
use super::value::Value;

/// The progress row that names the source.
pub const SOURCE: &str = "(source)";

/// Portable between the backends (BIGINT is an INTEGER in SQLite).
pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS coop_transfer_progress (
    table_name   TEXT PRIMARY KEY,
    -- JSON array of the last copied row's key values, rendered (value::Value::render).
    last_key     TEXT,
    rows_copied  BIGINT NOT NULL,
    done         BIGINT NOT NULL
)";

pub const UPSERT: &str =
    "INSERT INTO coop_transfer_progress (table_name, last_key, rows_copied, done)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (table_name) DO UPDATE SET
        last_key = excluded.last_key, rows_copied = excluded.rows_copied, done = excluded.done";

pub const LOAD: &str = "SELECT table_name, last_key, rows_copied, done FROM coop_transfer_progress";

#[derive(Clone, Debug, Default)]
pub struct Position {
    pub table: String,
    /// Rendered key of the last row copied; `None` before the first batch.
    pub last_key: Option<String>,
    pub rows_copied: i64,
    pub done: bool,
}

impl Position {
    pub fn start(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            ..Self::default()
        }
    }

    /// The key to read after, as values of the table's key kinds.
    pub fn after(&self, table: &Table) -> anyhow::Result<Option<Vec<Value>>> {
        let Some(text) = &self.last_key else {
            return Ok(None);
        };
        let parts: Vec<String> = serde_json::from_str(text)?;
        anyhow::ensure!(
            parts.len() == table.key.len(),
            "the resume position of {} does not fit its key",
            table.name
        );
        let values = table
            .key
            .iter()
            .zip(&parts)
            .map(|(column, part)| Value::parse(table.kind(column), part))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(values))
    }

    /// Moves past `row` (a full row of `table`).
    pub fn advance(&mut self, table: &Table, row: &[Value], copied: usize) {
        let key: Vec<String> = table
            .key_indexes()
            .into_iter()
            .map(|i| row[i].render().unwrap_or_default())
            .collect();
        self.last_key = serde_json::to_string(&key).ok();
        self.rows_copied += copied as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::schema::TABLES;

    #[test]
    fn a_position_gives_back_the_key_it_was_advanced_past() {
        let table = TABLES
            .iter()
            .find(|t| t.name == "idempotency")
            .expect("idempotency is a known table");
        let mut row: Vec<Value> = table.columns.iter().map(|_| Value::Text(None)).collect();
        row[0] = Value::Text(Some("POST /api/v1/families \"quoted\"".into()));
        row[1] = Value::Text(Some("key-1".into()));
        let mut position = Position::start(table.name);
        assert_eq!(position.after(table).unwrap(), None);
        position.advance(table, &row, 500);
        position.advance(table, &row, 20);
        assert_eq!(position.rows_copied, 520);
        assert_eq!(
            position.after(table).unwrap(),
            Some(vec![row[0].clone(), row[1].clone()])
        );
    }
}
