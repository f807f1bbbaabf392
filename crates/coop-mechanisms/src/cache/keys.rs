//! Cache keys. A service names its own keys: `CacheKey::new("family",
//! format_args!("{coop_id}:{id}"))`. The kind (`family`, `session`) labels the
//! cache metrics; the rest starts with the co-op id where the value belongs to
//! one, so a key names its tenant (and its shard).

use std::fmt;

use super::l2::PREFIX;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    kind: &'static str,
    text: String,
}

impl CacheKey {
    pub fn new(kind: &'static str, id: impl fmt::Display) -> Self {
        Self {
            kind,
            text: format!("{PREFIX}{kind}:{id}"),
        }
    }

    /// The kind of value the key holds, for metric labels.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The key as stored in Redis and in L1.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
