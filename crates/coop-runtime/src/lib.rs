//! What every Coop process needs, whatever it does (`coop serve`, `coop
//! worker`, `coop cluster`): logging, the process-wide metrics registry, the
//! shutdown signal, private files, and the parsers for setting values
//! (durations, switches) so every command reads `30s` or `on` the same way;
//! and what the ops tools and the server share: the SQLite lock
//! ([`data_lock`]) and the scheduled backups' status ([`backup_status`]).

pub mod backup_status;
pub mod data_lock;
pub mod files;
mod metrics_registry;
mod signals;
pub mod telemetry;
pub mod trace_context;
pub mod values;

pub use data_lock::DataLock;
pub use metrics_registry::prometheus_handle;
pub use signals::shutdown_signal;
