//! The cache section of the configuration.

use std::time::Duration;

use clap::Args;
use coop_runtime::values::{parse_bool, parse_duration};

#[derive(Debug, Clone, Args)]
pub struct CacheSettings {
    /// `on` or `off`: the two-tier read cache (off is for benchmarks and debugging).
    #[arg(long = "cache", env = "COOP_CACHE", value_name = "COOP_CACHE",
          default_value = "on", value_parser = parse_bool)]
    pub cache: bool,

    /// Lifetime of a cached value in Redis (L2); each entry gets ±10 % jitter so
    /// entries written together do not expire together.
    #[arg(long = "cache-ttl", env = "COOP_CACHE_TTL", value_name = "COOP_CACHE_TTL",
          default_value = "300s", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Lifetime of a value in the in-process cache (L1): the bound on staleness
    /// should an invalidation ever be lost without the subscription noticing.
    #[arg(long = "cache-l1-ttl", env = "COOP_CACHE_L1_TTL", value_name = "COOP_CACHE_L1_TTL",
          default_value = "30s", value_parser = parse_duration)]
    pub cache_l1_ttl: Duration,

    /// Most entries the in-process cache holds.
    #[arg(long = "cache-l1-max-entries", env = "COOP_CACHE_L1_MAX_ENTRIES",
          value_name = "COOP_CACHE_L1_MAX_ENTRIES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_l1_max_entries: u64,

    /// Most bytes of values the in-process cache holds.
    #[arg(long = "cache-l1-max-bytes", env = "COOP_CACHE_L1_MAX_BYTES",
          value_name = "COOP_CACHE_L1_MAX_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub cache_l1_max_bytes: u64,

    /// How long a reader waits for another instance that holds the fill lease
    /// before querying the database itself.
    #[arg(long = "cache-lease-wait", env = "COOP_CACHE_LEASE_WAIT",
          value_name = "COOP_CACHE_LEASE_WAIT", default_value = "200ms", value_parser = parse_duration)]
    pub cache_lease_wait: Duration,
}
