//! Coop's operations tooling, everything that runs Coop rather than being it:
//!
//! - [`cluster`]: `coop cluster`, the single-host supervisor: nginx in front
//!   (its configuration and reloads), `coop serve` instances and `coop worker`
//!   processes started from the running binary (`std::env::current_exe()`),
//!   optional cgroup CPU caps per instance, health checks, rolling restarts,
//!   and the control API behind `coop cluster status` / `restart`;
//! - [`autoscale`]: the auto-scaler's rule (Kubernetes' HPA rule, pure and
//!   deterministic), its settings, and `coop simulate`, which replays a
//!   traffic trace through that rule against a capacity model and charts the
//!   timeline as SVG;
//! - [`transfer`]: `coop transfer`, which copies a Coop database between
//!   SQLite and PostgreSQL, resumable and verified;
//! - [`backup`]: `coop backup` / `coop restore` (`VACUUM INTO` or `pg_dump`).
//!
//! This crate never links the web application: the processes it supervises
//! are child processes of the `coop` binary, not code called in-process.
//! The binary's entry points are [`run_cluster`] (`coop cluster …`) and
//! [`run_simulate`] (`coop simulate …`).

pub mod autoscale;
pub mod backup;
pub mod cluster;
pub mod transfer;

pub use autoscale::sim::{SimulateArgs, run as run_simulate};
pub use backup::{BackupArgs, RestoreArgs, backup as run_backup, restore as run_restore};
pub use cluster::{ClusterCli, run as run_cluster};
pub use transfer::{TransferArgs, run as run_transfer};
