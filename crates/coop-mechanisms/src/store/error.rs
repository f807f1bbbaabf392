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
        || err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| matches!(code.as_ref(), "5" | "6" | "53300"))
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
