//! What every handler can reach: the services, and what the HTTP layer itself
//! needs (its settings, the instance's name, readiness). Built once at
//! start-up; handlers never ask which tier they run on.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coop_mechanisms::health::Readiness;
use coop_mechanisms::rate_limit::RateLimiter;
use coop_mechanisms::read_positions::ReadPositions;
use coop_services::Services;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::HttpSettings;
use crate::knobs::TestKnobs;
use crate::rendered_classes::RenderedClasses;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    /// This instance's last hour of metric samples, for the operations page.
    pub operations: Arc<crate::operations::Samples>,
    /// Asks the peers (COOP_OPERATIONS_PEERS) for theirs.
    pub peers: reqwest::Client,
    pub services: Arc<Services>,
    /// Attempts at log-in, sign-up and invite acceptance (`http::rate_limit`).
    pub rate_limits: RateLimiter,
    /// Each session's last write position, for read-your-writes.
    pub read_positions: ReadPositions,
    /// The dependencies `/ready` asks.
    pub readiness: Readiness,
    pub http: HttpSettings,
    pub knobs: TestKnobs,
    /// How far behind a replica may fall (read-your-writes cookies live twice
    /// as long, and the `sticky` variant pins this long).
    pub max_replica_lag: Duration,
    pub instance_id: String,
    /// For the landing page: which tier and cache this instance runs.
    pub tier: &'static str,
    pub cache: &'static str,
    pub metrics: PrometheusHandle,
    /// The catalog's JSON of each class, per cached copy.
    pub rendered_classes: RenderedClasses,
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

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
