//! What every handler can reach. Built once at start-up from the configuration;
//! handlers never ask which tier they run on.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;

use crate::cache::Cache;
use crate::config::Config;
use crate::session::SessionStore;
use crate::store::Db;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub sessions: SessionStore,
    pub cache: Cache,
    pub redis: Option<ConnectionManager>,
    pub instance_id: String,
    pub metrics: PrometheusHandle,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        config: Config,
        db: Db,
        sessions: SessionStore,
        cache: Cache,
        redis: Option<ConnectionManager>,
        instance_id: String,
        metrics: PrometheusHandle,
    ) -> Self {
        Self(Arc::new(Inner {
            config,
            db,
            sessions,
            cache,
            redis,
            instance_id,
            metrics,
            draining: AtomicBool::new(false),
        }))
    }

    /// From now on `/ready` answers 503, so load balancers stop sending work.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
