//! Streaming replicas started by `scripts/pg-cluster.sh`: read routing,
//! read-your-writes by WAL position, and replica and primary outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backing, Coordinator, Endpoint, ProcessApp, redis_url, spawn_process};

/// A primary and replicas of the test's own, removed when dropped.
struct Cluster {
    dir: String,
    base_port: u16,
    replicas: usize,
    database: String,
}

impl Cluster {
    async fn start(replicas: usize) -> Self {
        let base_port = free_port_run(replicas as u16 + 1);
        let dir = format!("/tmp/coop-test-cluster-{}", uuid::Uuid::new_v4().simple());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
        let output = std::process::Command::new(script)
            .args(["start", &dir, &replicas.to_string(), &base_port.to_string()])
            .output()
            .expect("run scripts/pg-cluster.sh");
        assert!(
            output.status.success(),
            "scripts/pg-cluster.sh start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let database = format!("coop_{}", uuid::Uuid::new_v4().simple());
        let cluster = Self {
            dir,
            base_port,
            replicas,
            database,
        };
        let admin = sqlx::PgPool::connect(&cluster.url(base_port, "postgres"))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{}\"", cluster.database))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        // The new database reaches the replicas by streaming, like any write.
        for i in 1..=replicas {
            let url = cluster.url(base_port + i as u16, &cluster.database);
            let started = Instant::now();
            while sqlx::PgPool::connect(&url).await.is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "database never reached replica {i}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster
    }

    fn url(&self, port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    fn args(&self) -> Vec<String> {
        let replicas: Vec<String> = (1..=self.replicas)
            .map(|i| self.url(self.base_port + i as u16, &self.database))
            .collect();
        vec![
            "--database-url".into(),
            self.url(self.base_port, &self.database),
            "--replica-urls".into(),
            replicas.join(","),
            "--redis-url".into(),
            redis_url(),
        ]
    }

    fn node(&self, name: &str, action: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
        let status = std::process::Command::new(script)
            .args(["node", &self.dir, name, action])
            .status()
            .unwrap();
        assert!(status.success(), "{name} {action}");
    }

    /// Waits until every replica has replayed all the primary has written.
    async fn caught_up(&self) {
        let primary = sqlx::PgPool::connect(&self.url(self.base_port, "postgres"))
            .await
            .unwrap();
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&primary)
            .await
            .unwrap();
        primary.close().await;
        for i in 1..=self.replicas {
            let replica = sqlx::PgPool::connect(&self.url(self.base_port + i as u16, "postgres"))
                .await
                .unwrap();
            let started = Instant::now();
            loop {
                let replayed: bool =
                    sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                        .bind(&lsn)
                        .fetch_one(&replica)
                        .await
                        .unwrap();
                if replayed {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "replica {i} never replayed {lsn}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            replica.close().await;
        }
    }

    /// Runs SQL on replica `i` (e.g. to pause its replay).
    async fn on_replica(&self, i: usize, sql: &str) {
        let pool = sqlx::PgPool::connect(&self.url(self.base_port + i as u16, "postgres"))
            .await
            .unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
        let _ = std::process::Command::new(script)
            .args(["stop", &self.dir])
            .status();
    }
}

/// A base port with `count` free ports after it.
fn free_port_run(count: u16) -> u16 {
    loop {
        let base = crate::support::free_port();
        if base > 60000 {
            continue;
        }
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

async fn start_app(cluster: &Cluster, env: &[(&str, &str)]) -> ProcessApp {
    let app = spawn_process(Arc::new(Backing::Args(cluster.args())), env).await;
    // Wait for the monitor to put every replica into the read set.
    let started = Instant::now();
    loop {
        let ready = app.get("/ready").send().await.json();
        let replicas = ready["checks"]["replicas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if replicas.len() == cluster.replicas && replicas.values().all(|v| v == "ok") {
            return app;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replicas never joined: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A coordinator whose session every replica already has. Logging in answers
/// with a read-your-writes token, but these helpers do not send it back, so
/// the first request after logging in could read the session from a replica
/// that has not replayed it yet, and get a 401.
async fn coordinator(app: &ProcessApp, cluster: &Cluster) -> Coordinator {
    let c = app.coordinator().await;
    cluster.caught_up().await;
    c
}

async fn rename(
    app: &Endpoint,
    session: &str,
    family: &Value,
    name: &str,
) -> crate::support::TestResponse {
    app.put(
        &format!("/api/v1/families/{}", family["family_id"].as_str().unwrap()),
        &json!({"family_name": name, "email": family["email"]}),
    )
    .session(session)
    .send()
    .await
}

async fn read_name(
    app: &Endpoint,
    session: &str,
    family: &Value,
    read_after: Option<&str>,
) -> String {
    let mut req = app
        .get(&format!(
            "/api/v1/families/{}",
            family["family_id"].as_str().unwrap()
        ))
        .session(session);
    if let Some(lsn) = read_after {
        req = req.header("coop-read-after", lsn);
    }
    let response = req.send().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json()["family_name"].as_str().unwrap().to_owned()
}

/// Replay paused everywhere: the writer reads its write back (from the
/// primary); a client that did not write keeps reading the replicas.
async fn read_your_writes_while_replicas_lag(cache: &str) {
    let cluster = Cluster::start(2).await;
    let app = start_app(&cluster, &[("COOP_CACHE", cache)]).await;
    // A second instance, to read from where the write was not taken.
    let elsewhere = start_app(&cluster, &[("COOP_CACHE", cache)]).await;
    let c = coordinator(&app, &cluster).await;
    // A second session of another client, started before the write.
    let other = app.login(&c.email, &c.password).await.session_token();
    let family = app.family(&c.session, "Old").await;
    cluster.caught_up().await; // the replicas have replayed every write so far
    assert_eq!(read_name(&app, &c.session, &family, None).await, "Old");
    for i in 1..=2 {
        cluster.on_replica(i, "SELECT pg_wal_replay_pause()").await;
    }

    let replica_reads = app
        .metric("db_reads_total", &["endpoint=\"replica\""])
        .await;
    let fallbacks = app.metric("db_read_your_writes_fallbacks_total", &[]).await;
    let write = rename(&app, &c.session, &family, "New").await;
    assert_eq!(write.status, StatusCode::OK, "{}", write.text);
    let token = write
        .header("coop-read-after")
        .expect("a write returns its WAL position")
        .to_owned();
    assert!(
        write
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("coop_read_after="))
    );

    if cache == "off" {
        assert_eq!(
            read_name(&app, &c.session, &family, Some(&token)).await,
            "New",
            "the writer sees its write"
        );
        assert!(app.metric("db_read_your_writes_fallbacks_total", &[]).await > fallbacks);
        // The writer's session without the token (a client that ignores the
        // answer's cookies and headers) sees it too: the position is kept
        // with the session, where every instance finds it.
        assert_eq!(
            read_name(&app, &c.session, &family, None).await,
            "New",
            "the session holds read-your-writes"
        );
        assert_eq!(
            read_name(&elsewhere, &c.session, &family, None).await,
            "New",
            "on another instance too"
        );
        // Another client (its own session, no token) is served by a replica,
        // which still has the old row.
        assert_eq!(read_name(&app, &other, &family, None).await, "Old");
        assert!(
            app.metric("db_reads_total", &["endpoint=\"replica\""])
                .await
                > replica_reads
        );
    } else {
        // Another client misses the cache first: its fill must not come from a
        // replica that has not replayed the write (the invalidation carried the
        // write's WAL position), or everyone would read "Old" from the cache.
        assert_eq!(read_name(&app, &c.session, &family, None).await, "New");
        assert_eq!(
            read_name(&app, &c.session, &family, Some(&token)).await,
            "New",
            "the writer sees its write"
        );
    }

    for i in 1..=2 {
        cluster.on_replica(i, "SELECT pg_wal_replay_resume()").await;
    }
    let started = Instant::now();
    while read_name(&app, &c.session, &family, None).await != "New" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "replicas never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reads_its_write_while_replicas_lag() {
    read_your_writes_while_replicas_lag("off").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_not_filled_from_a_replica_behind_a_write() {
    read_your_writes_while_replicas_lag("on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_fails_no_read() {
    let cluster = Cluster::start(2).await;
    let app = start_app(&cluster, &[("COOP_CACHE", "off")]).await;
    let c = coordinator(&app, &cluster).await;
    let family = app.family(&c.session, "Steady").await;
    cluster.caught_up().await; // the replicas have replayed every write so far

    let mut failures = Vec::new();
    for i in 0..400 {
        if i == 100 {
            cluster.node("replica1", "stop");
        }
        let response = app
            .get(&format!(
                "/api/v1/families/{}",
                family["family_id"].as_str().unwrap()
            ))
            .session(&c.session)
            .send()
            .await;
        if response.status != StatusCode::OK {
            failures.push((i, response.status, response.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed reads, first: {:?}",
        failures.len(),
        failures.first()
    );
    let ready = app.get("/ready").send().await.json();
    assert_eq!(
        ready["checks"]["replicas"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| *v == "ok")
            .count(),
        1,
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_primary_writes_fail_fast_and_reads_go_on() {
    let cluster = Cluster::start(1).await;
    let app = start_app(&cluster, &[("COOP_CACHE", "off")]).await;
    let c = coordinator(&app, &cluster).await;
    let family = app.family(&c.session, "Before").await;
    cluster.caught_up().await; // the replicas have replayed every write so far

    cluster.node("primary", "stop");
    let started = Instant::now();
    let write = rename(&app, &c.session, &family, "During").await;
    assert_eq!(
        write.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        write.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(write.header("retry-after"), Some("1"));
    for _ in 0..20 {
        assert_eq!(read_name(&app, &c.session, &family, None).await, "Before");
    }
    let ready = app.get("/ready").send().await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert_eq!(app.metric("db_primary_up", &[]).await, 0.0);

    cluster.node("primary", "start");
    let started = Instant::now();
    loop {
        let write = rename(&app, &c.session, &family, "After").await;
        if write.status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writes never resumed: {}",
            write.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_the_read_set_and_returns() {
    let cluster = Cluster::start(2).await;
    let app = start_app(
        &cluster,
        &[("COOP_CACHE", "off"), ("COOP_MAX_REPLICA_LAG", "1s")],
    )
    .await;
    let c = coordinator(&app, &cluster).await;
    let family = app.family(&c.session, "v0").await;
    cluster.on_replica(1, "SELECT pg_wal_replay_pause()").await;

    let replica_state = async |app: &ProcessApp| {
        let ready = app.get("/ready").send().await.json();
        let replicas = ready["checks"]["replicas"].as_object().unwrap().clone();
        replicas
            .values()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    let mut step = 0;
    loop {
        step += 1;
        assert_eq!(
            rename(&app, &c.session, &family, &format!("v{step}"))
                .await
                .status,
            StatusCode::OK
        );
        if replica_state(&app)
            .await
            .iter()
            .filter(|s| *s == "ok")
            .count()
            == 1
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the paused replica stayed in the read set"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.on_replica(1, "SELECT pg_wal_replay_resume()").await;
    let started = Instant::now();
    while replica_state(&app).await.iter().any(|s| s != "ok") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replica never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once a replica has replayed a write, LSN routing sends the writer's reads
/// back to it; the "sticky" rule keeps them on the primary for the whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsn_routing_returns_the_writer_to_replicas_sooner_than_sticky() {
    let cluster = Cluster::start(1).await;
    for (mode, expect_replica) in [("lsn", true), ("sticky", false)] {
        let app = start_app(
            &cluster,
            &[("COOP_CACHE", "off"), ("COOP_READ_YOUR_WRITES", mode)],
        )
        .await;
        let c = coordinator(&app, &cluster).await;
        let family = app.family(&c.session, "A").await;
        let write = rename(&app, &c.session, &family, "B").await;
        let token = write.header("coop-read-after").unwrap().to_owned();
        cluster.caught_up().await; // the replicas have replayed every write so far
        let before = app
            .metric("db_reads_total", &["endpoint=\"replica\""])
            .await;
        assert_eq!(
            read_name(&app, &c.session, &family, Some(&token)).await,
            "B"
        );
        let served_by_replica = app
            .metric("db_reads_total", &["endpoint=\"replica\""])
            .await
            > before;
        assert_eq!(served_by_replica, expect_replica, "mode {mode}");
    }
}

/// A read right after a write: the monitor (every 75 ms) has rarely seen a
/// replica replay the write yet, though a streaming replica on the same
/// machine usually has within a millisecond. Coop asks the replica how far it
/// has replayed instead of sending the read to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_a_write_asks_the_replica_how_far_it_is() {
    const ROUNDS: usize = 40;
    let cluster = Cluster::start(2).await;
    let app = start_app(&cluster, &[("COOP_CACHE", "off")]).await;
    let c = coordinator(&app, &cluster).await;
    let family = app.family(&c.session, "v0").await;
    cluster.caught_up().await; // the replicas have replayed every write so far

    let replica_reads = app
        .metric("db_reads_total", &["endpoint=\"replica\""])
        .await;
    let fallbacks = app.metric("db_read_your_writes_fallbacks_total", &[]).await;
    for i in 1..=ROUNDS {
        let name = format!("v{i}");
        let write = rename(&app, &c.session, &family, &name).await;
        assert_eq!(write.status, StatusCode::OK, "{}", write.text);
        let token = write
            .header("coop-read-after")
            .expect("a write returns its WAL position")
            .to_owned();
        assert_eq!(
            read_name(&app, &c.session, &family, Some(&token)).await,
            name,
            "round {i}: the writer reads its write"
        );
    }

    // Each round reads the database three times: the PUT's session (no token,
    // so a replica), then the GET's session and family (with the token).
    let with_token = (2 * ROUNDS) as f64;
    let fallbacks = app.metric("db_read_your_writes_fallbacks_total", &[]).await - fallbacks;
    let on_replicas = app
        .metric("db_reads_total", &["endpoint=\"replica\""])
        .await
        - replica_reads
        - ROUNDS as f64;
    let mut checks = Vec::new();
    for outcome in ["caught_up", "shared", "behind", "failed"] {
        let label = format!("outcome=\"{outcome}\"");
        let n = app.metric("db_replay_checks_total", &[&label]).await as u64;
        checks.push(format!("{outcome} {n}"));
    }
    let summary = format!(
        "of {with_token} reads carrying a token, {on_replicas} went to replicas and \
         {fallbacks} fell back to the primary; replay checks: {}",
        checks.join(", ")
    );
    assert!(on_replicas > with_token / 2.0, "{summary}");
    assert!(fallbacks < with_token / 2.0, "{summary}");
    eprintln!("{summary}");
}
