//! Builds the application from a configuration and runs it until a shutdown
//! signal. `main` and the tests both go through here, so tests exercise exactly
//! what production runs: mechanisms first (chosen by the configuration), then
//! the services on them, then the faces.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use coop_mechanisms::cache::Cache;
use coop_mechanisms::data::Data;
use coop_mechanisms::hashing::Hasher;
use coop_mechanisms::health::Readiness;
use coop_mechanisms::jobs::worker::{Worker, WorkerConfig};
use coop_mechanisms::objects::Objects;
use coop_mechanisms::rate_limit::RateLimiter;
use coop_mechanisms::read_positions::ReadPositions;
use coop_mechanisms::shared_state::Redis;
use coop_mechanisms::store::replicas::ReplicaSet;
use coop_mechanisms::store::{DatabaseUrl, Db};
use coop_runtime::prometheus_handle;
use coop_services::jobs::{Effects, InlineJobs};
use coop_services::{Parts, Services, record_queue_metrics};
use tokio::net::TcpListener;

use crate::api;
use crate::config::Config;
use crate::http::scrape::MetricsToken;
use crate::knobs::TestKnobs;
use crate::state::{AppState, Inner};

/// How often `coop serve` reads the queue's depth for its metrics: the
/// default Prometheus scrape interval.
const QUEUE_METRICS_EVERY: Duration = Duration::from_secs(15);

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// COOP_METRICS_LISTEN, bound.
    metrics_listener: Option<TcpListener>,
    router: Router,
    state: AppState,
    /// What `coop serve` runs beside HTTP: the job queue on the embedded tier.
    worker: Option<Worker<Effects>>,
    /// Held while serving: keeps `coop transfer` off the SQLite file.
    _data_lock: Option<coop_runtime::DataLock>,
}

impl Application {
    /// Connects to the database (migrating it) and Redis, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, TestKnobs::default()).await
    }

    /// [`Application::build`] with fault injection or a benchmark variant:
    /// for tests and benchmarks only (see `knobs`).
    pub async fn build_with(config: Config, knobs: TestKnobs) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        // The recorder first, so every metric recorded from here on is kept.
        let metrics = prometheus_handle();
        let data_lock = config.database.hold_data_lock()?;
        let db = Db::connect(&config.database).await?;
        db.set_write_turns(knobs.sqlite_writers);
        db.migrate().await?;
        let redis = match &config.redis.redis_url {
            Some(url) => Some(Redis::connect(url).await?),
            None => None,
        };
        let cache = build_cache(&config, &db, redis.as_ref(), &knobs);
        let replicas = ReplicaSet::new(&config.database, &db)?;
        if let Some(replicas) = &replicas {
            tokio::spawn(replicas.clone().monitor());
        }
        let data = Data::new(db.clone(), replicas.clone(), cache.clone());

        let backlog = config.http.listen_backlog;
        let (listener, applied_backlog) = crate::http::listener::bind(config.http.listen, backlog)
            .with_context(|| format!("could not listen on {} (COOP_LISTEN)", config.http.listen))?;
        let address = listener.local_addr()?;
        tracing::debug!(%address, backlog = applied_backlog, "listening");
        let metrics_listener = match config.http.metrics_listen {
            Some(at) => Some(
                crate::http::listener::bind(at, backlog)
                    .with_context(|| format!("could not listen on {at} (COOP_METRICS_LISTEN)"))?
                    .0,
            ),
            None => None,
        };
        let instance_id = config.instance_id(address);
        let objects = Objects::new(
            &config.objects,
            &config.database.data_dir,
            config.providers.breaker(),
        )?;
        let effects = Arc::new(
            Effects::new(
                &config.providers,
                &config.accounts,
                &config.database.data_dir,
                db.clone(),
                objects.clone(),
                address,
            )?
            .with_cache(cache.clone()),
        );
        let worker_config = WorkerConfig::new(&config.jobs, config.http.shutdown_timeout);
        let inline_jobs = knobs.jobs_inline.then(|| {
            Arc::new(InlineJobs::new(
                db.clone(),
                effects.clone(),
                worker_config.clone(),
            ))
        });
        let services = Arc::new(Services::new(Parts {
            data,
            session_ttl: config.accounts.session_ttl,
            session_idle: config.accounts.session_idle,
            hasher: Hasher::new(&config.hashing),
            job_max_attempts: config.jobs.job_max_attempts,
            payments_configured: config.providers.payments_url.is_some(),
            idempotency_lease: config.idempotency_lease(),
            deletion_grace: config.accounts.deletion_grace,
            export_ttl: config.accounts.export_ttl,
            inline_jobs,
            objects,
            documents: config.documents.clone(),
        }));
        let worker = config.serve_runs_jobs().then(|| {
            tracing::info!(mail = %effects.mailer.describe(), "running background jobs in this process");
            Worker::new(db.clone(), effects.clone(), worker_config)
        });
        metrics::gauge!(
            "coop_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "server" => instance_id.clone(),
            "backend" => db.backend(),
        )
        .set(1.0);
        let rules = crate::http::rate_limit::rules(&config.rate_limits);
        let rate_limits = match &redis {
            Some(redis) => {
                RateLimiter::shared(&rules, redis.conn.clone(), &deployment_name(&config))
            }
            None => RateLimiter::local(&rules),
        };
        rate_limits.spawn_cleanup(Duration::from_secs(60));
        // As long as the read-your-writes cookie: by then every replica the
        // router still uses has replayed the write.
        let read_positions = ReadPositions::new(
            (config.database.max_replica_lag * 2).max(Duration::from_secs(10)),
            redis
                .as_ref()
                .map(|redis| (redis.conn.clone(), deployment_name(&config))),
        );
        let operations = Arc::new(crate::operations::Samples::new(
            config.http.operations_sample_every,
        ));
        let state = AppState::new(Inner {
            operations,
            peers: reqwest::Client::new(),
            services,
            rate_limits,
            read_positions,
            readiness: Readiness::new(db, redis, replicas),
            tier: config.tier(),
            cache: cache.describe(),
            max_replica_lag: config.database.max_replica_lag,
            http: config.http,
            knobs,
            instance_id,
            metrics,
            rendered_classes: Default::default(),
            draining: Default::default(),
        });
        let router = api::router(state.clone());
        Ok(Self {
            listener,
            address,
            metrics_listener,
            router,
            state,
            worker,
            _data_lock: data_lock,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where COOP_METRICS_LISTEN was bound, if it was set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
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
            metrics_listener,
            router,
            state,
            worker,
            ..
        } = self;
        let drain_delay = state.http.drain_delay;
        let shutdown_timeout = state.http.shutdown_timeout;
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);

        let draining_state = state.clone();
        let graceful = async move {
            shutdown.await;
            draining_state.start_draining();
            let _ = stopping_tx.send(true);
            tracing::info!(?drain_delay, "shutdown requested: draining");
            tokio::time::sleep(drain_delay).await;
        };
        state.services.spawn_housekeeping();
        let queue_metrics = {
            let state = state.clone();
            let mut stopping = stopping_rx.clone();
            tokio::spawn(async move {
                state
                    .services
                    .refresh_queue_metrics(QUEUE_METRICS_EVERY, async move {
                        let _ = stopping.wait_for(|stopping| *stopping).await;
                    })
                    .await
            })
        };
        // The operations page's history of this instance's own metrics.
        let sampler = {
            let state = state.clone();
            let mut stopping = stopping_rx.clone();
            tokio::spawn(async move {
                let read = || {
                    state.services.record_metrics();
                    state.metrics.run_upkeep();
                    state.metrics.render()
                };
                state
                    .operations
                    .run(read, async move {
                        let _ = stopping.wait_for(|stopping| *stopping).await;
                    })
                    .await
            })
        };
        // The private metrics listener lives as long as the main one, so the
        // drain can be watched; it has the same connection limits.
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = metrics_listener.map(|listener| {
            let router = Router::new()
                .route("/metrics", get(api::health::private_metrics))
                .fallback(crate::http::fallback::not_found)
                .with_state(state.clone());
            tokio::spawn(crate::http::serve::serve(
                listener,
                router,
                state.http.connection_limits(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        let worker = worker.map(|worker| {
            let mut stopping = stopping_rx.clone();
            tokio::spawn(worker.run(async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            }))
        });

        let limits = crate::http::serve::ConnectionLimits {
            park_idle: !state.knobs.keep_idle_buffers,
            ..state.http.connection_limits()
        };
        let server = crate::http::serve::serve(listener, router, limits, graceful);
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(drain_delay + shutdown_timeout).await;
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!(?shutdown_timeout, "in-flight requests did not finish in time"),
        }
        let _ = metrics_stop.send(());
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        let _ = queue_metrics.await;
        let _ = sampler.await;
        if let Some(worker) = worker {
            // It stopped claiming when shutdown began; let it finish or release.
            let _ = worker.await;
        }
        state.services.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Names the deployment in shared Redis keys, so two Coops that share a
/// Redis (or the tests, each with a database of its own) never share rate
/// limits: the database's host, port and name, without credentials.
fn deployment_name(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let (DatabaseUrl::Postgres(url) | DatabaseUrl::Sqlite(url)) = config.database.database();
    let place = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, place)| place);
    let digest = Sha256::digest(place.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Which cache tiers this configuration can keep coherent.
fn build_cache(config: &Config, db: &Db, redis: Option<&Redis>, knobs: &TestKnobs) -> Cache {
    let fill_delay = knobs.cache_fill_delay;
    match (config.cache.cache, db, redis) {
        (false, _, _) => Cache::disabled(),
        (true, _, Some(redis)) => Cache::shared(
            &config.cache,
            fill_delay,
            redis.client.clone(),
            redis.conn.clone(),
        ),
        (true, Db::Sqlite(..), None) => Cache::local(&config.cache, fill_delay),
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

/// `coop worker`: runs background jobs until `shutdown`, serving `/health` and
/// `/metrics` on COOP_WORKER_LISTEN for probes and scrapers.
pub async fn run_worker(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = prometheus_handle();
    let _data_lock = config.database.hold_data_lock()?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    // Jobs that delete cached rows (a co-op's deletion) tell the instances
    // through Redis; without COOP_REDIS_URL a worker cannot reach their
    // caches, and cached copies last until COOP_CACHE_TTL.
    // A worker does no other work with Redis, so one that cannot reach it
    // at start runs its jobs anyway, saying what it cannot do.
    let cache = match &config.redis.redis_url {
        Some(url) if config.cache.cache => match Redis::connect(url).await {
            Ok(redis) => Cache::shared(&config.cache, Duration::ZERO, redis.client, redis.conn),
            Err(err) => {
                tracing::warn!(error = %err, "Redis unavailable: jobs that delete cached rows cannot invalidate them; cached copies end with COOP_CACHE_TTL");
                Cache::disabled()
            }
        },
        _ => Cache::disabled(),
    };
    let objects = Objects::new(
        &config.objects,
        &config.database.data_dir,
        config.providers.breaker(),
    )?;
    // Links in emails point at the HTTP instances, which share this configuration.
    let effects = Arc::new(
        Effects::new(
            &config.providers,
            &config.accounts,
            &config.database.data_dir,
            db.clone(),
            objects,
            config.http.listen,
        )?
        .with_cache(cache),
    );
    let listener = TcpListener::bind(config.jobs.worker_listen)
        .await
        .with_context(|| {
            format!(
                "could not listen on {} (COOP_WORKER_LISTEN)",
                config.jobs.worker_listen
            )
        })?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        concurrency = config.jobs.worker_concurrency,
        mail = %effects.mailer.describe(),
        "Coop worker is running; health and metrics on http://{address}/"
    );
    // The operations page's history of this worker's metrics (its breakers).
    let operations = Arc::new(crate::operations::Samples::new(
        config.http.operations_sample_every,
    ));
    let probes = worker_probes(
        db.clone(),
        metrics.clone(),
        config.http.metrics_token.clone(),
        (operations.clone(), format!("worker {address}")),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let read = || {
                metrics.run_upkeep();
                metrics.render()
            };
            operations
                .run(read, async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    };
    let server = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        axum::serve(listener, probes)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let worker_config = WorkerConfig::new(&config.jobs, config.http.shutdown_timeout);
    Worker::new(db.clone(), effects, worker_config)
        .run(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = sampler.await;
    db.close().await;
    Ok(())
}

/// The worker's listener is private like COOP_METRICS_LISTEN: its `/metrics`
/// is open unless COOP_METRICS_TOKEN is set. A scrape reads the queue's depth
/// from the database: `coop cluster` scales workers on it and wants it fresh,
/// and the listener is not public. `/samples` (the same token)
/// gives the operations page this worker's last hour.
fn worker_probes(
    db: Db,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    token: Option<MetricsToken>,
    (operations, name): (Arc<crate::operations::Samples>, String),
) -> Router {
    let protected = Router::new()
        .route(
            "/samples",
            get(move || async move {
                axum::Json(crate::operations::SamplesResponse {
                    instance: name,
                    every_seconds: operations.every().as_secs_f64(),
                    samples: operations.snapshot(),
                })
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                record_queue_metrics(&db).await;
                db.record_pool_metrics();
                metrics.run_upkeep();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }),
        )
        // One check for both: the token when COOP_METRICS_TOKEN is set.
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    if token.is_some_and(|token| !token.admits(request.headers())) {
                        return crate::http::scrape::token_required();
                    }
                    next.run(request).await
                }
            },
        ));
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok", "role": "worker" })) }),
        )
        .merge(protected)
}

/// `coop migrate`: applies pending migrations and exits.
pub async fn migrate(config: &Config) -> anyhow::Result<&'static str> {
    let _data_lock = config.database.hold_data_lock()?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    let backend = db.backend();
    db.close().await;
    Ok(backend)
}

/// `coop operators add EMAIL`: adds a platform operator (or finds the
/// existing one), applying migrations first like `coop migrate`, and returns
/// the one-time link that sets their password (`COOP_PUBLIC_URL`, else
/// `http://COOP_LISTEN`, + `/reset-password#token=…`).
pub async fn add_operator(config: &Config, email: &str) -> anyhow::Result<String> {
    let email = coop_domain::Email::parse(email)
        .map_err(|err| anyhow::anyhow!("{email:?} is not an email address: {err}"))?;
    let _data_lock = config.database.hold_data_lock()?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    let added = coop_services::operators::add(&db, &email).await;
    db.close().await;
    let token = added.map_err(|err| anyhow::anyhow!("{err}"))?;
    let base = config
        .accounts
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.http.listen));
    Ok(format!("{base}/reset-password#token={token}"))
}
