//! Readiness: whether the dependencies a request needs answer now. `/ready`
//! asks; load balancers and `coop cluster` act on the answer.

use std::sync::Arc;
use std::time::Duration;

use crate::shared_state::Redis;
use crate::store::Db;
use crate::store::replicas::ReplicaSet;

/// How long a dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Readiness {
    primary: Db,
    redis: Option<Redis>,
    replicas: Option<Arc<ReplicaSet>>,
}

/// What a probe found.
pub struct Report {
    /// (dependency, `Ok` or what went wrong), for each that decides readiness.
    pub checks: Vec<(&'static str, Result<(), String>)>,
    /// (replica, in the read set): shown, but not deciding (reads fall back to
    /// the primary).
    pub replicas: Vec<(String, bool)>,
}

impl Readiness {
    pub fn new(primary: Db, redis: Option<Redis>, replicas: Option<Arc<ReplicaSet>>) -> Self {
        Self {
            primary,
            redis,
            replicas,
        }
    }

    pub async fn check(&self) -> Report {
        let database = async {
            match tokio::time::timeout(PROBE_TIMEOUT, self.primary.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(format!("error: {err}")),
                Err(_) => Err("did not answer within 1 s".to_owned()),
            }
        };
        let redis = async {
            match &self.redis {
                Some(redis) => Some(redis.ping().await),
                None => None,
            }
        };
        let (database, redis) = tokio::join!(database, redis);
        let mut checks = vec![("database", database)];
        if let Some(redis) = redis {
            checks.push(("redis", redis));
        }
        Report {
            checks,
            replicas: self
                .replicas
                .as_ref()
                .map(|set| set.health())
                .unwrap_or_default(),
        }
    }
}
