//! Cross-cutting HTTP pieces: extractors, middleware and fallbacks that every
//! route shares, so handlers only read like the business.

pub mod auth;
pub mod fallback;
pub mod idempotency;
pub mod json;
pub mod metrics;
pub mod read_after;

/// Largest request body we accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
