//! Coop's mechanisms: what makes one binary serve ten families on a laptop and
//! many instances behind a load balancer. Each sits behind a small type whose
//! two tiers are chosen once at start-up from the configuration:
//!
//! - [`store`]: database pools (SQLite or a PostgreSQL primary), streaming
//!   replicas with lag-aware routing, the SQL of each table.
//! - [`cache`]: the two-tier cache (in-process L1, Redis L2) with leases and
//!   invalidation broadcast.
//! - [`data`]: the read path and write epilogue services are built on.
//! - [`sessions`]: server-side sessions read through the cache;
//!   [`read_positions`]: each session's last write position (read-your-writes).
//! - [`jobs`]: the durable queue's worker; [`providers`]: SMTP and payments
//!   behind circuit breakers.
//! - [`objects`]: documents' bytes, on the local disk or in an S3 bucket,
//!   behind a circuit breaker.
//! - [`hashing`]: bounded password hashing; [`rate_limit`]: attempts per
//!   account and address, shared through Redis; [`shared_state`]: Redis.
//!
//! Nothing here knows HTTP: errors are classified ([`store::StoreError`]) and
//! each face decides how to show them.

pub mod cache;
pub mod data;
pub mod hashing;
pub mod health;
pub mod jobs;
pub mod objects;
pub mod providers;
pub mod rate_limit;
pub mod read_positions;
pub mod sessions;
pub mod shared_state;
pub mod store;
