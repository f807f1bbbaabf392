//! Black-box tests: Coop driven through HTTP as a client would, on both tiers.
//! One test binary (faster to link); one module per area.

mod helpers;

mod auth;
mod cache;
mod cluster;
mod coops;
mod families;
mod idempotency;
mod instances;
mod jobs;
mod operations;
mod payment_provider;
mod process;
mod replicas;
mod simulate;
mod smtp_sink;
mod static_assets;
