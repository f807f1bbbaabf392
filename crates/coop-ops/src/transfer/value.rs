//! One column value as both backends understand it, and its canonical
//! rendering for the checksums.
//!
//! The checksum of a table is computed the same way on both sides from the
//! decoded values, not from the stored bytes (a UUID is 16 bytes in SQLite and
//! a UUID in PostgreSQL; a time is text in one and TIMESTAMPTZ in the other).
//! Each value renders with its kind's tag and its length, so no two different
//! rows render alike; each row is hashed with SHA-256, and a table's checksum
//! is the sum of its rows' hashes (the first 16 bytes, modulo 2^128): it does
//! not depend on the order rows are read in (collations differ between the
//! backends) and, unlike XOR, counts a doubled row.

use sha2::{Digest, Sha256};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::schema::Kind;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    I32(Option<i32>),
    I64(Option<i64>),
    Bytes(Option<Vec<u8>>),
    Date(Option<Date>),
    Timestamp(Option<OffsetDateTime>),
}

/// To the microsecond: what PostgreSQL keeps, and the precision of Coop's
/// clock (coop_domain::clock::now). A SQLite file can hold finer times that a
/// client sent (a semester's registration window given with nanoseconds):
/// PostgreSQL truncates them when they are written, and the checksums compare
/// what both ends can hold. (Formatting with fewer digits truncates too.)
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

impl Value {
    /// Canonical text, or `None` for NULL.
    pub fn render(&self) -> Option<String> {
        match self {
            Value::Uuid(v) => v.map(|u| u.hyphenated().to_string()),
            Value::Text(v) => v.clone(),
            Value::I32(v) => v.map(|n| n.to_string()),
            Value::I64(v) => v.map(|n| n.to_string()),
            Value::Bytes(v) => v.as_ref().map(|b| hex(b)),
            Value::Date(v) => v.and_then(|d| d.format(DATE).ok()),
            Value::Timestamp(v) => {
                v.and_then(|t| t.to_offset(UtcOffset::UTC).format(TIMESTAMP).ok())
            }
        }
    }

    /// Parses a rendered key value back (resume positions are stored rendered).
    pub fn parse(kind: Kind, text: &str) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Uuid => Value::Uuid(Some(Uuid::parse_str(text)?)),
            Kind::Text => Value::Text(Some(text.to_owned())),
            Kind::I32 => Value::I32(Some(text.parse()?)),
            Kind::I64 => Value::I64(Some(text.parse()?)),
            other => anyhow::bail!("{other:?} cannot be part of a key"),
        })
    }
}

/// The checksum of one row: SHA-256 of its values, each tagged and sized.
pub fn row_hash(row: &[Value]) -> u128 {
    let mut hasher = Sha256::new();
    for value in row {
        match value.render() {
            None => hasher.update(b"N;"),
            Some(text) => {
                hasher.update(format!("V{}:", text.len()).as_bytes());
                hasher.update(text.as_bytes());
                hasher.update(b";");
            }
        }
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_renders_the_same_whatever_its_offset() {
        let utc = time::macros::datetime!(2026-11-29 21:55:56.123456 UTC);
        let paris = utc.to_offset(time::macros::offset!(+1));
        assert_eq!(
            Value::Timestamp(Some(utc)).render(),
            Value::Timestamp(Some(paris)).render()
        );
        assert_eq!(
            Value::Timestamp(Some(utc)).render().unwrap(),
            "2026-11-29T21:55:56.123456Z"
        );
    }

    #[test]
    fn null_empty_and_neighbouring_values_hash_apart() {
        let null = row_hash(&[Value::Text(None), Value::Text(Some("a".into()))]);
        let empty = row_hash(&[
            Value::Text(Some(String::new())),
            Value::Text(Some("a".into())),
        ]);
        let shifted = row_hash(&[
            Value::Text(Some("a".into())),
            Value::Text(Some(String::new())),
        ]);
        assert_ne!(null, empty);
        assert_ne!(empty, shifted);
    }
}
