//! Protection around calls to external providers (SMTP, payments).

pub mod breaker;
