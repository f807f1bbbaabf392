//! Coop's services: one per resource (families, accounts, payments, …). A
//! service owns its resource's rules (who may see and change what, what a
//! change causes) and its data path: every read says which consistency it
//! needs and goes through `coop_mechanisms::data::Data` (cache → replica at the
//! caller's read-your-writes floor → primary), every write commits with the
//! jobs it causes and ends with the write epilogue (WAL position,
//! invalidation). The JSON API and the web pages both call these; neither knows
//! a cache or a replica exists.
//!
//! Adding a cached, replica-routed resource: a module here with a struct
//! holding `Data`, a `CacheKey` per value (`CacheKey::new("class", …)`),
//! reads through `data.cached`/`data.read`, writes on `data.primary()` followed
//! by `data.committed(&ctx.read_after, &[keys…])`, and a field in [`Services`].

pub mod accounts;
pub mod announcements;
mod archive;
pub mod calendar;
pub mod children;
pub mod classes;
mod context;
pub mod deletion;
pub mod document_settings;
pub mod documents;
pub mod enrollments;
mod error;
pub mod exports;
pub mod families;
pub mod idempotency;
pub mod jobs;
pub mod operators;
pub mod payments;
pub mod queue;
pub mod semesters;
mod services;
mod settings;
mod thumbnails;

pub use context::{Caller, Ctx};
pub use document_settings::DocumentSettings;
pub use error::Error;
pub use services::{Parts, Services, record_queue_metrics};
pub use settings::AccountSettings;

pub type Result<T, E = Error> = std::result::Result<T, E>;
