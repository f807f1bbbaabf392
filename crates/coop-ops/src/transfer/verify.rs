//! The final check: every copied table has as many rows on the target as on
//! the source, and the same checksum, computed by the same code over the same
//! canonical rendering on both sides (value::row_hash).

use super::db::Database;
use super::schema::Table;
use super::value::row_hash;

/// Rows read per round trip while summing.
const SCAN_BATCH: usize = 2000;

pub struct Sum {
    pub rows: i64,
    pub checksum: u128,
}

pub struct Check {
    pub table: &'static str,
    pub source: Sum,
    pub target: Sum,
}

impl Check {
    pub fn matches(&self) -> bool {
        self.source.rows == self.target.rows && self.source.checksum == self.target.checksum
    }
}

pub async fn table(
    source: &Database,
    target: &Database,
    table: &'static Table,
) -> anyhow::Result<Check> {
    let (source_sum, target_sum) = tokio::try_join!(sum(source, table), sum(target, table))?;
    Ok(Check {
        table: table.name,
        source: source_sum,
        target: target_sum,
    })
}

/// Reads the whole table in key order and adds up its rows' hashes.
pub async fn sum(db: &Database, table: &Table) -> anyhow::Result<Sum> {
    let keys = table.key_indexes();
    let mut total = Sum {
        rows: 0,
        checksum: 0,
    };
    let mut after: Option<Vec<super::value::Value>> = None;
    loop {
        let rows = db.read_batch(table, after.as_deref(), SCAN_BATCH).await?;
        let Some(last) = rows.last() else {
            return Ok(total);
        };
        for row in &rows {
            total.checksum = total.checksum.wrapping_add(row_hash(row));
        }
        total.rows += rows.len() as i64;
        after = Some(keys.iter().map(|&i| last[i].clone()).collect());
    }
}
