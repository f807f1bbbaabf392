//! The connection to Redis, the distributed tier's shared state (the cache's L2
//! and its invalidation channel, and the rate limiter), and its health probe.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coop_runtime::values::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Bound on every Redis round trip, so an unreachable Redis gives a prompt 503
/// instead of a hung request.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Args)]
pub struct RedisSettings {
    /// `redis://…`: shared cache (L2), cache invalidations between instances, and
    /// rate limits across instances. Unset: none of these (one instance).
    #[arg(long = "redis-url", env = "COOP_REDIS_URL", value_name = "COOP_REDIS_URL",
          hide_env_values = true, value_parser = parse_redis_url)]
    pub redis_url: Option<String>,
}

fn parse_redis_url(value: &str) -> Result<String, String> {
    if (value.starts_with("redis://") || value.starts_with("rediss://"))
        && redis::Client::open(value).is_ok()
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "COOP_REDIS_URL expects redis://HOST:PORT[/DB], got {:?}",
            redact_url(value)
        ))
    }
}

/// A Redis client (for subscriptions, which need their own connection) and a
/// multiplexed, self-reconnecting connection for everything else.
#[derive(Clone)]
pub struct Redis {
    pub client: redis::Client,
    pub conn: ConnectionManager,
}

impl Redis {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("COOP_REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "could not connect to Redis at {} (COOP_REDIS_URL)",
                redact_url(url)
            )
        })?;
        Ok(Self { client, conn })
    }

    /// One round trip, for readiness.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("error: {err}")),
            Err(_) => Err("did not answer within 1 s".to_owned()),
        }
    }
}
