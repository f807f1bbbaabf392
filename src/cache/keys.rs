//! Cache keys. Each starts with the co-op id where the value belongs to one, so
//! a key names its tenant (and, later, its shard).

use uuid::Uuid;

use super::l2::PREFIX;

/// Sessions are keyed by the token's hash, never the token itself.
pub fn session(token_hash: &str) -> String {
    format!("{PREFIX}session:{token_hash}")
}

/// The kind of value a key holds (`family`, `session`), for metric labels.
pub fn kind(key: &str) -> &'static str {
    let rest = key.strip_prefix(PREFIX).unwrap_or(key);
    match rest.split(':').next() {
        Some("family") => "family",
        Some("session") => "session",
        _ => "other",
    }
}

pub fn family(coop_id: Uuid, family_id: Uuid) -> String {
    format!("{PREFIX}family:{coop_id}:{family_id}")
}
