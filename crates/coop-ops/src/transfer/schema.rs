//! Every table `coop transfer` knows, each column with the kind of value it
//! holds, and the check that the live databases have exactly these.
//!
//! The two schemas differ in types (migrations/sqlite keeps UUIDs as 16-byte
//! BLOBs, TIMESTAMPTZ as RFC 3339 text and DATE as `YYYY-MM-DD` text), so a
//! column cannot be copied as "whatever the driver returns": each is decoded
//! as its [`Kind`] on one side and bound as the same kind on the other, where
//! sqlx writes the form that backend's Coop code writes. JSON values
//! (`semesters.holidays`, `classes.meetings`, `jobs.payload`, …) are TEXT on
//! both sides and are copied verbatim. There are no boolean columns.
//!
//! A table or a column added by a later migration and not listed here stops
//! the transfer before it copies anything ([`check`]): copying "the tables we
//! know" would silently leave the new data behind.

/// How a column's values are read and written on both backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL UUID; SQLite BLOB (16 bytes).
    Uuid,
    Text,
    /// PostgreSQL INTEGER; SQLite INTEGER.
    I32,
    /// PostgreSQL BIGINT; SQLite INTEGER.
    I64,
    /// PostgreSQL BYTEA; SQLite BLOB.
    Bytes,
    /// PostgreSQL DATE; SQLite TEXT `YYYY-MM-DD`.
    Date,
    /// PostgreSQL TIMESTAMPTZ; SQLite TEXT (RFC 3339).
    Timestamp,
}

use Kind::*;

pub struct Table {
    pub name: &'static str,
    /// The primary key: rows are copied in its order, and the resume position
    /// is the last key copied.
    pub key: &'static [&'static str],
    pub columns: &'static [(&'static str, Kind)],
    /// Not copied (sessions: people sign in again); listed so that the check
    /// knows the table.
    pub copied: bool,
}

impl Table {
    pub fn kind(&self, column: &str) -> Kind {
        self.columns
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, kind)| *kind)
            .unwrap_or(Text)
    }

    /// Indexes of the key columns in `columns`.
    pub fn key_indexes(&self) -> Vec<usize> {
        self.key
            .iter()
            .map(|k| {
                self.columns
                    .iter()
                    .position(|(name, _)| name == k)
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Where the transfer keeps its resume positions on the target (progress.rs).
pub const PROGRESS_TABLE: &str = "coop_transfer_progress";

/// Tables the transfer itself keeps on the target, and sqlx's own.
pub const BOOKKEEPING: &[&str] = &["_sqlx_migrations", PROGRESS_TABLE];

/// In copy order: a table comes after every table its foreign keys name.
pub const TABLES: &[Table] = &[
    Table {
        name: "coops",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("name", Text),
            ("created_at", Timestamp),
            ("verified_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "users",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("email", Text),
            ("name", Text),
            ("password_hash", Text),
            ("role", Text),
            ("family_id", Uuid),
            ("created_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "families",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_name", Text),
            ("email", Text),
            ("enrollment_date", Date),
            ("version", I64),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "semesters",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("name", Text),
            ("starts_on", Date),
            ("ends_on", Date),
            ("registration_opens_at", Timestamp),
            ("registration_closes_at", Timestamp),
            ("holidays", Text),
            ("version", I64),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "classes",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("semester_id", Uuid),
            ("title", Text),
            ("description", Text),
            ("teacher_user_id", Uuid),
            ("capacity", I32),
            ("seats_taken", I32),
            ("waitlist_length", I32),
            ("waitlist_next", I64),
            ("fee_cents", I64),
            ("currency", Text),
            ("min_age", I32),
            ("max_age", I32),
            ("min_grade", I32),
            ("max_grade", I32),
            ("meetings", Text),
            ("version", I64),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "children",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("first_name", Text),
            ("birth_date", Date),
            ("grade", I32),
            ("version", I64),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "enrollments",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("class_id", Uuid),
            ("child_id", Uuid),
            ("family_id", Uuid),
            ("state", Text),
            ("ticket", I64),
            ("created_at", Timestamp),
            ("updated_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "ledger",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("enrollment_id", Uuid),
            ("kind", Text),
            ("amount_cents", I64),
            ("currency", Text),
            ("description", Text),
            ("created_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "payments",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("amount_cents", I64),
            ("currency", Text),
            ("description", Text),
            ("state", Text),
            ("provider_charge_id", Text),
            ("failure_reason", Text),
            ("created_at", I64),
            ("updated_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "refunds",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("payment_id", Uuid),
            ("amount_cents", I64),
            ("currency", Text),
            ("state", Text),
            ("provider_refund_id", Text),
            ("failure_reason", Text),
            ("created_at", I64),
            ("updated_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "announcements",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("class_id", Uuid),
            ("subject", Text),
            ("body", Text),
            ("author_id", Uuid),
            ("recipients", I32),
            ("created_at", Timestamp),
        ],
        copied: true,
    },
    Table {
        name: "announcement_deliveries",
        key: &["announcement_id", "family_id"],
        columns: &[
            ("announcement_id", Uuid),
            ("family_id", Uuid),
            ("coop_id", Uuid),
            ("email", Text),
            ("state", Text),
            ("updated_at", I64),
        ],
        copied: true,
    },
    // Every job, not only the pending ones: done and dead jobs are what the
    // coordinators' job list shows, and `jobs.key` must stay unique across
    // the move so a rerun finds its effect already recorded.
    Table {
        name: "jobs",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("kind", Text),
            ("key", Text),
            ("payload", Text),
            ("state", Text),
            ("attempts", I32),
            ("max_attempts", I32),
            ("run_at", I64),
            ("claim", Uuid),
            ("lease_until", I64),
            ("last_error", Text),
            ("created_at", I64),
            ("updated_at", I64),
            ("trace_id", Text),
        ],
        copied: true,
    },
    // A co-op's exports, archives included (migration 0007): a download
    // link emailed before the move still works after it.
    Table {
        name: "coop_exports",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("requested_by", Uuid),
            ("state", Text),
            ("archive", Bytes),
            ("archive_bytes", I64),
            ("created_at", I64),
            ("ready_at", I64),
            ("expires_at", I64),
        ],
        copied: true,
    },
    // Documents (migration 0009): the rows only. Their bytes are objects,
    // not rows: on the embedded tier files under COOP_DATA_DIR/objects/,
    // named by `object_key` (and `coop backup` copies them with the data
    // dir's other files). Moving to the distributed tier, copy that folder
    // into the bucket with the same keys (e.g. `aws s3 sync
    // coop-data/objects s3://BUCKET/`); the README says so.
    Table {
        name: "documents",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("owner_id", Uuid),
            ("visibility", Text),
            ("class_id", Uuid),
            ("family_id", Uuid),
            ("name", Text),
            ("content_type", Text),
            ("size_bytes", I64),
            ("sha256", Text),
            ("object_key", Text),
            ("thumbnail_key", Text),
            ("created_at", I64),
            ("updated_at", I64),
        ],
        copied: true,
    },
    // Scheduled deletions (migration 0007): the grace period goes on after the move.
    Table {
        name: "coop_deletions",
        key: &["coop_id"],
        columns: &[
            ("coop_id", Uuid),
            ("requested_by", Uuid),
            ("requested_at", I64),
            ("deletes_at", I64),
            ("started_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "job_effects",
        key: &["key"],
        columns: &[("key", Text), ("done_at", I64)],
        copied: true,
    },
    Table {
        name: "invites",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("expires_at", I64),
            ("used_at", I64),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "calendar_events",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("coop_id", Uuid),
            ("family_id", Uuid),
            ("key", Text),
            ("summary", Text),
            ("description", Text),
            ("starts_on", Date),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "calendar_feeds",
        key: &["family_id"],
        columns: &[
            ("family_id", Uuid),
            ("coop_id", Uuid),
            ("token_hash", Text),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "password_resets",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("user_id", Uuid),
            ("expires_at", I64),
            ("used_at", I64),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "signup_verifications",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("coop_id", Uuid),
            ("user_id", Uuid),
            ("expires_at", I64),
            ("used_at", I64),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "email_changes",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("user_id", Uuid),
            ("new_email", Text),
            ("expires_at", I64),
            ("used_at", I64),
            ("created_at", I64),
        ],
        copied: true,
    },
    // Replayed answers to Idempotency-Key retries (24 hours): copied, so a
    // client that retries across the move still gets its first answer back
    // instead of a duplicate.
    Table {
        name: "idempotency",
        key: &["scope", "key"],
        columns: &[
            ("scope", Text),
            ("key", Text),
            ("request_hash", Text),
            ("status", I32),
            ("headers", Text),
            ("body", Bytes),
            ("created_at", I64),
            ("owner", Uuid),
            ("lease_until", I64),
            ("resource", Text),
        ],
        copied: true,
    },
    // Left behind: a session is a sign-in, and signing in again is cheap.
    Table {
        name: "sessions",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("data", Text),
            ("expires_at", I64),
            ("user_id", Uuid),
        ],
        copied: false,
    },
    // Platform operators and their set-password links (migration 0008).
    Table {
        name: "operators",
        key: &["id"],
        columns: &[
            ("id", Uuid),
            ("email", Text),
            ("password_hash", Text),
            ("created_at", I64),
        ],
        copied: true,
    },
    Table {
        name: "operator_password_links",
        key: &["token_hash"],
        columns: &[
            ("token_hash", Text),
            ("operator_id", Uuid),
            ("expires_at", I64),
            ("used_at", I64),
            ("created_at", I64),
        ],
        copied: true,
    },
];

/// What one database has: table name → column names.
pub type Live = std::collections::BTreeMap<String, Vec<String>>;

/// Refuses a database whose tables or columns are not exactly the known ones:
/// names every table and column the transfer would otherwise skip.
pub fn check(side: &str, live: &Live) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (table, columns) in live {
        if BOOKKEEPING.contains(&table.as_str()) {
            continue;
        }
        let Some(known) = TABLES.iter().find(|t| t.name == table) else {
            problems.push(format!("table {table} is not known to coop transfer"));
            continue;
        };
        for column in columns {
            if !known.columns.iter().any(|(name, _)| name == column) {
                problems.push(format!(
                    "column {table}.{column} is not known to coop transfer"
                ));
            }
        }
        for (name, _) in known.columns {
            if !columns.iter().any(|c| c == name) {
                problems.push(format!("column {table}.{name} is missing"));
            }
        }
    }
    for known in TABLES {
        if !live.contains_key(known.name) {
            problems.push(format!("table {} is missing", known.name));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the {side} database does not have the tables this coop transfer knows, so it would \
         not copy everything: {}. A migration added data that crates/coop-ops/src/transfer/schema.rs \
         must learn to copy (or the database was made by another version of Coop); nothing was copied",
        problems.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Live {
        TABLES
            .iter()
            .map(|t| {
                let columns = t.columns.iter().map(|(c, _)| c.to_string()).collect();
                (t.name.to_string(), columns)
            })
            .collect()
    }

    #[test]
    fn every_key_column_is_a_column() {
        for table in TABLES {
            for key in table.key {
                assert!(
                    table.columns.iter().any(|(c, _)| c == key),
                    "{}.{key}",
                    table.name
                );
            }
        }
    }

    #[test]
    fn an_unknown_table_or_column_stops_the_transfer() {
        assert!(check("source", &known()).is_ok());
        let mut live = known();
        live.insert("later_feature".into(), vec!["id".into()]);
        let err = check("source", &live).unwrap_err().to_string();
        assert!(err.contains("table later_feature is not known"), "{err}");
        let mut live = known();
        live.get_mut("families").unwrap().push("nickname".into());
        let err = check("target", &live).unwrap_err().to_string();
        assert!(err.contains("families.nickname"), "{err}");
    }
}
