//! A payment provider for tests: a real HTTP server with a Stripe-like charges
//! API (idempotency keys replay the first answer) that can be taken down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    calls: AtomicUsize,
    calls_while_down: AtomicUsize,
    /// Idempotency key → (status, answer) of its first charge.
    charges: Mutex<HashMap<String, (u16, Value)>>,
    /// Idempotency key → how many charges were created for it.
    created: Mutex<HashMap<String, usize>>,
}

pub struct PaymentProvider {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl PaymentProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/charges", post(charge))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// While down, every call gets `503` and charges nothing.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub fn calls_while_down(&self) -> usize {
        self.shared.calls_while_down.load(Ordering::SeqCst)
    }

    /// Distinct idempotency keys charged.
    pub fn charges(&self) -> usize {
        self.shared.charges.lock().unwrap().len()
    }

    /// Charges created for `key` (the provider's promise: at most one).
    pub fn charges_for(&self, key: &str) -> usize {
        self.shared
            .created
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for PaymentProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn charge(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        shared.calls_while_down.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "unavailable"})),
        );
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Idempotency-Key is required"})),
        );
    };
    let mut charges = shared.charges.lock().unwrap();
    if let Some((status, answer)) = charges.get(key) {
        return (StatusCode::from_u16(*status).unwrap(), Json(answer.clone()));
    }
    let id = format!("ch_{}", charges.len() + 1);
    let declined = body["description"]
        .as_str()
        .is_some_and(|d| d.contains("decline"));
    let (status, answer) = if declined {
        (
            402,
            json!({"id": id, "status": "failed", "failure_reason": "card_declined"}),
        )
    } else {
        (
            201,
            json!({"id": id, "status": "succeeded", "amount_cents": body["amount_cents"]}),
        )
    };
    charges.insert(key.to_owned(), (status, answer.clone()));
    *shared
        .created
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default() += 1;
    (StatusCode::from_u16(status).unwrap(), Json(answer))
}

#[tokio::test]
async fn repeats_of_a_key_replay_the_first_charge() {
    let provider = PaymentProvider::start().await;
    let http = reqwest::Client::new();
    let send = |key: &str, description: &str| {
        http.post(format!("{}/charges", provider.url()))
            .header("Idempotency-Key", key)
            .json(&json!({"amount_cents": 100, "description": description}))
            .send()
    };
    let first = send("k1", "fee").await.unwrap();
    assert_eq!(first.status(), 201);
    let again = send("k1", "fee").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(provider.charges_for("k1"), 1);
    assert_eq!(send("k2", "please decline").await.unwrap().status(), 402);
    provider.set_down(true);
    assert_eq!(send("k3", "fee").await.unwrap().status(), 503);
    assert_eq!(
        (
            provider.calls(),
            provider.calls_while_down(),
            provider.charges()
        ),
        (4, 1, 2)
    );
}
