//! A payment provider for tests: a real HTTP server on 127.0.0.1 with a
//! Stripe-like charges API, which a test can take down.
//!
//! `POST /charges` with `Idempotency-Key: <payment id>` and
//! `{"amount_cents": 1500, "currency": "usd", "description": "…", "reference": "…"}`:
//! - up, first time a key is seen: `201 {"id":"ch_N","status":"succeeded","amount_cents":1500}`,
//!   or, if the description contains "decline",
//!   `402 {"id":"ch_N","status":"failed","failure_reason":"card_declined"}`;
//! - up, a key seen before: the first answer again, status and body, with the
//!   header `Idempotent-Replayed: true`, and no new charge (like Stripe);
//! - down: `503 {"error":"unavailable"}`, and nothing recorded for the key;
//! - no key, or a body that is not such a charge: `400 {"error":"…"}`, nothing recorded.
//!
//! `POST /refunds` with `Idempotency-Key: <refund id>` and
//! `{"amount_cents": 1500, "currency": "usd", "charge_id": "ch_N", "reference": "<payment id>"}`
//! returns money the same way: `201 {"id":"re_N","status":"succeeded"}`, a
//! repeated key replays, down is 503.
//!
//! The provider itself never charges a key twice; what a test checks is that
//! the app reuses the key when it retries: one key per payment
//! (`charges_for(payment_id) == 1`) and no other keys (`charges()` equals the
//! number of payments).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    /// Everything below is changed under this one lock, so concurrent requests
    /// with the same key see one charge and one replay, never two charges.
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    /// Every request: when it arrived, and whether the provider was down.
    calls: Vec<(Instant, bool)>,
    /// Idempotency key → the first answer for it (status, body).
    answers: HashMap<String, (StatusCode, Value)>,
    /// Idempotency key → how many charges were created for it.
    created: HashMap<String, usize>,
    /// Charges created, for the `ch_N` ids.
    next_charge: usize,
    /// Refunds made: (idempotency key, amount in cents).
    refunds: Vec<(String, i64)>,
}

pub struct PaymentProvider {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl PaymentProvider {
    /// A provider, up, on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the payment provider to 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/charges", post(charge))
            .route("/refunds", post(refund))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("payment provider");
        });
        Self { url, shared, task }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), for `COOP_PAYMENTS_URL`.
    /// Borrowed, so it drops into `&str` argument lists; `&provider.url()` works too.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// While down, every call is answered `503` and charges nothing.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Every request received, whatever its answer.
    pub fn calls(&self) -> usize {
        self.ledger().calls.len()
    }

    pub fn calls_while_down(&self) -> usize {
        self.ledger().calls.iter().filter(|(_, down)| *down).count()
    }

    /// Distinct idempotency keys charged (succeeded or declined).
    pub fn charges(&self) -> usize {
        self.ledger().answers.len()
    }

    /// How many times a charge was created for `key` (0 or 1: a repeated key
    /// replays the first answer).
    pub fn charges_for(&self, key: &str) -> usize {
        self.ledger().created.get(key).copied().unwrap_or(0)
    }

    /// When each request arrived and whether the provider was down then, in
    /// arrival order: for checking retry back-off and circuit-breaker timing.
    pub fn call_times(&self) -> Vec<(Instant, bool)> {
        self.ledger().calls.clone()
    }

    /// Refunds made, once per key: (refund id, cents).
    pub fn refunds(&self) -> Vec<(String, i64)> {
        self.ledger().refunds.clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap()
    }
}

impl Drop for PaymentProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The body is taken as bytes, not `Json<…>`, so a malformed request still
// reaches the handler and is counted as a call.
async fn charge(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let down = shared.down.load(Ordering::SeqCst);
    let mut ledger = shared.ledger.lock().unwrap();
    ledger.calls.push((Instant::now(), down));
    if down {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "unavailable"}),
        );
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "the Idempotency-Key header is required"}),
        );
    };
    if let Some((status, body)) = ledger.answers.get(key) {
        let mut replay = answer(*status, body.clone());
        replay
            .headers_mut()
            .insert("idempotent-replayed", "true".parse().unwrap());
        return replay;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return answer(StatusCode::BAD_REQUEST, json!({"error": err.to_string()})),
    };
    let (Some(amount_cents), Some(_), Some(description), Some(_)) = (
        request["amount_cents"]
            .as_i64()
            .filter(|amount| *amount > 0),
        request["currency"].as_str(),
        request["description"].as_str(),
        request["reference"].as_str(),
    ) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected amount_cents (> 0), currency, description and reference"}),
        );
    };
    ledger.next_charge += 1;
    let id = format!("ch_{}", ledger.next_charge);
    let (status, body) = if description.contains("decline") {
        (
            StatusCode::PAYMENT_REQUIRED,
            json!({"id": id, "status": "failed", "failure_reason": "card_declined"}),
        )
    } else {
        (
            StatusCode::CREATED,
            json!({"id": id, "status": "succeeded", "amount_cents": amount_cents}),
        )
    };
    ledger
        .answers
        .insert(key.to_owned(), (status, body.clone()));
    *ledger.created.entry(key.to_owned()).or_default() += 1;
    answer(status, body)
}

async fn refund(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let down = shared.down.load(Ordering::SeqCst);
    let mut ledger = shared.ledger.lock().unwrap();
    ledger.calls.push((Instant::now(), down));
    if down {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "unavailable"}),
        );
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "the Idempotency-Key header is required"}),
        );
    };
    if let Some((status, body)) = ledger.answers.get(key) {
        return answer(*status, body.clone());
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(amount_cents), Some(_), Some(_)) = (
        request["amount_cents"]
            .as_i64()
            .filter(|amount| *amount > 0),
        request["currency"].as_str(),
        request["reference"].as_str(),
    ) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected amount_cents (> 0), currency and reference"}),
        );
    };
    let id = format!("re_{}", ledger.refunds.len() + 1);
    let body = json!({"id": id, "status": "succeeded", "amount_cents": amount_cents});
    ledger
        .answers
        .insert(key.to_owned(), (StatusCode::CREATED, body.clone()));
    ledger.refunds.push((key.to_owned(), amount_cents));
    answer(StatusCode::CREATED, body)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

#[tokio::test]
async fn payment_provider_charges_each_key_once_and_can_be_down() {
    let provider = PaymentProvider::start().await;
    let http = reqwest::Client::new();
    let charge = |key: &str, description: &str| {
        let mut request = http
            .post(format!("{}/charges", provider.url()))
            .json(&json!({
                "amount_cents": 1500,
                "currency": "usd",
                "description": description,
                "reference": "family-1",
            }));
        if !key.is_empty() {
            request = request.header("Idempotency-Key", key);
        }
        async move {
            let response = request.send().await.expect("provider answers");
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (status, replayed, response.json::<Value>().await.unwrap())
        }
    };

    let (status, replayed, first) = charge("pay-1", "Fall term").await;
    assert_eq!((status, replayed), (201, false));
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["amount_cents"], 1500);
    assert!(first["id"].as_str().unwrap().starts_with("ch_"));
    // A retry with the same key gets the same answer and creates nothing.
    assert_eq!(charge("pay-1", "Fall term").await, (201, true, first));
    assert_eq!(provider.charges_for("pay-1"), 1);

    let (status, _, declined) = charge("pay-2", "please decline").await;
    assert_eq!(status, 402);
    assert_eq!(declined["status"], "failed");
    assert_eq!(declined["failure_reason"], "card_declined");
    assert_eq!(
        charge("pay-2", "please decline").await,
        (402, true, declined)
    );

    provider.set_down(true);
    let (status, _, down) = charge("pay-3", "Spring term").await;
    assert_eq!((status, down), (503, json!({"error": "unavailable"})));
    assert_eq!(provider.charges_for("pay-3"), 0);
    provider.set_down(false);
    // Being down recorded nothing, so the retry is the first charge for the key.
    assert_eq!(charge("pay-3", "Spring term").await.0, 201);

    assert_eq!(charge("", "no key").await.0, 400);

    assert_eq!(provider.calls(), 7);
    assert_eq!(provider.calls_while_down(), 1);
    assert_eq!(provider.charges(), 3);
    assert_eq!(provider.charges_for("pay-3"), 1);
    let times = provider.call_times();
    assert_eq!(
        times.iter().map(|(_, down)| *down).collect::<Vec<_>>(),
        [false, false, false, false, true, false, false]
    );
    assert!(times.windows(2).all(|pair| pair[0].0 <= pair[1].0));
}
