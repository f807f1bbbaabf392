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
//!   timeline as SVG.
//!
//! This crate never links the web application: the processes it supervises
//! are child processes of the `coop` binary, not code called in-process.
//! The binary's entry points are [`run_cluster`] (`coop cluster …`) and
//! [`run_simulate`] (`coop simulate …`).

pub mod autoscale;
pub mod cluster;

pub use autoscale::sim::{SimulateArgs, run as run_simulate};
pub use cluster::{ClusterCli, run as run_cluster};
