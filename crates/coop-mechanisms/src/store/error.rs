//! A classified store error: callers decide on the class, never on driver
//! error codes.

/// What went wrong with a database (or the cache in front of it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server could not be reached, refused new work (too many
    /// connections, SQLite busy) or timed out: retry later (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write: the caller names the conflict.
    #[error("a unique constraint refused the write: {0}")]
    UniqueViolation(#[source] sqlx::Error),
    /// Anything else: a bug or a corrupted row (500, logged).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_outage(&err) {
            Self::Unavailable(err)
        } else if super::is_unique_violation(&err) {
            Self::UniqueViolation(err)
        } else {
            Self::Other(err.into())
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        Self::Other(err.into())
    }
}

/// Errors that mean "the database could not be reached or is overloaded", as
/// opposed to a bug in a query.
fn is_outage(err: &sqlx::Error) -> bool {
    // SQLite "database is busy/locked" and PostgreSQL "too many connections"
    // are transient too: retry later.
    super::is_connection_error(err)
        || err.as_database_error().is_some_and(|db| {
            let code = db.code();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.and_then(|c| c.parse().ok()).is_some_and(sqlite_busy)
            } else {
                code.as_deref() == Some("53300")
            }
        })
}

/// SQLite reports extended result codes (517 is SQLITE_BUSY_SNAPSHOT, 261
/// SQLITE_BUSY_RECOVERY, 262 SQLITE_LOCKED_SHAREDCACHE); the low byte is the
/// primary code, BUSY (5) or LOCKED (6) for all of them.
fn sqlite_busy(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
}

/// `result.on_unique(|| conflict)`: turns a unique-constraint violation into
/// the caller's own error in one line, and every other error into its
/// classified form.
pub trait OnUnique<T> {
    fn on_unique<E: From<StoreError>>(self, conflict: impl FnOnce() -> E) -> Result<T, E>;
}

impl<T> OnUnique<T> for Result<T, sqlx::Error> {
    fn on_unique<E: From<StoreError>>(self, conflict: impl FnOnce() -> E) -> Result<T, E> {
        self.map_err(StoreError::from).on_unique(conflict)
    }
}

impl<T> OnUnique<T> for Result<T, StoreError> {
    fn on_unique<E: From<StoreError>>(self, conflict: impl FnOnce() -> E) -> Result<T, E> {
        match self {
            Err(StoreError::UniqueViolation(_)) => Err(conflict()),
            Err(other) => Err(other.into()),
            Ok(value) => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_busy;

    #[test]
    fn extended_sqlite_busy_codes_are_outages_and_constraints_are_not() {
        for busy in [5, 6, 261, 262, 517, 773] {
            assert!(sqlite_busy(busy), "{busy}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT (19).
        for other in [19, 2067, 1, 11] {
            assert!(!sqlite_busy(other), "{other}");
        }
    }
}
