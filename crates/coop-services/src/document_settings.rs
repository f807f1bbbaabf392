//! The documents' section of the configuration: sizes, the quota, and the
//! times that keep an upload and its sweep apart.

use std::time::Duration;

use clap::Args;
use coop_runtime::values::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct DocumentSettings {
    /// Largest document, in bytes (suffixes KB, MB, GB, KiB, MiB, GiB).
    #[arg(long = "document-max-bytes", env = "COOP_DOCUMENT_MAX_BYTES",
          value_name = "COOP_DOCUMENT_MAX_BYTES", default_value = "100MiB", value_parser = parse_bytes)]
    pub max_bytes: u64,

    /// Most bytes one co-op's documents may take together.
    #[arg(long = "document-quota-bytes", env = "COOP_DOCUMENT_QUOTA_BYTES",
          value_name = "COOP_DOCUMENT_QUOTA_BYTES", default_value = "5GiB", value_parser = parse_bytes)]
    pub quota_bytes: u64,

    /// Longest an upload may take (it replaces COOP_REQUEST_TIMEOUT for
    /// uploads: a large file on a slow line takes minutes).
    #[arg(long = "upload-timeout", env = "COOP_UPLOAD_TIMEOUT", value_name = "COOP_UPLOAD_TIMEOUT",
          default_value = "30m", value_parser = parse_duration)]
    pub upload_timeout: Duration,

    /// When an upload's sweep runs: it removes the object if no document
    /// row names it by then (the instance died between storing and
    /// committing). Must exceed COOP_UPLOAD_TIMEOUT, so a sweep never meets
    /// an upload still running. Default: COOP_UPLOAD_TIMEOUT + 5m.
    #[arg(long = "document-sweep-after", env = "COOP_DOCUMENT_SWEEP_AFTER",
          value_name = "COOP_DOCUMENT_SWEEP_AFTER", value_parser = parse_duration)]
    pub sweep_after: Option<Duration>,
}

const SWEEP_MARGIN: Duration = Duration::from_secs(300);

impl DocumentSettings {
    pub fn sweep_after(&self) -> Duration {
        self.sweep_after
            .unwrap_or(self.upload_timeout + SWEEP_MARGIN)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.sweep_after() <= self.upload_timeout {
            return Err(format!(
                "COOP_DOCUMENT_SWEEP_AFTER ({:?}) must be longer than COOP_UPLOAD_TIMEOUT ({:?}): \
                 a sweep must never remove the object of an upload still running",
                self.sweep_after(),
                self.upload_timeout
            ));
        }
        if self.max_bytes == 0 || self.quota_bytes == 0 {
            return Err(
                "COOP_DOCUMENT_MAX_BYTES and COOP_DOCUMENT_QUOTA_BYTES must be above 0".into(),
            );
        }
        Ok(())
    }
}

/// `1048576`, `100MB`, `100MiB`, `5GiB`, `512KB` … (decimal and binary units).
pub fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a size such as 100MiB or 1048576"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a size unit (KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{raw:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_parse_in_both_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("100MiB"), Ok(100 << 20));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("5GiB"), Ok(5 << 30));
        assert_eq!(parse_bytes("2 kb"), Ok(2000));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999999TiB").is_err());
    }
}
