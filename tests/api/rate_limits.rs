//! Issue 15, finding 2: log-in, sign-up and invite acceptance had no brute-force
//! protection, and password hashing was unbounded. Budgets here are lowered
//! through the settings so a handful of requests reach them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::both_tiers;
use crate::support::{
    Backing, PASSWORD, PrivateRedis, TestResponse, Tier, parse_metric, spawn_app, spawn_app_on,
};

both_tiers!(
    log_ins_past_an_accounts_budget_get_429_with_retry_after,
    an_address_has_one_budget_whatever_it_forwards_unless_its_proxy_is_trusted,
    sign_ups_and_invite_acceptances_are_limited_too,
    a_burst_of_password_checks_past_the_pool_gets_503_with_retry_after,
    a_session_past_its_api_budget_gets_429_and_others_go_on,
);

/// COOP_RATE_LIMIT_SESSION (off by default): one session's requests to the
/// API have a budget of their own; another session's are not counted in it.
async fn a_session_past_its_api_budget_gets_429_and_others_go_on(tier: Tier) {
    let app = spawn_app_on(Backing::new(tier).await, &["--rate-limit-session", "5/1m"]).await;
    let c = app.coordinator().await;
    let other = app.login(&c.email, PASSWORD).await.session_token();
    let me = |session: String| {
        let app = &app;
        async move { app.get("/api/v1/auth/me").session(&session).send().await }
    };
    // The coordinator helper's session was used once (by nothing yet).
    for n in 1..=5 {
        let answer = me(c.session.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {n}: {}",
            answer.text
        );
    }
    assert_limited(&me(c.session.clone()).await);
    assert_eq!(me(other).await.status, StatusCode::OK, "another session");
}

fn assert_limited(answer: &TestResponse) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text
    );
    assert_eq!(answer.error_code(), "rate_limited");
    let retry: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again")
    );
}

async fn log_ins_past_an_accounts_budget_get_429_with_retry_after(tier: Tier) {
    let app = spawn_app_on(Backing::new(tier).await, &["--rate-limit-account", "4/1m"]).await;
    let c = app.coordinator().await; // one log-in of the budget
    for _ in 0..3 {
        let wrong = app.login(&c.email, "not the password").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    }
    // The right password no longer helps: the account's budget is spent.
    assert_limited(&app.login(&c.email, PASSWORD).await);
    // However the email is written.
    assert_limited(
        &app.login(&format!("  {}", c.email.to_uppercase()), PASSWORD)
            .await,
    );
    // Another account from the same address is not affected.
    let other = app.coordinator().await;
    assert_eq!(
        app.login(&other.email, PASSWORD).await.status,
        StatusCode::OK
    );
    // The web app's sign-in form shares the account's budget.
    let form = app
        .req(reqwest::Method::POST, "/sign-in")
        .raw(
            "application/x-www-form-urlencoded",
            format!("email={}&password=x", c.email),
        )
        .send()
        .await;
    assert_eq!(form.status, StatusCode::TOO_MANY_REQUESTS, "{}", form.text);
    assert!(form.header("retry-after").is_some());
}

async fn an_address_has_one_budget_whatever_it_forwards_unless_its_proxy_is_trusted(tier: Tier) {
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &["--rate-limit-address", "3/1m"]).await;
    let attempt = |forwarded: String| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/auth/login",
                &json!({"email": format!("{}@example.org", Uuid::new_v4()), "password": "x"}),
            )
            .header("x-forwarded-for", &forwarded)
            .send()
            .await
        }
    };
    for i in 0..3 {
        let answer = attempt(format!("198.51.100.{i}")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    }
    // A new email and a forged X-Forwarded-For each time: still one address.
    assert_limited(&attempt("198.51.100.99".into()).await);
    app.stop().await;

    // Behind a trusted proxy, the address it forwards is the client's.
    let behind = spawn_app_on(
        backing,
        &[
            "--rate-limit-address",
            "3/1m",
            "--trusted-proxies",
            "127.0.0.1,::1",
        ],
    )
    .await;
    let attempt = |forwarded: &'static str| {
        let app = &behind;
        async move {
            app.post(
                "/api/v1/auth/login",
                &json!({"email": format!("{}@example.org", Uuid::new_v4()), "password": "x"}),
            )
            .header("x-forwarded-for", forwarded)
            .send()
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("203.0.113.1").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(&attempt("203.0.113.1").await);
    assert_eq!(
        attempt("203.0.113.2").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn sign_ups_and_invite_acceptances_are_limited_too(tier: Tier) {
    let app = spawn_app_on(
        Backing::new(tier).await,
        &[
            "--rate-limit-sign-up",
            "2/1h",
            "--rate-limit-account",
            "2/1m",
        ],
    )
    .await;
    let sign_up = || async {
        app.post(
            "/api/v1/coops",
            &json!({"name": "Riverside Co-op", "coordinator": {
                "name": "Ada Lovelace",
                "email": format!("coord-{}@example.org", Uuid::new_v4().simple()),
                "password": PASSWORD,
            }}),
        )
        .send()
        .await
    };
    for _ in 0..2 {
        let created = sign_up().await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    }
    assert_limited(&sign_up().await);

    // Guessing one invite code: its budget ends the guessing.
    let accept = || async {
        app.post(
            "/api/v1/auth/accept-invite",
            &json!({"token": "guessed-invite-code", "password": PASSWORD}),
        )
        .send()
        .await
    };
    for _ in 0..2 {
        let refused = accept().await;
        assert!(refused.status.is_client_error(), "{}", refused.text);
        assert_ne!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_limited(&accept().await);

    // Asking for reset emails for one address: limited like a log-in, so
    // nobody can make Coop mail someone over and over.
    let reset = || async {
        app.post(
            "/api/v1/auth/password-reset",
            &json!({"email": "victim@example.org"}),
        )
        .send()
        .await
    };
    for _ in 0..2 {
        let asked = reset().await;
        assert!(asked.status.is_success(), "{}", asked.text);
    }
    assert_limited(&reset().await);
    let guess = || async {
        app.post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": "guessed-reset-code", "password": PASSWORD}),
        )
        .send()
        .await
    };
    for _ in 0..2 {
        assert_ne!(guess().await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_limited(&guess().await);
}

/// Item "a bounded password-hashing pool": with one slot and no patience, a
/// burst of log-ins is partly refused with 503 + Retry-After instead of
/// starting a hash (19 MiB, tens of ms of CPU) for each.
async fn a_burst_of_password_checks_past_the_pool_gets_503_with_retry_after(tier: Tier) {
    let app = spawn_app_on(
        Backing::new(tier).await,
        &[
            "--password-hash-concurrency",
            "1",
            "--password-hash-wait",
            "1ms",
        ],
    )
    .await;
    let c = app.coordinator().await;
    // Unknown emails cost a hash too (so answers do not tell which exist).
    let emails: Vec<String> = (0..12)
        .map(|_| format!("{}@example.org", Uuid::new_v4()))
        .collect();
    let answers = futures::future::join_all(emails.iter().map(|email| app.login(email, "x"))).await;
    let busy: Vec<&TestResponse> = answers
        .iter()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !busy.is_empty(),
        "12 log-ins at once all got a hashing slot"
    );
    for answer in &answers {
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(&answer.status),
            "{}: {}",
            answer.status,
            answer.text
        );
    }
    assert_eq!(busy[0].error_code(), "service_unavailable");
    assert!(busy[0].header("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.login(&c.email, PASSWORD).await.status, StatusCode::OK);
}

/// Two instances charge one budget through Redis: spreading attempts over
/// instances gains nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_budget_through_redis() {
    let backing = Backing::new(Tier::Postgres).await;
    let a = spawn_app_on(backing.clone(), &["--rate-limit-account", "4/1m"]).await;
    let b = spawn_app_on(backing.clone(), &["--rate-limit-account", "4/1m"]).await;
    let email = format!("{}@example.org", Uuid::new_v4());
    for app in [&a, &b, &a, &b] {
        assert_eq!(
            app.login(&email, "x").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited(&a.login(&email, "x").await);
    assert_limited(&b.login(&email, "x").await);
}

/// With Redis gone, each instance counts on its own: still limited, never a
/// 5xx from the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_instance_limits_on_its_own() {
    let mut redis = PrivateRedis::start().await;
    let backing = Backing::postgres_with_redis(redis.url()).await;
    let app = spawn_app_on(backing, &["--rate-limit-account", "3/1m"]).await;
    redis.kill();
    let email = format!("{}@example.org", Uuid::new_v4());
    for _ in 0..3 {
        let wrong = app.login(&email, "x").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.text);
    }
    assert_limited(&app.login(&email, "x").await);
    let metrics = app.metrics().await;
    assert!(
        parse_metric(&metrics, "rate_limit_fallback_total", &[]) >= 4.0,
        "the limiter did not fall back to local counts"
    );
}

/// The contract lists the 429 of every door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_the_429s() {
    let app = spawn_app(Tier::Sqlite).await;
    let spec = app.get("/api/v1/openapi.json").send().await.json();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/coops",
        "/api/v1/auth/accept-invite",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/confirm",
    ] {
        let too_many = &spec["paths"][path]["post"]["responses"]["429"];
        assert!(too_many.is_object(), "no 429 for POST {path}");
        assert!(too_many["headers"]["Retry-After"].is_object(), "{too_many}");
    }
}

/// The defaults let ordinary use through: the suite's own apps run on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_let_a_coordinator_sign_up_and_log_in_repeatedly() {
    let app = spawn_app(Tier::Sqlite).await;
    let c = app.coordinator().await;
    for _ in 0..5 {
        assert_eq!(app.login(&c.email, PASSWORD).await.status, StatusCode::OK);
    }
}
