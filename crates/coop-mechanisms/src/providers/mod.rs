//! The outside services jobs call (SMTP, the payment provider), each behind a
//! circuit breaker of its own, and their section of the configuration.

pub mod breaker;
pub mod mail;
pub mod payments;
mod smtp_plain;

use std::time::Duration;

use clap::Args;
use coop_runtime::values::{parse_duration, redact_url};

pub use breaker::BreakerConfig;

#[derive(Debug, Clone, Args)]
pub struct ProviderSettings {
    /// `smtp://HOST:PORT` (or `smtps://USER:PASS@HOST`) for outgoing email. Unset:
    /// emails are written as `.eml` files to `COOP_DATA_DIR/outbox`.
    #[arg(long = "smtp-url", env = "COOP_SMTP_URL", value_name = "COOP_SMTP_URL",
          hide_env_values = true, value_parser = parse_smtp_url)]
    pub smtp_url: Option<String>,

    /// Sender of every email Coop sends.
    #[arg(long = "mail-from", env = "COOP_MAIL_FROM", value_name = "COOP_MAIL_FROM",
          default_value = "Coop <no-reply@coop.localhost>", value_parser = parse_mailbox)]
    pub mail_from: String,

    /// The payment provider's API base URL (`POST {url}/charges`). Unset: payments
    /// are refused with a message saying so.
    #[arg(long = "payments-url", env = "COOP_PAYMENTS_URL", value_name = "COOP_PAYMENTS_URL",
          hide_env_values = true, value_parser = parse_http_url)]
    pub payments_url: Option<String>,

    /// Longest wait for one answer from the SMTP server or the payment provider.
    #[arg(long = "provider-timeout", env = "COOP_PROVIDER_TIMEOUT",
          value_name = "COOP_PROVIDER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub provider_timeout: Duration,

    /// Circuit breakers (one per provider): failures count over this window...
    #[arg(long = "breaker-window", env = "COOP_BREAKER_WINDOW",
          value_name = "COOP_BREAKER_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub breaker_window: Duration,

    /// ...once it holds at least this many calls...
    #[arg(long = "breaker-min-calls", env = "COOP_BREAKER_MIN_CALLS",
          value_name = "COOP_BREAKER_MIN_CALLS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_min_calls: u32,

    /// ...and the breaker opens when this share of them failed (0–1)...
    #[arg(long = "breaker-failure-rate", env = "COOP_BREAKER_FAILURE_RATE",
          value_name = "COOP_BREAKER_FAILURE_RATE", default_value = "0.5",
          value_parser = parse_fraction)]
    pub breaker_failure_rate: f64,

    /// ...stays open this long, making no calls...
    #[arg(long = "breaker-open-for", env = "COOP_BREAKER_OPEN_FOR",
          value_name = "COOP_BREAKER_OPEN_FOR", default_value = "15s", value_parser = parse_duration)]
    pub breaker_open_for: Duration,

    /// ...then lets this many probe calls through: all succeed → closed, one fails → open.
    #[arg(long = "breaker-half-open-probes", env = "COOP_BREAKER_HALF_OPEN_PROBES",
          value_name = "COOP_BREAKER_HALF_OPEN_PROBES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_half_open_probes: u32,
}

impl ProviderSettings {
    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            window: self.breaker_window,
            min_calls: self.breaker_min_calls,
            failure_rate: self.breaker_failure_rate,
            open_for: self.breaker_open_for,
            half_open_probes: self.breaker_half_open_probes,
        }
    }
}

fn parse_smtp_url(value: &str) -> Result<String, String> {
    if value.starts_with("smtp://") || value.starts_with("smtps://") {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "COOP_SMTP_URL expects smtp://HOST:PORT or smtps://USER:PASSWORD@HOST, got {:?}",
            redact_url(value)
        ))
    }
}

/// `http://` or `https://`, without a trailing slash.
pub fn parse_http_url(value: &str) -> Result<String, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "expected an http:// or https:// URL, got {:?}",
            redact_url(value)
        ))
    }
}

fn parse_mailbox(value: &str) -> Result<String, String> {
    value
        .parse::<lettre::message::Mailbox>()
        .map(|_| value.to_owned())
        .map_err(|_| format!("COOP_MAIL_FROM expects `Name <address@host>`, got {value:?}"))
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) && f > 0.0 => Ok(f),
        _ => Err(format!(
            "expected a fraction above 0 and at most 1, got {value:?}"
        )),
    }
}
