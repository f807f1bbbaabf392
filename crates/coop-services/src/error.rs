//! What a service can answer besides its result. Each face shows these in its
//! own way (a JSON error body, a page in plain words); the messages are
//! written for the person who will read them.

use coop_domain::{FieldErrors, Invalid};
use coop_mechanisms::hashing::HashError;
use coop_mechanisms::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fields missing or invalid; each named with what is wrong.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// Well-formed but not possible as asked (e.g. no payment provider).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("sign in first")]
    Unauthenticated,
    #[error("email or password is incorrect")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or another co-op's (the two are indistinguishable by design).
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        fields: Option<FieldErrors>,
    },
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Larger than a limit allows (a file, a quota); the message has the numbers.
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// Changed since the version the caller read.
    #[error("{0}")]
    VersionMismatch(String),
    /// This request's Idempotency-Key was taken over by a repeat (the request
    /// outlived its lease): the repeat answers for the key.
    #[error("another request with the same Idempotency-Key took over")]
    TakenOver,
    /// A dependency is down or overloaded: retry shortly.
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            fields: None,
        }
    }

    /// A conflict caused by one field's value.
    pub fn field_conflict(
        code: &'static str,
        message: impl Into<String>,
        field: &str,
        problem: impl Into<String>,
    ) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(field.to_owned(), problem.into());
        Self::Conflict {
            code,
            message: message.into(),
            fields: Some(fields),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(source) => Self::Unavailable {
                dependency: "the database",
                source: source.into(),
            },
            // A unique violation nobody turned into a conflict is a bug.
            StoreError::UniqueViolation(source) => Self::Internal(source.into()),
            StoreError::Other(source) => Self::Internal(source),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}

impl From<HashError> for Error {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy(busy) => Self::Unavailable {
                dependency: "sign-in",
                source: busy.into(),
            },
            HashError::Failed(message) => Self::Internal(anyhow::anyhow!(message)),
        }
    }
}
