//! What every handler can reach. Built once at start-up from the configuration;
//! handlers never ask which tier they run on.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;

use crate::cache::Cache;
use crate::config::Config;
use crate::jobs::effects::Effects;
use crate::jobs::worker::WorkerConfig;
use crate::session::SessionStore;
use crate::store::Db;
use crate::store::replicas::{self, Lsn, ReplicaSet};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub sessions: SessionStore,
    pub cache: Cache,
    pub redis: Option<ConnectionManager>,
    pub replicas: Option<Arc<ReplicaSet>>,
    /// Mail, payments and the rest of what jobs do (used inline by the
    /// `COOP_JOBS_INLINE` variant, and by the worker `coop serve` runs).
    pub effects: Arc<Effects>,
    pub worker_config: WorkerConfig,
    pub instance_id: String,
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins; starts false.
    pub draining: AtomicBool,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// From now on `/ready` answers 503, so load balancers stop sending work.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

impl AppState {
    /// After a write committed: the WAL position reads of it must wait for
    /// (`None` without replicas, where every read sees every write).
    pub async fn write_position(&self) -> Option<Lsn> {
        replicas::position_after_write(self.replicas.as_deref()).await
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
