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

use super::services::{Backing, Tier};

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
    /// COOP_METRICS_LISTEN, when the test set `--metrics-listen`.
    pub metrics_listener: Option<Endpoint>,
    /// Keeps the database (or data folder) alive as long as the app.
    _backing: std::sync::Arc<Backing>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(tier: Tier) -> TestApp {
    spawn_app_on(Backing::new(tier).await, &[]).await
}

/// The metrics token every test app and process is given, so `/metrics` is
/// served to `Endpoint::metrics` (it answers 404 to a scraper without it).
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// Starts an app on existing storage (a second instance, or a restart), with
/// extra command-line arguments.
pub async fn spawn_app_on(backing: std::sync::Arc<Backing>, extra: &[&str]) -> TestApp {
    if extra.iter().any(|arg| arg.starts_with("--metrics-")) {
        return spawn_app_as_configured(backing, extra).await;
    }
    let mut with_token = vec!["--metrics-token", METRICS_TOKEN];
    with_token.extend(extra);
    spawn_app_as_configured(backing, &with_token).await
}

/// [`spawn_app_on`] without the test's metrics token: `/metrics` only as
/// `extra` says.
pub async fn spawn_app_as_configured(backing: std::sync::Arc<Backing>, extra: &[&str]) -> TestApp {
    let mut args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
    args.extend(backing.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let (args, knobs) = split_knobs(args);
    let config = config_from(&args);
    let app = Application::build_with(config, knobs)
        .await
        .expect("application builds");
    let address = format!("http://{}", app.address());
    let metrics_listener = app.metrics_address().map(|at| Endpoint {
        address: format!("http://{at}"),
        http: client(),
    });
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        endpoint: Endpoint {
            address,
            http: client(),
        },
        metrics_listener,
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
            // `__Host-coop_session` where cookies are Secure.
            .find_map(|c| {
                c.strip_prefix("coop_session=")
                    .or_else(|| c.strip_prefix("__Host-coop_session="))
            })
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

    /// The Prometheus text of `/metrics` (with the test token), which must
    /// answer 200.
    pub async fn metrics(&self) -> String {
        let answer = self
            .get("/metrics")
            .header("authorization", &format!("Bearer {METRICS_TOKEN}"))
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{:?}",
            answer.headers
        );
        answer.text
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

    /// Creates a co-op with a unique coordinator and logs in. The co-op is
    /// not confirmed: its emails to families wait (see
    /// [`Endpoint::verified_coordinator`]).
    pub async fn coordinator(&self) -> Coordinator {
        let email = format!("coord-{}@example.org", Uuid::new_v4().simple());
        let created = self
            .post(
                "/api/v1/coops",
                &json!({"name": "Riverside Co-op", "coordinator": {"name": "Ada Lovelace", "email": email, "password": PASSWORD}}),
            )
            .send()
            .await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
        let login = self.login(&email, PASSWORD).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        let user = &login.json()["user"];
        Coordinator {
            coop_id: user["coop_id"].as_str().unwrap().to_owned(),
            user_id: user["user_id"].as_str().unwrap().to_owned(),
            email,
            password: PASSWORD.to_owned(),
            session: login.session_token(),
        }
    }

    /// [`Endpoint::coordinator`], confirmed the way a founder does it: the
    /// link from the confirmation email that `sink` received (taken out of
    /// the sink, so the test's own counts of mail leave it out).
    pub async fn verified_coordinator(
        &self,
        sink: &super::fakes::smtp_sink::SmtpSink,
    ) -> Coordinator {
        let coordinator = self.coordinator().await;
        let mail = sink
            .take_mail_to(&coordinator.email, Duration::from_secs(20))
            .await;
        let token = mail.link_token("/verify-email#token=");
        let verified = self
            .post("/api/v1/auth/verify-email", &json!({ "token": token }))
            .send()
            .await;
        assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.text);
        coordinator
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

/// Every time the API shows is RFC 3339 in UTC (`…Z`).
pub fn assert_utc_time(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{what} {text:?} is not RFC 3339: {e}"));
    assert!(
        text.ends_with('Z') && parsed.offset().is_utc(),
        "{what} {text:?} is not in UTC"
    );
}
