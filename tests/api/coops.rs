use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::support::{PASSWORD, Tier, spawn_app};

both_tiers!(
    founding_a_coop_answers_check_your_email,
    every_invalid_field_is_named,
    malformed_json_is_a_400,
    wrong_json_shape_is_a_422,
    bodies_over_64_kib_are_refused,
    non_json_bodies_are_refused,
);

async fn founding_a_coop_answers_check_your_email(tier: Tier) {
    let app = spawn_app(tier).await;
    let response = app
        .post(
            "/api/v1/coops",
            &json!({"name": "  Riverside Co-op  ", "coordinator": {"name": "Ada", "email": "Ada@Example.org", "password": PASSWORD}}),
        )
        .send()
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
    assert!(
        response.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("check your email")),
        "{}",
        response.text
    );
    // The email was stored lower-cased: logging in with either case works,
    // at once (the co-op works before its founder confirms the address).
    let login = app.login("ada@example.org", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let me = &login.json()["user"];
    assert_eq!(me["role"], "coordinator");
    uuid::Uuid::parse_str(me["coop_id"].as_str().unwrap()).expect("a co-op id");
}

async fn every_invalid_field_is_named(tier: Tier) {
    let app = spawn_app(tier).await;
    let cases = [
        (json!({}), vec!["name", "coordinator"]),
        (
            json!({"name": "   ", "coordinator": {"name": "x".repeat(201), "email": "not-an-email", "password": "short"}}),
            vec![
                "name",
                "coordinator.name",
                "coordinator.email",
                "coordinator.password",
            ],
        ),
        (
            json!({"name": "Ok", "coordinator": {}}),
            vec![
                "coordinator.name",
                "coordinator.email",
                "coordinator.password",
            ],
        ),
    ];
    for (body, expected) in cases {
        let response = app.post("/api/v1/coops", &body).send().await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            response.text
        );
        assert_eq!(response.error_code(), "validation_failed");
        let fields = response.json()["error"]["fields"].clone();
        let mut named: Vec<String> = fields.as_object().unwrap().keys().cloned().collect();
        named.sort();
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        expected.sort();
        assert_eq!(named, expected, "{body}: {fields}");
        assert!(
            response.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

async fn malformed_json_is_a_400(tier: Tier) {
    let app = spawn_app(tier).await;
    for body in ["{\"name\": ", "not json", ""] {
        let response = app
            .req(reqwest::Method::POST, "/api/v1/coops")
            .raw("application/json", body)
            .send()
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{body:?}: {}",
            response.text
        );
        assert_eq!(response.error_code(), "malformed_json");
    }
}

async fn wrong_json_shape_is_a_422(tier: Tier) {
    let app = spawn_app(tier).await;
    let response = app
        .post(
            "/api/v1/coops",
            &json!({"name": 42, "coordinator": {"name": "Ada"}}),
        )
        .send()
        .await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.text
    );
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("name"),
        "the message names the field: {message}"
    );
    let response = app.post("/api/v1/coops", &json!([1, 2])).send().await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.text
    );
}

async fn bodies_over_64_kib_are_refused(tier: Tier) {
    let app = spawn_app(tier).await;
    let huge = json!({"name": "x".repeat(70 * 1024)});
    let response = app.post("/api/v1/coops", &huge).send().await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.text
    );
    assert_eq!(response.error_code(), "payload_too_large");
    // Also when the request carries an Idempotency-Key (buffered by middleware).
    let response = app
        .post("/api/v1/coops", &huge)
        .header("idempotency-key", "big")
        .send()
        .await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.text
    );
    assert_eq!(response.error_code(), "payload_too_large");
}

async fn non_json_bodies_are_refused(tier: Tier) {
    let app = spawn_app(tier).await;
    let response = app
        .req(reqwest::Method::POST, "/api/v1/coops")
        .raw("text/plain", "name=x")
        .send()
        .await;
    assert_eq!(
        response.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        response.text
    );
    assert_eq!(response.error_code(), "unsupported_media_type");
}
