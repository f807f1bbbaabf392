use reqwest::StatusCode;

use crate::both_tiers;
use crate::support::{Backing, Tier, spawn_app, spawn_app_on};

both_tiers!(
    health_names_the_instance,
    ready_reports_each_dependency,
    metrics_count_requests_by_route_and_show_the_pool,
    unknown_routes_and_methods_answer_json,
    openapi_and_docs_are_served,
    the_home_page_says_what_this_is,
);

async fn health_names_the_instance(tier: Tier) {
    let app = spawn_app_on(Backing::new(tier).await, &["--instance-id", "web-7"]).await;
    let health = app.get("/health").send().await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "healthy", "server": "web-7"})
    );
}

async fn ready_reports_each_dependency(tier: Tier) {
    let app = spawn_app(tier).await;
    let ready = app.get("/ready").send().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let checks = &ready.json()["checks"];
    assert_eq!(checks["database"], "ok");
    match tier {
        Tier::Postgres => assert_eq!(checks["redis"], "ok"),
        Tier::Sqlite => assert!(checks.get("redis").is_none()),
    }
}

async fn metrics_count_requests_by_route_and_show_the_pool(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let family = app.family(&c.session, "Metered").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    assert_eq!(
        app.get(&path).session(&c.session).send().await.status,
        StatusCode::OK
    );
    let text = app.metrics().await;
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/api/v1/families/{id}",status="200"}"#
        ),
        "requests are labelled by route template, not raw path:\n{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "latency histogram missing"
    );
    assert!(text.contains(r#"db_pool_connections{endpoint="primary",state="idle"}"#));
    assert!(text.contains(r#"db_pool_connections{endpoint="primary",state="in_use"}"#));
    assert!(text.contains("db_pool_max_connections"));
    assert!(text.contains("db_pool_acquire_seconds"));
}

async fn unknown_routes_and_methods_answer_json(tier: Tier) {
    let app = spawn_app(tier).await;
    let missing = app.get("/api/v1/nothing-here").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
    let wrong = app
        .req(reqwest::Method::DELETE, "/api/v1/coops")
        .send()
        .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.error_code(), "method_not_allowed");
    assert!(
        wrong.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/coops")
    );
}

async fn openapi_and_docs_are_served(tier: Tier) {
    let app = spawn_app(tier).await;
    let spec = app.get("/api/v1/openapi.json").send().await;
    assert_eq!(spec.status, StatusCode::OK);
    let spec = spec.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/coops", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/families", "get"),
        ("/api/v1/families", "post"),
        ("/api/v1/families/{id}", "get"),
        ("/api/v1/families/{id}", "put"),
        ("/api/v1/families/{id}", "delete"),
        ("/health", "get"),
        ("/ready", "get"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let docs = app.get("/docs/").send().await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.text.to_lowercase().contains("swagger"),
        "{}",
        docs.text
    );
}

async fn the_home_page_says_what_this_is(tier: Tier) {
    let app = spawn_app(tier).await;
    let home = app.get("/").send().await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(home.text.contains(env!("CARGO_PKG_VERSION")));
    assert!(home.text.contains("href=\"/docs\""), "{}", home.text);
    assert!(home.text.contains("href=\"/sign-in\""), "{}", home.text);
    let tier_name = match tier {
        Tier::Sqlite => "embedded (SQLite)",
        Tier::Postgres => "distributed (PostgreSQL + Redis)",
    };
    assert!(home.text.contains(tier_name), "{}", home.text);
}
