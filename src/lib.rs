//! Coop: a platform for homeschool co-ops. The same binary serves ten families on
//! a laptop (SQLite, everything in one process) and many instances behind a load
//! balancer (PostgreSQL + Redis); only the configuration differs.

pub mod autoscale;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod resilience;
pub mod routes;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
