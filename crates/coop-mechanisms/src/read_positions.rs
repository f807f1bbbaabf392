//! Read-your-writes held by the session. After a write, the primary's WAL
//! position is remembered under the session (its token's hash), where every
//! instance finds it: a client that sends its session cookie but ignores the
//! `coop_read_after` cookie and header of a write's answer (many API clients
//! do) still reads its own write on its next request, wherever that lands.
//!
//! Kept in Redis when the deployment has one (the distributed tier, where
//! replicas live), with a lifetime of twice the replica lag budget: after
//! that every replica the router still uses has replayed the write anyway.
//! Without Redis, or while Redis does not answer within a few milliseconds,
//! an in-process map stands in: it holds for the instance that took the write
//! (never an error, never a slower request than Redis's timeout).
//!
//! Only positions are stored, under hashes: nothing here identifies a person.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::store::replicas::Lsn;

/// Longest a request waits for Redis before using what this instance knows.
const REDIS_WAIT: Duration = Duration::from_millis(50);

/// Raises the stored position, never lowers it (two writes of one session
/// may finish in either order), and renews its lifetime.
const RAISE: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

#[derive(Clone)]
pub struct ReadPositions {
    local: moka::future::Cache<String, Lsn>,
    shared: Option<Shared>,
    lifetime: Duration,
}

#[derive(Clone)]
struct Shared {
    conn: ConnectionManager,
    raise: Arc<redis::Script>,
    /// Keeps deployments that share one Redis apart.
    namespace: String,
}

impl ReadPositions {
    /// `lifetime`: how long a position matters (twice the replica lag
    /// budget); `redis`: the deployment's Redis and its namespace, if any.
    pub fn new(lifetime: Duration, redis: Option<(ConnectionManager, String)>) -> Self {
        Self {
            local: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(lifetime)
                .build(),
            shared: redis.map(|(conn, namespace)| Shared {
                conn,
                raise: Arc::new(redis::Script::new(RAISE)),
                namespace,
            }),
            lifetime,
        }
    }

    /// The position the session `token_hash` last wrote at, if it still
    /// matters.
    pub async fn get(&self, token_hash: &str) -> Option<Lsn> {
        let local = self.local.get(token_hash).await;
        let Some(shared) = &self.shared else {
            return local;
        };
        let mut conn = shared.conn.clone();
        let key = shared.key(token_hash);
        let answer = tokio::time::timeout(
            REDIS_WAIT,
            redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<u64>>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(remote)) => remote.max(local),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "read position: Redis failed; using this instance's");
                local
            }
            Err(_) => local,
        }
    }

    /// Remembers that the session `token_hash` wrote at `lsn`.
    pub async fn raise(&self, token_hash: &str, lsn: Lsn) {
        let local = self.local.get(token_hash).await.unwrap_or(0);
        if lsn > local {
            self.local.insert(token_hash.to_owned(), lsn).await;
        }
        let Some(shared) = &self.shared else {
            return;
        };
        let mut conn = shared.conn.clone();
        let mut invocation = shared.raise.key(shared.key(token_hash));
        invocation.arg(lsn).arg(self.lifetime.as_millis() as u64);
        match tokio::time::timeout(REDIS_WAIT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "read position: Redis failed; kept on this instance")
            }
            Err(_) => tracing::warn!("read position: Redis did not answer; kept on this instance"),
        }
    }
}

impl Shared {
    fn key(&self, token_hash: &str) -> String {
        format!("coop:ryw:{}:{token_hash}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_redis_the_instance_remembers_the_highest_position() {
        let positions = ReadPositions::new(Duration::from_secs(10), None);
        assert_eq!(positions.get("a").await, None);
        positions.raise("a", 42).await;
        positions.raise("a", 41).await;
        assert_eq!(positions.get("a").await, Some(42), "never lowered");
        assert_eq!(positions.get("b").await, None, "per session");
    }
}
