//! `spawn_app`: starts Coop in-process on a random port with a fresh database
//! (a new SQLite file, or a new PostgreSQL database plus the shared Redis), the
//! same way `main` does, and offers typed request helpers.

use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use coop_web::config::Config;
use coop_web::knobs::TestKnobs;
use coop_web::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Sqlite,
    Postgres,
}

/// Where the shared services are: the machine's defaults or the COOP_TEST_* overrides.
pub fn postgres_admin_url() -> String {
    std::env::var("COOP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("COOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Fails loudly, naming the service, when PostgreSQL or Redis is not there: a
/// suite that skips what it cannot reach would report green and prove nothing.
async fn require_services() {
    let admin = postgres_admin_url();
    let pg = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&admin)).await;
    match pg {
        Ok(Ok(pool)) => pool.close().await,
        Ok(Err(e)) => panic!(
            "PostgreSQL is required for the PostgreSQL-tier tests but {admin} (COOP_TEST_DATABASE_URL) refused: {e}"
        ),
        Err(_) => {
            panic!("PostgreSQL at {admin} (COOP_TEST_DATABASE_URL) did not answer within 5 s")
        }
    }
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("COOP_TEST_REDIS_URL is not a Redis URL");
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "Redis is required for the PostgreSQL-tier tests but {url} (COOP_TEST_REDIS_URL) refused: {e}"
        ),
        Err(_) => panic!("Redis at {url} (COOP_TEST_REDIS_URL) did not answer within 5 s"),
    }
}

/// A fresh, uniquely named database; dropped when the last handle goes.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        require_services().await;
        let name = format!("coop_test_{}", Uuid::new_v4().simple());
        let admin = postgres_admin_url();
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&pool)
            .await
            .expect("create test database");
        pool.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async code; a small runtime of its own does the work.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(&sql).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// The storage an app (or several apps, or an app and its restart) runs on.
pub enum Backing {
    Sqlite(tempfile::TempDir),
    /// Command-line arguments given as they are (storage owned by the test).
    Args(Vec<String>),
    Postgres {
        db: TestDatabase,
        redis_url: String,
    },
}

impl Backing {
    pub async fn new(tier: Tier) -> std::sync::Arc<Self> {
        std::sync::Arc::new(match tier {
            Tier::Sqlite => Backing::Sqlite(tempfile::tempdir().expect("temp dir")),
            Tier::Postgres => Backing::Postgres {
                db: TestDatabase::create().await,
                redis_url: redis_url(),
            },
        })
    }

    /// Command-line arguments selecting this storage, as an operator would pass them.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backing::Sqlite(dir) => vec!["--data-dir".into(), dir.path().display().to_string()],
            Backing::Args(args) => args.clone(),
            Backing::Postgres { db, redis_url } => vec![
                "--database-url".into(),
                db.url.clone(),
                "--redis-url".into(),
                redis_url.clone(),
            ],
        }
    }
}

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    config: Config,
}

pub fn config_from(args: &[String]) -> Config {
    let argv = std::iter::once("coop".to_owned()).chain(args.iter().cloned());
    TestCli::try_parse_from(argv)
        .expect("valid test configuration")
        .config
}

/// Where requests go: an app's address and an HTTP client.
pub struct Endpoint {
    pub address: String,
    pub http: reqwest::Client,
}

pub struct TestApp {
    endpoint: Endpoint,
    /// Keeps the database (or data folder) alive as long as the app.
    _backing: std::sync::Arc<Backing>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(tier: Tier) -> TestApp {
    spawn_app_on(Backing::new(tier).await, &[]).await
}

/// Starts an app on existing storage (a second instance, or a restart), with
/// extra command-line arguments.
pub async fn spawn_app_on(backing: std::sync::Arc<Backing>, extra: &[&str]) -> TestApp {
    let mut args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(backing.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let (args, knobs) = split_knobs(args);
    let config = config_from(&args);
    let app = Application::build_with(config, knobs)
        .await
        .expect("application builds");
    let address = format!("http://{}", app.address());
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        endpoint: Endpoint {
            address,
            http: client(),
        },
        _backing: backing,
        stop: Some(stop),
        server: Some(server),
    }
}

/// Fault injection is not configuration (see `coop_web::knobs`): tests still
/// write it as flags (`--cache-fill-delay 400ms`, `--idempotency-save-delay
/// 3s`), taken out here and handed to the application as its test knobs.
fn split_knobs(args: Vec<String>) -> (Vec<String>, TestKnobs) {
    let mut knobs = TestKnobs::default();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut duration = || {
            let value = args.next().expect("a value after a knob flag");
            coop_runtime::values::parse_duration(&value).expect("a duration")
        };
        match arg.as_str() {
            "--cache-fill-delay" => knobs.cache_fill_delay = duration(),
            "--idempotency-save-delay" => knobs.idempotency_save_delay = duration(),
            _ => rest.push(arg),
        }
    }
    (rest, knobs)
}

/// Polls `check` every 50 ms until it gives `Some`, and returns that; fails
/// the test, naming `what`, after `within`. Tests wait for conditions, never
/// for fixed times.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "waited {within:?} for {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client")
        })
        .clone()
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
            .to_owned()
    }

    /// The session token from `Set-Cookie`.
    pub fn session_token(&self) -> String {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("coop_session="))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no coop_session cookie in {:?}", self.headers))
    }
}

/// A builder for one request to an app.
pub struct Req<'a> {
    app: &'a Endpoint,
    method: Method,
    path: String,
    session: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl<'a> Req<'a> {
    pub fn session(mut self, token: &str) -> Self {
        self.session = Some(token.to_owned());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(("application/json".into(), serde_json::to_vec(body).unwrap()));
        self
    }

    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut request = self
            .app
            .http
            .request(self.method, format!("{}{}", self.app.address, self.path));
        if let Some(token) = &self.session {
            request = request.header("cookie", format!("coop_session={token}"));
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some((content_type, body)) = self.body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request reaches the app");
        TestResponse {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("response body"),
        }
    }
}

/// A co-op with a logged-in coordinator.
pub struct Coordinator {
    pub coop_id: String,
    pub user_id: String,
    pub email: String,
    pub password: String,
    pub session: String,
}

pub const PASSWORD: &str = "correct horse battery";

impl Endpoint {
    /// Polls `path` until it answers 200; fails the test after 30 s.
    pub async fn wait_until_ok(&self, path: &str, what: &str) {
        let started = std::time::Instant::now();
        loop {
            let answer = self
                .http
                .get(format!("{}{path}", self.address))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what} did not answer 200 on {path} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.to_owned(),
            session: None,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }

    pub fn post(&self, path: &str, body: &Value) -> Req<'_> {
        self.req(Method::POST, path).json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> Req<'_> {
        self.req(Method::PUT, path).json(body)
    }

    pub fn delete(&self, path: &str) -> Req<'_> {
        self.req(Method::DELETE, path)
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .send()
        .await
    }

    /// Creates a co-op with a unique coordinator and logs in.
    pub async fn coordinator(&self) -> Coordinator {
        let email = format!("coord-{}@example.org", Uuid::new_v4().simple());
        let created = self
            .post(
                "/api/v1/coops",
                &json!({"name": "Riverside Co-op", "coordinator": {"name": "Ada Lovelace", "email": email, "password": PASSWORD}}),
            )
            .send()
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let login = self.login(&email, PASSWORD).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        Coordinator {
            coop_id: created.json()["coop_id"].as_str().unwrap().to_owned(),
            user_id: created.json()["coordinator_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            email,
            password: PASSWORD.to_owned(),
            session: login.session_token(),
        }
    }

    /// Enrolls a family and returns its JSON.
    pub async fn family(&self, session: &str, name: &str) -> Value {
        let email = format!("{}@example.org", Uuid::new_v4().simple());
        let created = self
            .post(
                "/api/v1/families",
                &json!({"family_name": name, "email": email}),
            )
            .session(session)
            .send()
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.json()
    }
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl TestApp {
    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs an `async fn(Tier)` test once per tier.
#[macro_export]
macro_rules! both_tiers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Tier::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Tier::Postgres).await
            }
        }
    )*};
}

/// Coop as a separate process (the real binary), for tests that need a
/// process of its own: its own metrics registry, or a kill.
pub struct ProcessApp {
    endpoint: Endpoint,
    child: std::process::Child,
    _backing: std::sync::Arc<Backing>,
}

pub async fn spawn_process(backing: std::sync::Arc<Backing>, env: &[(&str, &str)]) -> ProcessApp {
    let port = free_port();
    let child = coop_command("serve", &backing, ("COOP_LISTEN", port), env);
    let app = ProcessApp {
        endpoint: Endpoint {
            address: format!("http://127.0.0.1:{port}"),
            http: client(),
        },
        child,
        _backing: backing,
    };
    app.wait_until_ok("/ready", "coop serve").await;
    app
}

impl ProcessApp {
    /// The value of one Prometheus series (0 when absent), summed over series
    /// whose labels contain every `label="value"` pair given.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self.get("/metrics").send().await.text;
        parse_metric(&text, name, labels)
    }
}

impl std::ops::Deref for ProcessApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for ProcessApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Redis on a port of its own, so a test can stop and restart it.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = free_port();
        let mut redis = Self { child: None, port };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("private redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Backing {
    /// PostgreSQL with a Redis of the test's own.
    pub async fn postgres_with_redis(redis_url: String) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Backing::Postgres {
            db: TestDatabase::create().await,
            redis_url,
        })
    }
}

/// Starts `coop COMMAND` (the real binary) on `backing`, listening on
/// 127.0.0.1:`port` through the `listen` variable, quiet but for warnings.
fn coop_command(
    command: &str,
    backing: &Backing,
    (listen, port): (&str, u16),
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_coop"));
    process
        .arg(command)
        .args(backing.args())
        .env(listen, format!("127.0.0.1:{port}"))
        .env("COOP_LOG", "json")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (name, value) in env {
        process.env(name, value);
    }
    process
        .spawn()
        .unwrap_or_else(|e| panic!("start coop {command}: {e}"))
}

/// A `coop worker` process on the given storage.
pub struct WorkerProcess {
    child: std::process::Child,
    /// Serves the worker's `/health` and `/metrics`.
    pub probes: Endpoint,
}

pub async fn spawn_worker(backing: &Backing, env: &[(&str, &str)]) -> WorkerProcess {
    let port = free_port();
    let child = coop_command("worker", backing, ("COOP_WORKER_LISTEN", port), env);
    let worker = WorkerProcess {
        child,
        probes: Endpoint {
            address: format!("http://127.0.0.1:{port}"),
            http: client(),
        },
    };
    worker.probes.wait_until_ok("/health", "coop worker").await;
    worker
}

impl WorkerProcess {
    /// SIGKILL: the worker dies mid-job, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (None if it did not exit within `within`).
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// One Prometheus series from the worker (see `ProcessApp::metric`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self.probes.get("/metrics").send().await.text;
        parse_metric(&text, name, labels)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of the series of `name` whose labels contain every `label="value"`.
pub fn parse_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(name)
                && line[name.len()..].starts_with(['{', ' '])
                && labels.iter().all(|l| line.contains(l))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
