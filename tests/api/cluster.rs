//! `coop cluster`: nginx, instances and workers as real processes, driven
//! through nginx as a client would, and through `coop cluster status|restart`.
//! PostgreSQL tier only: the cluster refuses the embedded tier (tested).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::support::{Endpoint, METRICS_TOKEN, TestDatabase, client, free_port, redis_url};

struct TestCluster {
    endpoint: Endpoint,
    control: String,
    child: Child,
    db: TestDatabase,
    dir: tempfile::TempDir,
}

impl TestCluster {
    async fn start(instances: u32, extra: &[&str]) -> Self {
        Self::start_with(instances, extra, &[]).await
    }

    /// `start`, with environment variables for every process (they override
    /// the short timeouts set here).
    async fn start_with(instances: u32, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let listen = format!("127.0.0.1:{}", free_port());
        let control = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("cluster.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_coop"))
            .args(["cluster", "--listen", &listen, "--control", &control])
            .args(["--instances", &instances.to_string(), "--workers", "1"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--database-url", &db.url, "--redis-url", &redis_url()])
            .args(extra)
            .env("RUST_LOG", "info,sqlx=warn")
            // A POST cut off by a SIGKILL holds its Idempotency-Key until its
            // lease ends; short ones keep the test short.
            .env("COOP_REQUEST_TIMEOUT", "3s")
            .env("COOP_IDEMPOTENCY_LEASE", "5s")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start coop cluster");
        let cluster = Self {
            endpoint: Endpoint {
                address: format!("http://{listen}"),
                http: client(),
            },
            control: format!("http://{control}"),
            child,
            db,
            dir,
        };
        cluster
            .wait_for(
                "the instances to be running",
                Duration::from_secs(60),
                |s| running(s, "instances").len() == instances as usize,
            )
            .await;
        cluster
            .endpoint
            .wait_until_ok("/ready", "nginx → coop")
            .await;
        cluster
    }

    /// The cluster's token, from its folder (as `coop cluster status` reads it).
    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state").join("control.token"))
            .unwrap_or_default()
    }

    async fn status(&self) -> Option<Value> {
        let response = client()
            .get(format!("{}/status", self.control))
            .bearer_auth(self.token())
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Polls the status until `done` holds; fails with the cluster's log.
    async fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(status) = self.status().await
                && done(&status)
            {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "timed out after {within:?} waiting for {what}; status: {}\ncluster log:\n{}",
                self.status().await.unwrap_or(Value::Null),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("cluster.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db.url).await.expect("connect")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // SIGTERM: nginx, instances and workers stop in order; they also get
        // SIGTERM from the kernel if the cluster itself dies.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running(status: &Value, pool: &str) -> Vec<Value> {
    status[pool]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "running")
        .cloned()
        .collect()
}

fn pids(status: &Value, pool: &str) -> Vec<u64> {
    running(status, pool)
        .iter()
        .filter_map(|m| m["pid"].as_u64())
        .collect()
}

/// What a steady load saw: failed requests (with what went wrong), and for
/// each POST's Idempotency-Key the final answer.
#[derive(Default)]
struct LoadReport {
    gets: u64,
    get_failures: Vec<String>,
    /// GETs sent again because nginx closed an idle keep-alive connection
    /// just as the request went out (see `closed_before_response`).
    get_retries_on_closed_connection: u64,
    posts: HashMap<String, (StatusCode, String)>,
    post_retries_409: u64,
    post_retries_transport: u64,
}

impl LoadReport {
    fn assert_no_failed_gets(&self) {
        assert!(
            self.get_failures.is_empty(),
            "{} of {} GETs failed, the first ones: {:?}",
            self.get_failures.len(),
            self.gets,
            &self.get_failures[..self.get_failures.len().min(10)]
        );
    }
}

/// True for the one transport failure HTTP lets a client retry an idempotent
/// request on (RFC 9112 §9.3.1): the server closed a kept-alive connection
/// before sending any response. nginx closes its idle client connections on
/// every reload, and a request can cross that close on the wire: the client
/// then sees the connection end (hyper: "incomplete message") or, when the
/// request reached a socket already being closed, a reset. Browsers and Go's
/// HTTP client retry these silently; reqwest does not, so the load generator
/// does, once, and counts it. Anything else (a refused connection, an error
/// after the response began, a 5xx) is a failure.
fn closed_before_response(err: &reqwest::Error) -> bool {
    // `is_request`: the failure came while sending, before a response head.
    if !err.is_request() {
        return false;
    }
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionReset;
        }
        source = e.source();
    }
    false
}

/// GETs of one family from `readers` tasks and enrollments with an
/// Idempotency-Key from `writers` tasks, through nginx, until `stop`. A 409
/// "in progress" is retried with the same key after its Retry-After, as a
/// client should; any other non-2xx answer or transport error is a failure.
async fn steady_load(
    endpoint: &Endpoint,
    session: &str,
    family_id: &str,
    readers: usize,
    writers: usize,
    pause: Duration,
    stop: watch::Receiver<bool>,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let (http, base, session, path, stop, report) = (
            endpoint.http.clone(),
            endpoint.address.clone(),
            session.to_owned(),
            format!("/api/v1/families/{family_id}"),
            stop.clone(),
            report.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !*stop.borrow() {
                let get = || {
                    http.get(format!("{base}{path}"))
                        .header("cookie", format!("coop_session={session}"))
                        .send()
                };
                let mut answer = get().await;
                let retried = matches!(&answer, Err(e) if closed_before_response(e));
                if retried {
                    answer = get().await;
                }
                {
                    let mut report = report.lock().unwrap();
                    report.gets += 1;
                    report.get_retries_on_closed_connection += u64::from(retried);
                    match answer {
                        Ok(r) if r.status() == StatusCode::OK => {}
                        Ok(r) => report.get_failures.push(format!("status {}", r.status())),
                        Err(e) => report.get_failures.push(format!("transport: {e:?}")),
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for writer in 0..writers {
        let (http, base, session, stop, report) = (
            endpoint.http.clone(),
            endpoint.address.clone(),
            session.to_owned(),
            stop.clone(),
            report.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !*stop.borrow() {
                n += 1;
                let key = format!("load-{writer}-{n}-{}", Uuid::new_v4().simple());
                let body = json!({"family_name": key, "email": format!("{key}@example.org")});
                let deadline = Instant::now() + Duration::from_secs(30);
                let outcome = loop {
                    let answer = http
                        .post(format!("{base}/api/v1/families"))
                        .header("cookie", format!("coop_session={session}"))
                        .header("idempotency-key", &key)
                        .json(&body)
                        .send()
                        .await;
                    match answer {
                        Ok(r)
                            if r.status() == StatusCode::CONFLICT && Instant::now() < deadline =>
                        {
                            let text = r.text().await.unwrap_or_default();
                            assert!(text.contains("request_in_progress"), "409: {text}");
                            report.lock().unwrap().post_retries_409 += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Ok(r) => {
                            let status = r.status();
                            break (status, r.text().await.unwrap_or_default());
                        }
                        // The key makes a resend safe whatever happened to the first.
                        Err(e) if closed_before_response(&e) && Instant::now() < deadline => {
                            report.lock().unwrap().post_retries_transport += 1;
                        }
                        Err(e) => break (StatusCode::IM_A_TEAPOT, format!("transport: {e:?}")),
                    }
                };
                report.lock().unwrap().posts.insert(key, outcome);
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
    Arc::try_unwrap(report)
        .ok()
        .expect("tasks done")
        .into_inner()
        .unwrap()
}

/// A `steady_load` running in the background through the cluster's nginx.
struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    fn start(
        cluster: &TestCluster,
        session: &str,
        family_id: &str,
        readers: usize,
        writers: usize,
        pause: Duration,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let endpoint = Endpoint {
            address: cluster.endpoint.address.clone(),
            http: client(),
        };
        let (session, family_id) = (session.to_owned(), family_id.to_owned());
        let task = tokio::spawn(async move {
            steady_load(
                &endpoint, &session, &family_id, readers, writers, pause, stop_rx,
            )
            .await
        });
        Self { stop, task }
    }

    async fn stop(self) -> LoadReport {
        self.stop.send(true).unwrap();
        self.task.await.expect("load task")
    }
}

/// Checks that every POST ended 201 and made exactly one family.
async fn assert_posts_exactly_once(cluster: &TestCluster, report: &LoadReport) {
    let failed: Vec<_> = report
        .posts
        .iter()
        .filter(|(_, (status, _))| *status != StatusCode::CREATED)
        .collect();
    assert!(failed.is_empty(), "POSTs that did not end 201: {failed:?}");
    let pool = cluster.pool().await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT family_name, count(*) FROM families WHERE family_name LIKE 'load-%' GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let duplicated: Vec<_> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        duplicated.is_empty(),
        "families created more than once: {duplicated:?}"
    );
    assert_eq!(
        rows.len(),
        report.posts.len(),
        "a POST answered 201 made no family"
    );
    pool.close().await;
}

async fn coordinator_and_family(cluster: &TestCluster) -> (String, String) {
    let coordinator = cluster.endpoint.coordinator().await;
    let family = cluster
        .endpoint
        .family(&coordinator.session, "Steady Family")
        .await;
    (
        coordinator.session,
        family["family_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_under_load_fails_no_request_and_loses_no_post() {
    let cluster = TestCluster::start(3, &["--no-autoscale"]).await;
    let (session, family_id) = coordinator_and_family(&cluster).await;
    let load = Load::start(&cluster, &session, &family_id, 8, 4, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = cluster.status().await.expect("status");
    let victim = pids(&before, "instances")[1];
    let killed = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The supervisor notices and starts a replacement; the load goes on.
    let after = cluster
        .wait_for("a replacement instance", Duration::from_secs(30), |s| {
            let now = pids(s, "instances");
            now.len() == 3 && !now.contains(&victim)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    assert!(report.gets > 200, "the load made only {} GETs", report.gets);
    report.assert_no_failed_gets();
    assert!(report.posts.len() > 20, "only {} POSTs", report.posts.len());
    assert_posts_exactly_once(&cluster, &report).await;
    eprintln!(
        "killed instance pid {victim}: {} GETs, 0 failed; {} POSTs exactly once ({} resent after a 409, {} after a closed connection); {} GETs resent after a closed connection; instances now {:?}",
        report.gets,
        report.posts.len(),
        report.post_retries_409,
        report.post_retries_transport,
        report.get_retries_on_closed_connection,
        pids(&after, "instances")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_request() {
    let cluster = TestCluster::start(3, &["--no-autoscale"]).await;
    let (session, family_id) = coordinator_and_family(&cluster).await;
    let before = cluster.status().await.expect("status");
    let load = Load::start(&cluster, &session, &family_id, 8, 2, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The control API answers nobody without the cluster's token: a local
    // process or a web page in a browser on this host cannot restart it.
    let forged = client()
        .post(format!("{}/restart", cluster.control))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    let peek = client()
        .get(format!("{}/status", cluster.control))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Black-box: the operator's command, against the running cluster.
    let restart = tokio::process::Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["cluster", "restart", "--control"])
        .arg(cluster.control.trim_start_matches("http://"))
        .arg("--state-dir")
        .arg(cluster.dir.path().join("state"))
        .output()
        .await
        .unwrap();
    assert!(
        restart.status.success(),
        "coop cluster restart failed: {}\n{}",
        String::from_utf8_lossy(&restart.stderr),
        cluster.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.stop().await;

    let after = cluster.status().await.expect("status");
    let (old, new) = (pids(&before, "instances"), pids(&after, "instances"));
    assert_eq!(new.len(), 3, "{after}");
    assert!(
        new.iter().all(|pid| !old.contains(pid)),
        "not every instance was replaced: {old:?} → {new:?}"
    );
    assert!(
        pids(&after, "workers") != pids(&before, "workers"),
        "the worker was not replaced"
    );
    report.assert_no_failed_gets();
    assert_posts_exactly_once(&cluster, &report).await;
    eprintln!(
        "rolling restart: {}; {} GETs and {} POSTs, none failed; resent after nginx closed an idle connection: {} GETs, {} POSTs",
        String::from_utf8_lossy(&restart.stdout).trim(),
        report.gets,
        report.posts.len(),
        report.get_retries_on_closed_connection,
        report.post_retries_transport
    );

    // `coop cluster status` prints the table an operator reads.
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["cluster", "status", "--control"])
        .arg(cluster.control.trim_start_matches("http://"))
        .arg("--state-dir")
        .arg(cluster.dir.path().join("state"))
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{table}");
    assert!(
        table.contains("instances:") && table.contains("running"),
        "{table}"
    );
    assert!(table.contains(&new[0].to_string()), "{table}");

    // nginx keeps the content-hashed stylesheet like an edge cache: the second
    // request for the same encoding is answered from its cache.
    let home = client()
        .get(&cluster.endpoint.address)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let css = home
        .split('"')
        .find(|s| s.starts_with("/static/coop.") && s.ends_with(".css"))
        .unwrap_or_else(|| panic!("no hashed stylesheet linked from {home}"))
        .to_owned();
    let fetch = || {
        client()
            .get(format!("{}{css}", cluster.endpoint.address))
            .header("accept-encoding", "br")
            .send()
    };
    let first = fetch().await.unwrap();
    let second = fetch().await.unwrap();
    for response in [&first, &second] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-encoding"], "br");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    assert_eq!(
        second.headers()["x-cache-status"],
        "HIT",
        "{:?}",
        second.headers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rising_load_adds_an_instance_and_falling_load_drains_one() {
    // Each instance gets a tenth of a CPU, so a modest load saturates one.
    let cluster = TestCluster::start_with(
        1,
        &[
            "--instance-cpu",
            "0.1",
            "--instances-min",
            "1",
            "--instances-max",
            "2",
            "--target-cpu",
            "50%",
            "--scale-interval",
            "1s",
            "--scale-up-cooldown",
            "2s",
            "--scale-down-stabilisation",
            "6s",
        ],
        &[("COOP_METRICS_TOKEN", METRICS_TOKEN)],
    )
    .await;
    let (session, family_id) = coordinator_and_family(&cluster).await;

    let heavy = Load::start(&cluster, &session, &family_id, 16, 0, Duration::ZERO);
    let scaled_up = cluster
        .wait_for(
            "a second instance under load",
            Duration::from_secs(60),
            |s| running(s, "instances").len() == 2,
        )
        .await;
    let heavy = heavy.stop().await;
    heavy.assert_no_failed_gets();

    // A trickle of reads goes on while the scaler drains the extra instance.
    let light = Load::start(
        &cluster,
        &session,
        &family_id,
        1,
        0,
        Duration::from_millis(50),
    );
    let scaled_down = cluster
        .wait_for(
            "the extra instance to be drained",
            Duration::from_secs(90),
            |s| s["instances"].as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let light = light.stop().await;
    light.assert_no_failed_gets();

    let decisions = scaled_down["decisions"].as_array().unwrap();
    let serve: Vec<&Value> = decisions.iter().filter(|d| d["pool"] == "serve").collect();
    assert!(
        serve.iter().any(|d| d["current"] == 2 && d["desired"] == 1),
        "no scale-down decision among {serve:?}"
    );
    let up = scaled_up["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pool"] == "serve" && d["current"] == 1 && d["desired"] == 2)
        .cloned();
    eprintln!(
        "scaled up on {}; scaled down after {} light GETs, none failed",
        up.unwrap_or(Value::Null),
        light.gets
    );
    // The cluster's own metrics export the decisions.
    let metrics = client()
        .get(format!("{}/metrics", cluster.control))
        .bearer_auth(cluster.token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("autoscaler_decisions_total"), "{metrics}");
    assert!(cluster.state_dir().join("nginx.conf").exists());

    // The members' /metrics ask for the operator's token (the scaler above
    // could read them: it sends it), and nginx never passes /metrics on,
    // token or not.
    let bearer = format!("Bearer {METRICS_TOKEN}");
    let public = cluster
        .endpoint
        .get("/metrics")
        .header("authorization", &bearer)
        .send()
        .await;
    assert_eq!(public.status, StatusCode::NOT_FOUND, "{}", public.text);
    assert_eq!(public.error_code(), "not_found");
    let status = cluster.status().await.expect("status");
    let member = Endpoint {
        address: format!(
            "http://{}",
            running(&status, "instances")[0]["address"]
                .as_str()
                .unwrap()
        ),
        http: client(),
    };
    assert_eq!(
        member.get("/metrics").send().await.status,
        StatusCode::NOT_FOUND
    );
    assert!(member.metrics().await.contains("http_requests_total"));
}

#[test]
fn the_embedded_tier_is_refused_with_a_message_that_says_what_to_set() {
    let output = Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["cluster", "--state-dir"])
        .arg(std::env::temp_dir().join(format!("coop-refused-{}", Uuid::new_v4())))
        .env_remove("COOP_DATABASE_URL")
        .env_remove("COOP_REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("distributed tier"), "{stderr}");
    assert!(stderr.contains("COOP_DATABASE_URL=postgres://"), "{stderr}");
}

#[test]
fn a_missing_nginx_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["cluster", "--nginx", "/nonexistent/nginx"])
        .args([
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ])
        .args(["--redis-url", "redis://127.0.0.1:6379"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("COOP_NGINX is /nonexistent/nginx"),
        "{stderr}"
    );
}

/// Enrollment day through nginx and three instances on PostgreSQL: 200
/// children race for 12 seats (see `courses::enrollment_rush`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_enrollments_through_three_instances_behind_nginx_never_overbook() {
    // All 200 wait for one class's row lock in turn: on a busy 2-core machine
    // the last can take seconds, which is not what this test is about.
    let cluster = TestCluster::start_with(
        3,
        &["--no-autoscale"],
        &[
            ("COOP_REQUEST_TIMEOUT", "30s"),
            ("COOP_IDEMPOTENCY_LEASE", "35s"),
        ],
    )
    .await;
    let raw = crate::support::RawDb::postgres(&cluster.db.url).await;
    crate::courses::enrollment_rush(&[&cluster.endpoint], &raw).await;
}

/// The log lines of `file` in the cluster's logs folder that mention `text`.
fn log_lines_with(cluster: &TestCluster, file: &str, text: &str) -> Vec<String> {
    std::fs::read_to_string(cluster.state_dir().join("logs").join(file))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_owned)
        .collect()
}

/// Every log file of the cluster's members whose name starts with `prefix`,
/// searched for `text`.
fn member_log_lines_with(cluster: &TestCluster, prefix: &str, text: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cluster.state_dir().join("logs")) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            lines.extend(log_lines_with(cluster, &name, text));
        }
    }
    lines
}

/// One trace id from nginx through the instance to the worker: a sign-up
/// through nginx queues the founder's confirmation email; nginx's access log,
/// the instance's log and the worker's log (the job's lines) all carry the
/// trace id of the client's `traceparent`. Without one, nginx starts the
/// trace, and its id is the one Coop answers with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_runs_from_nginx_through_the_instance_to_the_worker() {
    let sink = crate::support::fakes::smtp_sink::SmtpSink::start().await;
    let cluster = TestCluster::start_with(
        1,
        &["--no-autoscale", "--access-log"],
        &[("COOP_SMTP_URL", sink.url())],
    )
    .await;
    let trace_id = Uuid::new_v4().simple().to_string();
    let email = format!("traced-{}@example.org", Uuid::new_v4().simple());
    let answer = client()
        .post(format!("{}/api/v1/coops", cluster.endpoint.address))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"name": "Traced Co-op", "coordinator": {"name": "Tracy", "email": email, "password": crate::support::PASSWORD}}))
        .send()
        .await
        .expect("sign-up through nginx");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let answered = answer.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        answered.starts_with(&format!("00-{trace_id}-")),
        "answered {answered}"
    );
    assert_eq!(answer.headers()["coop-trace-id"], trace_id.as_str());
    // The worker sends the confirmation email: the job ran.
    sink.take_mail_to(&email, Duration::from_secs(30)).await;

    let started = Instant::now();
    loop {
        // nginx flushes its access log every second.
        let nginx = log_lines_with(&cluster, "nginx-access.log", &format!("trace={trace_id}"));
        let instance = member_log_lines_with(&cluster, "instance-", &trace_id);
        let worker = member_log_lines_with(&cluster, "worker-", &trace_id);
        let found = !nginx.is_empty()
            && instance.iter().any(|l| l.contains("request finished"))
            && worker.iter().any(|l| l.contains("job ran"));
        if found {
            assert!(nginx[0].contains("POST /api/v1/coops"), "{nginx:?}");
            // No personal data in the instance's lines of the request.
            assert!(instance.iter().all(|l| !l.contains(&email)), "{instance:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "trace {trace_id} not in every log: nginx {nginx:?}, instance {instance:?}, worker {worker:?}\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // No traceparent from the client: nginx starts the trace.
    let answer = client()
        .get(format!("{}/health", cluster.endpoint.address))
        .send()
        .await
        .expect("health through nginx");
    let answered = answer.headers()["coop-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(answered.len(), 32);
    let started = Instant::now();
    while log_lines_with(&cluster, "nginx-access.log", &format!("trace={answered}")).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx's own trace {answered} is not in its access log"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operations page of a `coop cluster` instance, reached through nginx,
/// draws every instance (it learns them from the control API) and lists the
/// auto-scaler's decisions with their inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operations_page_draws_every_instance_and_the_scalers_decisions() {
    let cluster = TestCluster::start_with(
        2,
        &[],
        &[
            ("COOP_SCALE_INTERVAL", "1s"),
            ("COOP_OPERATIONS_SAMPLE_EVERY", "1s"),
        ],
    )
    .await;
    let email = format!("ops-{}@example.org", Uuid::new_v4().simple());
    let added = tokio::process::Command::new(env!("CARGO_BIN_EXE_coop"))
        .args([
            "operators",
            "add",
            "--database-url",
            &cluster.db.url,
            &email,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("coop operators add");
    let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(
        added.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let token = stdout
        .split("#token=")
        .nth(1)
        .expect("a link")
        .trim()
        .to_owned();
    let set = cluster
        .endpoint
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "an operator's password"}),
        )
        .send()
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    let login = cluster
        .endpoint
        .login(&email, "an operator's password")
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let session = login.session_token();

    let started = Instant::now();
    loop {
        // Through nginx, so either instance answers: each draws both.
        let page = cluster
            .endpoint
            .get("/operations/charts")
            .session(&session)
            .send()
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let both = page.text.contains("instance-1") && page.text.contains("instance-2");
        // The worker's samples too (its breakers), from its private listener.
        let worker = page.text.contains("worker 127.0.0.1:");
        // A decision of the instances' pool (`serve`), with its inputs (signal, value,
        // target).
        let decided = page.text.contains("Auto-scaler decisions")
            && page.text.contains("<td>serve</td>")
            && page.text.contains("(target");
        if both && worker && decided && !page.text.contains("did not answer") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the operations page did not show both instances, the worker and the scaler's decisions:\n{}\n{}",
            page.text,
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Documents through nginx in front of two instances, on one bucket of a
/// real S3 server (SeaweedFS): uploads land on both instances, and each
/// instance serves every document, whichever instance stored it (no
/// instance keeps a file of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_serve_each_others_uploads() {
    use crate::documents::{get_bytes, pdf, share_with_coop};
    use crate::support::seaweed::Seaweed;

    let weed = Seaweed::start().await;
    let bucket = weed.bucket().await;
    // The object store's settings, as the environment every process of the
    // cluster inherits.
    let settings = weed.app_env(&bucket);
    let mut env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    env.push(("COOP_METRICS_TOKEN", METRICS_TOKEN));
    let cluster = TestCluster::start_with(2, &[], &env).await;
    let coordinator = cluster.endpoint.coordinator().await;

    let mut documents = Vec::new();
    for n in 0..6u64 {
        let bytes = pdf(300 * 1024, n);
        let made = share_with_coop(
            &cluster.endpoint,
            &coordinator.session,
            &format!("handout-{n}.pdf"),
            bytes.clone(),
        )
        .await;
        documents.push((made["document_id"].as_str().unwrap().to_owned(), bytes));
    }

    let status = cluster.status().await.expect("status");
    let members: Vec<crate::support::Endpoint> = running(&status, "instances")
        .iter()
        .map(|instance| crate::support::Endpoint {
            address: format!("http://{}", instance["address"].as_str().unwrap()),
            http: client(),
        })
        .collect();
    assert_eq!(members.len(), 2);
    // nginx spread the uploads: each instance wrote bytes to the store.
    for member in &members {
        let metrics = member.metrics().await;
        let stored: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("object_store_bytes_total") && l.contains("direction=\"in\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            stored > 0.0,
            "instance {} stored no upload: nginx sent them all to the other",
            member.address
        );
    }
    // Every instance serves every document, bytes equal.
    for member in members.iter().chain([&cluster.endpoint]) {
        for (id, bytes) in &documents {
            let (status, _, body) = get_bytes(
                member,
                &coordinator.session,
                &format!("/api/v1/documents/{id}/content"),
                &[],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{id} from {}", member.address);
            assert!(
                body == *bytes,
                "{} served other bytes for {id}",
                member.address
            );
        }
    }
}
