//! The OpenAPI document tells the truth, checked fast: the statuses and
//! request schemas schemathesis (scripts/contract.sh) once found missing or
//! wrong, and the list of operations that need no session. The fuzzer covers
//! the rest in CI; these keep the findings visible in `cargo test`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_tiers;
use crate::support::{Tier, spawn_app};

both_tiers!(
    exactly_the_public_operations_answer_without_a_session,
    concurrent_updates_of_one_family_all_succeed,
);

fn document() -> Value {
    serde_json::to_value(coop_web::api::api().1).expect("the document serializes")
}

fn statuses(doc: &Value, method: &str, path: &str) -> Vec<String> {
    let responses = doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not documented"));
    responses.keys().cloned().collect()
}

/// Each operation with its method and path, as the document lists them.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
    }
    all
}

#[test]
fn updating_a_family_documents_malformed_json_and_a_taken_email() {
    // Finding 11: PUT /api/v1/families/{id} answered 400 `malformed_json` and
    // 409 `email_taken` without documenting them.
    let doc = document();
    let put = statuses(&doc, "put", "/api/v1/families/{id}");
    for status in [
        "400", "401", "404", "409", "412", "413", "415", "422", "503",
    ] {
        assert!(
            put.contains(&status.to_owned()),
            "PUT families/{{id}} lacks {status}: {put:?}"
        );
    }
}

#[test]
fn every_operation_documents_the_statuses_its_layers_can_answer() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let has = |status: &str| operation["responses"].get(status).is_some();
        let label = format!("{} {path}", method.to_uppercase());
        assert!(has("503"), "{label}: every request can time out");
        if operation["requestBody"]["content"]["application/json"].is_object() {
            for status in ["400", "413", "415", "422"] {
                assert!(has(status), "{label}: a JSON body can answer {status}");
            }
        }
        if operation.get("security").is_some() {
            assert!(has("401"), "{label} needs a session, so it can answer 401");
        }
        if method == "post" {
            assert!(has("409"), "{label}: an Idempotency-Key in use answers 409");
        }
        if path.contains('{') {
            assert!(has("404"), "{label}: an unknown id answers 404");
        }
    }
}

#[test]
fn request_schemas_require_what_the_handlers_require() {
    // Finding 11: log-in, founding a co-op and charging a family documented
    // every field as optional and unbounded, while the handlers reject a
    // missing or malformed one with 422.
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let login = &schemas["LoginRequest"];
    assert_eq!(login["required"], json!(["email", "password"]), "{login}");
    assert_eq!(
        login["properties"]["password"]["type"],
        json!("string"),
        "not nullable"
    );
    let coop = &schemas["CreateCoopRequest"];
    assert_eq!(coop["required"], json!(["name", "coordinator"]), "{coop}");
    let coordinator = &schemas["CoordinatorInput"];
    assert_eq!(
        coordinator["required"],
        json!(["name", "email", "password"]),
        "{coordinator}"
    );
    assert_eq!(coordinator["properties"]["email"]["format"], json!("email"));
    assert_eq!(
        coordinator["properties"]["password"]["minLength"],
        json!(10)
    );
    let payment = &schemas["PaymentInput"];
    assert_eq!(
        payment["required"],
        json!(["amount_cents", "description"]),
        "{payment}"
    );
    assert_eq!(
        payment["properties"]["amount_cents"]["type"],
        json!("integer")
    );
    assert_eq!(
        payment["properties"]["amount_cents"]["maximum"],
        json!(10_000_000)
    );
}

/// Every operation that does not list `session` security must answer without
/// one, and every one that does must answer 401 without a cookie: the list in
/// `http::shared_responses::PUBLIC` cannot drift from the extractors.
async fn exactly_the_public_operations_answer_without_a_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let doc = app.get("/api/v1/openapi.json").send().await.json();
    let any_id = uuid::Uuid::now_v7().to_string();
    for (method, path, operation) in operations(&doc) {
        let concrete = path
            .replace("{file}", "nothing.ics")
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    any_id.as_str()
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = app.req(method.clone(), &concrete);
        if method == Method::POST || method == Method::PUT {
            request = request.json(&json!({}));
        }
        let answer = request.send().await;
        let declared = operation.get("security").is_some();
        let label = format!("{method} {path}");
        if declared {
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{label} declares a session but answered without one: {}",
                answer.text
            );
        } else {
            assert_ne!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{label} answered 401 without a session: add `session` security \
                 (remove it from shared_responses::PUBLIC)"
            );
        }
    }
}

/// schemathesis found PUT /api/v1/families/{id} answering 500 on SQLite when
/// two updates overlapped: a transaction that read before writing could not
/// upgrade its lock after the other one committed (SQLITE_BUSY_SNAPSHOT).
/// Write transactions now take the lock at BEGIN; every update succeeds.
async fn concurrent_updates_of_one_family_all_succeed(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let family = app.family(&c.session, "Racers").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let email = family["email"].as_str().unwrap();
    let answers = futures::future::join_all((0..24).map(|i| {
        app.put(
            &path,
            &json!({"family_name": format!("Racers {i}"), "email": email}),
        )
        .session(&c.session)
        .send()
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let last = app.get(&path).session(&c.session).send().await.json();
    assert_eq!(
        last["version"],
        json!(25),
        "every update applied once: {last}"
    );
}
