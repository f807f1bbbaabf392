//! Builds the application from a configuration and runs it until a shutdown
//! signal. `main` and the tests both go through here, so tests exercise exactly
//! what production runs.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::TcpListener;

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::http::metrics::prometheus_handle;
use crate::jobs::effects::Effects;
use crate::jobs::worker::{Worker, WorkerConfig};
use crate::routes;
use crate::session::SessionStore;
use crate::state::{AppState, Inner};
use crate::store::replicas::ReplicaSet;
use crate::store::{self, Db};

/// Bound on every Redis round trip, so an unreachable Redis gives a prompt 503
/// instead of a hung request.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    router: Router,
    state: AppState,
}

impl Application {
    /// Connects to the database (migrating it) and Redis, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let db = Db::connect(&config).await?;
        db.migrate().await?;
        let redis = match &config.redis_url {
            Some(url) => Some(connect_redis(url).await?),
            None => None,
        };
        let cache = build_cache(&config, &db, redis.as_ref());
        let replicas = ReplicaSet::new(&config, &db)?;
        if let Some(replicas) = &replicas {
            tokio::spawn(replicas.clone().monitor());
        }
        let sessions = SessionStore::new(
            db.clone(),
            replicas.clone(),
            cache.clone(),
            config.session_ttl,
        );

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("could not listen on {} (COOP_LISTEN)", config.listen))?;
        let address = listener.local_addr()?;
        let instance_id = config.instance_id(address);
        let effects = Arc::new(Effects::new(&config, db.clone(), address)?);
        let worker_config = WorkerConfig::from_config(&config);
        metrics::gauge!(
            "coop_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "instance" => instance_id.clone(),
            "backend" => db.backend(),
        )
        .set(1.0);
        let state = AppState::new(Inner {
            config,
            db,
            sessions,
            cache,
            redis: redis.map(|(_, conn)| conn),
            replicas,
            effects,
            worker_config,
            instance_id,
            metrics: prometheus_handle(),
            draining: Default::default(),
        });
        let router = routes::router(state.clone());
        Ok(Self {
            listener,
            address,
            router,
            state,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then: `/ready` turns 503 at once, the
    /// listener keeps accepting for the drain delay (so load balancers notice),
    /// in-flight requests get up to the shutdown timeout to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            ..
        } = self;
        let drain_delay = state.config.drain_delay;
        let shutdown_timeout = state.config.shutdown_timeout;
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);

        let draining_state = state.clone();
        let graceful = async move {
            shutdown.await;
            draining_state.start_draining();
            let _ = stopping_tx.send(true);
            tracing::info!(?drain_delay, "shutdown requested: draining");
            tokio::time::sleep(drain_delay).await;
        };
        spawn_housekeeping(state.db.clone());
        let worker = state.config.serve_runs_jobs().then(|| {
            tracing::info!(mail = %state.effects.mailer.describe(), "running background jobs in this process");
            let worker = Worker::new(state.effects.clone(), state.worker_config.clone());
            let mut stopping = stopping_rx.clone();
            tokio::spawn(worker.run(async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            }))
        });

        // Small JSON answers suffer badly from Nagle's algorithm: axum::serve does
        // not disable it, so we do.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(drain_delay + shutdown_timeout).await;
        };
        tokio::select! {
            result = server => result.context("serving HTTP")?,
            () = deadline => tracing::warn!(?shutdown_timeout, "in-flight requests did not finish in time"),
        }
        if let Some(worker) = worker {
            // It stopped claiming when shutdown began; let it finish or release.
            let _ = worker.await;
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Which cache tiers this configuration can keep coherent.
fn build_cache(
    config: &Config,
    db: &Db,
    redis: Option<&(redis::Client, ConnectionManager)>,
) -> Cache {
    match (config.cache, db, redis) {
        (false, _, _) => Cache::disabled(),
        (true, _, Some((client, conn))) => Cache::shared(config, client.clone(), conn.clone()),
        (true, Db::Sqlite(..), None) => Cache::local(config),
        (true, Db::Postgres(..), None) => {
            // Several instances may share this database, and without Redis there
            // is no way to tell the others about a write: cache nothing.
            tracing::warn!(
                "caching is off: PostgreSQL without COOP_REDIS_URL has no invalidation channel"
            );
            Cache::disabled()
        }
    }
}

async fn connect_redis(url: &str) -> anyhow::Result<(redis::Client, ConnectionManager)> {
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
    .with_context(|| format!("could not connect to Redis at {url} (COOP_REDIS_URL)"))?;
    Ok((client, conn))
}

/// Finished jobs (and the effect records of their emails) are kept this long
/// for the admin view, then deleted. A job is never rerun after it is done, so
/// its effect records are no longer needed.
const FINISHED_JOBS_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// Periodic clean-up that keeps tables from growing without bound.
fn spawn_housekeeping(db: Db) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            match store::idempotency::purge_expired(&db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged expired idempotency records"),
                Err(err) => tracing::warn!(error = %err, "purging idempotency records failed"),
            }
            match store::jobs::purge_finished(&db, FINISHED_JOBS_KEPT.as_millis() as i64).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "purged finished jobs"),
                Err(err) => tracing::warn!(error = %err, "purging finished jobs failed"),
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this
/// is called, not when the future is first polled: a SIGTERM that arrives while
/// the process is still starting must not kill it outright.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `coop worker`: runs background jobs until `shutdown`, serving `/health` and
/// `/metrics` on COOP_WORKER_LISTEN for probes and scrapers.
pub async fn run_worker(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    // Links in emails point at the HTTP instances, which share this configuration.
    let effects = Arc::new(Effects::new(&config, db.clone(), config.listen)?);
    let listener = TcpListener::bind(config.worker_listen)
        .await
        .with_context(|| {
            format!(
                "could not listen on {} (COOP_WORKER_LISTEN)",
                config.worker_listen
            )
        })?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        concurrency = config.worker_concurrency,
        mail = %effects.mailer.describe(),
        "Coop worker is running; health and metrics on http://{address}/"
    );
    let probes = worker_probes(db.clone(), prometheus_handle());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        axum::serve(listener, probes)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    Worker::new(effects, WorkerConfig::from_config(&config))
        .run(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    db.close().await;
    Ok(())
}

fn worker_probes(db: Db, metrics: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    use axum::routing::get;
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok", "role": "worker" })) }),
        )
        .route(
            "/metrics",
            get(move || {
                let db = db.clone();
                let metrics = metrics.clone();
                async move {
                    crate::jobs::record_queue_metrics(&db).await;
                    db.record_pool_metrics();
                    metrics.run_upkeep();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
}
