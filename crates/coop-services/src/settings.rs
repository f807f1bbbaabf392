//! The accounts section of the configuration.

use std::time::Duration;

use clap::Args;
use coop_mechanisms::providers::parse_http_url;
use coop_runtime::values::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct AccountSettings {
    /// The address people use to reach Coop, for links in emails. Default: the
    /// listen address.
    #[arg(long = "public-url", env = "COOP_PUBLIC_URL", value_name = "COOP_PUBLIC_URL",
          value_parser = parse_http_url)]
    pub public_url: Option<String>,

    /// How long an invite link in a welcome email stays valid.
    #[arg(long = "invite-ttl", env = "COOP_INVITE_TTL", value_name = "COOP_INVITE_TTL",
          default_value = "7d", value_parser = parse_duration)]
    pub invite_ttl: Duration,

    /// How long a co-op's export can be downloaded once it is built; then
    /// its archive is deleted.
    #[arg(long = "export-ttl", env = "COOP_EXPORT_TTL", value_name = "COOP_EXPORT_TTL",
          default_value = "7d", value_parser = parse_duration)]
    pub export_ttl: Duration,

    /// How long after a coordinator asks to delete the co-op its data is
    /// deleted (until then it works, and the deletion can be cancelled).
    #[arg(long = "deletion-grace", env = "COOP_DELETION_GRACE", value_name = "COOP_DELETION_GRACE",
          default_value = "30d", value_parser = parse_duration)]
    pub deletion_grace: Duration,

    /// Session lifetime: a session ends this long after sign-in, however
    /// busy it is.
    #[arg(long = "session-ttl", env = "COOP_SESSION_TTL", value_name = "COOP_SESSION_TTL",
          default_value = "7d", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// A session not used for this long ends (an unattended device).
    #[arg(long = "session-idle", env = "COOP_SESSION_IDLE", value_name = "COOP_SESSION_IDLE",
          default_value = "1d", value_parser = parse_duration)]
    pub session_idle: Duration,
}
