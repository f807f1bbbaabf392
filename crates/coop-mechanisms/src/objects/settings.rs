//! The object store's section of the configuration.

use std::time::Duration;

use clap::Args;
use coop_runtime::values::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct ObjectStoreSettings {
    /// An S3-compatible server's URL (e.g. `https://s3.eu-central-1.amazonaws.com`,
    /// `http://127.0.0.1:8333`). Unset: documents are files under
    /// `COOP_DATA_DIR/objects` (the embedded tier; one instance only).
    #[arg(long = "object-store-endpoint", env = "COOP_OBJECT_STORE_ENDPOINT",
          value_name = "COOP_OBJECT_STORE_ENDPOINT", value_parser = parse_endpoint)]
    pub endpoint: Option<String>,

    /// The bucket documents go to (it must exist).
    #[arg(
        long = "object-store-bucket",
        env = "COOP_OBJECT_STORE_BUCKET",
        value_name = "COOP_OBJECT_STORE_BUCKET",
        default_value = "coop"
    )]
    pub bucket: String,

    /// The bucket's region (most S3-compatible servers accept any).
    #[arg(
        long = "object-store-region",
        env = "COOP_OBJECT_STORE_REGION",
        value_name = "COOP_OBJECT_STORE_REGION",
        default_value = "us-east-1"
    )]
    pub region: String,

    /// The access key. Required with an endpoint: without keys the S3
    /// client would ask a cloud metadata address for some.
    #[arg(
        long = "object-store-access-key-id",
        env = "COOP_OBJECT_STORE_ACCESS_KEY_ID",
        value_name = "COOP_OBJECT_STORE_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key_id: Option<String>,

    /// The secret that goes with the access key.
    #[arg(
        long = "object-store-secret-access-key",
        env = "COOP_OBJECT_STORE_SECRET_ACCESS_KEY",
        value_name = "COOP_OBJECT_STORE_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,

    /// Longest wait for one answer from the S3 server (one part of an upload,
    /// the start of a download).
    #[arg(long = "object-store-timeout", env = "COOP_OBJECT_STORE_TIMEOUT",
          value_name = "COOP_OBJECT_STORE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl ObjectStoreSettings {
    /// Keys without an endpoint, or an endpoint without keys, is a mistake
    /// worth stopping for.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.endpoint, &self.access_key_id, &self.secret_access_key) {
            (None, None, None) | (Some(_), Some(_), Some(_)) => Ok(()),
            (None, _, _) => Err(
                "COOP_OBJECT_STORE_ACCESS_KEY_ID / _SECRET_ACCESS_KEY are set without \
                 COOP_OBJECT_STORE_ENDPOINT: set the endpoint too, or unset them to keep \
                 documents under COOP_DATA_DIR"
                    .into(),
            ),
            (Some(_), _, _) => Err(
                "COOP_OBJECT_STORE_ENDPOINT needs COOP_OBJECT_STORE_ACCESS_KEY_ID and \
                 COOP_OBJECT_STORE_SECRET_ACCESS_KEY (Coop never asks a cloud metadata \
                 service for keys)"
                    .into(),
            ),
        }
    }
}

fn parse_endpoint(raw: &str) -> Result<String, String> {
    if raw.starts_with("http://") || raw.starts_with("https://") {
        Ok(raw.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "COOP_OBJECT_STORE_ENDPOINT must be an http:// or https:// URL, got {raw:?}"
        ))
    }
}
