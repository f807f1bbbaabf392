//! The archive of a co-op's export: one zip holding, for every exported
//! table, a CSV file and a JSON file of the same rows, a `manifest.json`
//! (the co-op, when, and how many rows each file holds) and a `README.md`
//! that describes every file and column, made from the same list of tables
//! (`store::exports::TABLES`) as the files themselves.
//!
//! Zip rather than tar.gz: the people who download an export are co-op
//! coordinators, and every desktop system opens a zip with a double click;
//! a tar.gz needs a tool many of them do not have. Deflate keeps CSV small.

use std::io::{Cursor, Write};

use coop_mechanisms::store::exports::{ColumnKind, ExportTable};
use serde_json::{Map, Value, json};
use zip::write::SimpleFileOptions;

/// One table's rows, as `store::exports::read_table` returned them.
pub struct TableRows<'a> {
    pub table: &'a ExportTable,
    pub rows: Vec<Vec<Value>>,
}

/// What the README and manifest say about the export as a whole.
pub struct About<'a> {
    pub coop_id: uuid::Uuid,
    pub coop_name: &'a str,
    /// RFC 3339.
    pub exported_at: &'a str,
    /// How long the co-op's deletion waits, in days, for the README.
    pub deletion_grace_days: u64,
}

/// The zip's bytes.
pub fn build(about: &About<'_>, tables: &[TableRows<'_>]) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("README.md", options)?;
    zip.write_all(readme(about).as_bytes())?;
    let mut counts = Map::new();
    for table in tables {
        zip.start_file(format!("{}.csv", table.table.file), options)?;
        zip.write_all(&csv_of(table)?)?;
        zip.start_file(format!("{}.json", table.table.file), options)?;
        zip.write_all(&serde_json::to_vec_pretty(&json_of(table))?)?;
        counts.insert(table.table.file.to_owned(), json!(table.rows.len()));
    }
    let manifest = json!({
        "coop_id": about.coop_id,
        "coop_name": about.coop_name,
        "exported_at": about.exported_at,
        "rows": counts,
    });
    zip.start_file("manifest.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    Ok(zip.finish()?.into_inner())
}

/// RFC 4180 CSV with a header row; JSON columns as their JSON text, NULL as
/// an empty field.
fn csv_of(table: &TableRows<'_>) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(table.table.columns.iter().map(|c| c.name))?;
    for row in &table.rows {
        out.write_record(row.iter().map(cell_text))?;
    }
    Ok(out.into_inner()?)
}

fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An array of objects, one per row, keyed by column name.
fn json_of(table: &TableRows<'_>) -> Value {
    let rows = table
        .rows
        .iter()
        .map(|row| {
            let object: Map<String, Value> = table
                .table
                .columns
                .iter()
                .zip(row)
                .map(|(column, value)| (column.name.to_owned(), value.clone()))
                .collect();
            Value::Object(object)
        })
        .collect();
    Value::Array(rows)
}

/// A time as the archive and its emails show it: RFC 3339 in UTC, to the second.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn kind_words(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Id => "id (UUID)",
        ColumnKind::Text => "text",
        ColumnKind::Json => "JSON",
        ColumnKind::I32 | ColumnKind::I64 => "whole number",
        ColumnKind::Date => "date (YYYY-MM-DD)",
        ColumnKind::Timestamp | ColumnKind::UnixMs => "time (RFC 3339, UTC)",
    }
}

/// The archive's README: every file and column, what is left out, and how
/// deleting a co-op works.
pub fn readme(about: &About<'_>) -> String {
    let mut text = format!(
        "# Export of {name}\n\n\
         Everything Coop holds about the co-op {name} (id `{id}`), as it was at {at}.\n\n\
         Every table is here twice, with the same rows: as CSV (`name.csv`: UTF-8, comma-separated, \
         RFC 4180 quoting, a header row; an empty field is an empty value) and as JSON \
         (`name.json`: an array with one object per row, keyed by column name; empty values are \
         `null`). `manifest.json` names the co-op, the time of the export and how many rows each \
         file holds. Ids are UUIDs; a column ending in `_id` holds the id of a row in another \
         file, named below. Times are RFC 3339 in UTC; amounts are whole cents.\n\n",
        name = about.coop_name,
        id = about.coop_id,
        at = about.exported_at,
    );
    for table in coop_mechanisms::store::exports::TABLES {
        text.push_str(&format!(
            "## `{file}.csv`, `{file}.json`\n\n{about}\n\n| column | kind | meaning |\n|---|---|---|\n",
            file = table.file,
            about = table.about,
        ));
        for column in table.columns {
            text.push_str(&format!(
                "| `{}` | {} | {} |\n",
                column.name,
                kind_words(column.kind),
                column.about
            ));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "## What is not here\n\n\
         - Passwords: Coop never had them, only their hashes, which are left out too.\n\
         - The secret parts of links (invites, password resets, email confirmations, calendar \
           subscriptions) and sign-in sessions: they are of no use outside Coop.\n\
         - Coop's own machinery: its job queue (emails waiting to be sent, for instance) and its \
           records of repeated requests.\n\
         - The documents' files: `documents.csv` lists each document (name, type, size, \
           SHA-256, who may see it); the files themselves can be large, so download each \
           from Coop while the co-op exists (`/api/v1/documents/ID/content`).\n\n\
         ## Deleting the co-op\n\n\
         A coordinator can ask Coop to delete the co-op (on the co-op's settings, confirming \
         with their password). The co-op's coordinators are emailed, and nothing is deleted \
         for {days} days: the co-op works as before (except that no new invites go out), and \
         any coordinator can cancel. Take an export during those days if you want to keep the \
         data. When they are over, Coop's background jobs delete everything of the co-op, a \
         batch at a time: first the accounts and their sign-ins (from then on nobody of the \
         co-op can sign in), then every family, child, semester, class, enrollment, payment, \
         ledger entry, announcement, document (its file first) and export, then the co-op \
         itself. Nothing of it stays \
         in Coop's database; backups taken before the deletion keep it until they are \
         themselves deleted.\n",
        days = about.deletion_grace_days,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use coop_mechanisms::store::exports::TABLES;
    use std::io::Read;

    fn about() -> About<'static> {
        About {
            coop_id: uuid::Uuid::nil(),
            coop_name: "Riverside",
            exported_at: "2026-11-30T00:00:00Z",
            deletion_grace_days: 30,
        }
    }

    #[test]
    fn the_readme_describes_every_file_and_column() {
        let text = readme(&about());
        for table in TABLES {
            assert!(
                text.contains(&format!("`{}.csv`", table.file)),
                "{}",
                table.file
            );
            for column in table.columns {
                assert!(
                    text.contains(&format!("| `{}` |", column.name)),
                    "{}.{}",
                    table.file,
                    column.name
                );
            }
        }
        assert!(text.contains("30 days"));
    }

    #[test]
    fn the_archive_holds_csv_and_json_of_every_table_with_quoting() {
        let families = TABLES.iter().find(|t| t.file == "families").unwrap();
        let mut row = vec![Value::Null; families.columns.len()];
        row[1] = json!("O'Brien, \"the\" family");
        let bytes = build(
            &about(),
            &[TableRows {
                table: families,
                rows: vec![row],
            }],
        )
        .unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut csv = String::new();
        zip.by_name("families.csv")
            .unwrap()
            .read_to_string(&mut csv)
            .unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[1], "O'Brien, \"the\" family");
        let mut json = String::new();
        zip.by_name("families.json")
            .unwrap()
            .read_to_string(&mut json)
            .unwrap();
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["family_name"], "O'Brien, \"the\" family");
        assert!(parsed[0]["email"].is_null());
        assert!(zip.by_name("README.md").is_ok());
        assert!(zip.by_name("manifest.json").is_ok());
    }
}
