//! Real protocol peers standing in for the outside world: they speak SMTP and
//! HTTP over real sockets, so Coop's clients are exercised as in production.

pub mod payment_provider;
pub mod smtp_sink;
