//! Black-box tests: Coop driven through HTTP as a client would, on both tiers.
//! One test binary (faster to link); one module per area; what they stand on
//! is in `support`.
//!
//! `cargo test` is the fast loop. The minutes-long suites (`coop cluster`
//! behind nginx, streaming replicas, killed processes, the simulator over the
//! whole growth trace) need the `full-suite` feature, which
//! `scripts/test.sh` and CI always turn on:
//!
//!     cargo test                          # fast: in-process apps, both tiers
//!     cargo test --features full-suite    # everything (scripts/test.sh)

mod support;

mod accounts;
mod auth;
mod cache;
mod contract;
mod coops;
mod courses;
mod documents;
mod edge;
mod exports;
mod families;
mod family_pages;
mod idempotency;
mod instances;
mod jobs;
mod operations;
mod operators;
mod pages;
mod process;
mod rate_limits;
mod signup;
mod static_assets;
mod trace_context;
mod transfer;

#[cfg(feature = "full-suite")]
mod cluster;
#[cfg(feature = "full-suite")]
mod replicas;
#[cfg(feature = "full-suite")]
mod simulate;
#[cfg(feature = "full-suite")]
mod web;
