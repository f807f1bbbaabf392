//! Coop's faces and the application that serves them: the JSON API (routes,
//! its OpenAPI document), the pages, and the HTTP edge (extractors,
//! idempotency, read-your-writes tokens, timeouts, metrics). Handlers parse,
//! call a service, and answer; the services decide everything else.

pub mod api;
pub mod assets;
pub mod config;
pub mod error;
pub mod http;
pub mod knobs;
pub mod operations;
pub mod pages;
pub mod rendered_classes;
pub mod startup;
pub mod state;

pub use coop_runtime::telemetry;
