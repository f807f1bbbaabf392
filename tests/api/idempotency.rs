use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::helpers::{PASSWORD, Tier, spawn_app};

both_tiers!(
    a_repeated_request_replays_the_first_response,
    a_reused_key_with_another_body_is_a_422,
    keys_belong_to_their_user,
    concurrent_repeats_create_one_family,
    unauthenticated_posts_are_idempotent_too,
);

async fn family_count(app: &crate::helpers::TestApp, session: &str) -> usize {
    let page = app
        .get("/api/v1/families?limit=200")
        .session(session)
        .send()
        .await
        .json();
    page["items"].as_array().unwrap().len()
}

async fn a_repeated_request_replays_the_first_response(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let body = json!({"family_name": "Smiths", "email": "smiths@example.org"});
    let send = || {
        app.post("/api/v1/families", &body)
            .session(&c.session)
            .header("idempotency-key", "enroll-smiths-1")
            .send()
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(first.header("idempotent-replayed").is_none());
    let second = send().await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    assert_eq!(second.text, first.text, "the first response, byte for byte");
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        family_count(&app, &c.session).await,
        1,
        "the work was done once"
    );
}

async fn a_reused_key_with_another_body_is_a_422(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let first = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "A", "email": "a@example.org"}),
        )
        .session(&c.session)
        .header("idempotency-key", "k")
        .send()
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "B", "email": "b@example.org"}),
        )
        .session(&c.session)
        .header("idempotency-key", "k")
        .send()
        .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text
    );
    assert_eq!(other.error_code(), "idempotency_key_reused");
    assert_eq!(family_count(&app, &c.session).await, 1);
    let bad_key = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "B", "email": "b@example.org"}),
        )
        .session(&c.session)
        .header("idempotency-key", &"k".repeat(300))
        .send()
        .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_key.error_code(), "invalid_idempotency_key");
}

async fn keys_belong_to_their_user(tier: Tier) {
    let app = spawn_app(tier).await;
    let one = app.coordinator().await;
    let two = app.coordinator().await;
    let body = json!({"family_name": "Same", "email": "same@example.org"});
    for c in [&one, &two] {
        let response = app
            .post("/api/v1/families", &body)
            .session(&c.session)
            .header("idempotency-key", "shared")
            .send()
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        assert!(response.header("idempotent-replayed").is_none());
        assert_eq!(response.json()["coop_id"], c.coop_id.as_str());
    }
}

async fn concurrent_repeats_create_one_family(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let body = json!({"family_name": "Racers", "email": "racers@example.org"});
    let attempts = (0..12).map(|_| {
        app.post("/api/v1/families", &body)
            .session(&c.session)
            .header("idempotency-key", "race")
            .send()
    });
    let responses = futures::future::join_all(attempts).await;
    let mut created_ids = std::collections::HashSet::new();
    for response in &responses {
        match response.status {
            StatusCode::CREATED => {
                created_ids.insert(response.json()["family_id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(response.error_code(), "request_in_progress"),
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert_eq!(created_ids.len(), 1, "every success names the same family");
    assert_eq!(family_count(&app, &c.session).await, 1);
}

async fn unauthenticated_posts_are_idempotent_too(tier: Tier) {
    let app = spawn_app(tier).await;
    let body = json!({"name": "Co-op", "coordinator": {"name": "Ada", "email": format!("{}@example.org", uuid::Uuid::new_v4().simple()), "password": PASSWORD}});
    let key = uuid::Uuid::new_v4().to_string();
    let first = app
        .post("/api/v1/coops", &body)
        .header("idempotency-key", &key)
        .send()
        .await;
    let second = app
        .post("/api/v1/coops", &body)
        .header("idempotency-key", &key)
        .send()
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "replayed instead of 409 email_taken: {}",
        second.text
    );
    assert_eq!(first.json(), second.json());
}
