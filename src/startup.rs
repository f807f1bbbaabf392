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

use crate::cache::Cache;
use crate::config::Config;
use crate::http::metrics::prometheus_handle;
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
        }
    });
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
