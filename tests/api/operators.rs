//! Platform operators: added with `coop operators add EMAIL` (the real
//! binary), they set a password from the printed link, sign in through the
//! same log-in and sign-in page as everyone, see the operations endpoints,
//! and are refused by every co-op route; nobody else sees the operations
//! endpoints.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::both_tiers;
use crate::support::{Backing, TestApp, Tier, spawn_app_on};

both_tiers!(
    an_operator_from_the_command_line_signs_in_and_sees_no_coop,
    only_operators_see_the_operations_endpoints,
);

/// `coop operators add EMAIL` on the app's storage: its exit status, standard
/// output and standard error.
pub async fn operators_add(backing: &Backing, email: &str) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_coop"))
        .args(["operators", "add"])
        .args(backing.args())
        .arg(email)
        .env("RUST_LOG", "warn")
        .env("COOP_PUBLIC_URL", "https://coop.example.org")
        .output()
        .await
        .expect("run coop operators add");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Adds an operator, sets their password from the link, signs in: the
/// session token.
pub async fn operator_session(app: &TestApp, backing: &Backing) -> (String, String) {
    let email = format!("ops-{}@example.org", Uuid::new_v4().simple());
    let (ok, stdout, stderr) = operators_add(backing, &email).await;
    assert!(ok, "coop operators add failed: {stdout}{stderr}");
    let token = stdout
        .split("https://coop.example.org/reset-password#token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no link in {stdout:?}"))
        .trim()
        .to_owned();
    let set = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "an operator's password"}),
        )
        .send()
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.text);
    let login = app.login(&email, "an operator's password").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    (email, login.session_token())
}

async fn an_operator_from_the_command_line_signs_in_and_sees_no_coop(tier: Tier) {
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &[]).await;
    let coordinator = app.coordinator().await;
    let family = app.family(&coordinator.session, "The Private").await;
    let family_path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());

    // Before the password is set, the operator cannot sign in.
    let email = format!("ops-{}@example.org", Uuid::new_v4().simple());
    let (ok, stdout, stderr) = operators_add(&backing, &email).await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        app.login(&email, "anything at all").await.status,
        StatusCode::UNAUTHORIZED
    );
    let link_token = stdout.split("#token=").nth(1).unwrap().trim().to_owned();
    let set = |password: &'static str| {
        let token = link_token.clone();
        let app = &app;
        async move {
            app.post(
                "/api/v1/auth/password-reset/confirm",
                &json!({"token": token, "password": password}),
            )
            .send()
            .await
        }
    };
    assert_eq!(
        set("an operator's password").await.status,
        StatusCode::NO_CONTENT
    );
    // The link works once.
    let again = set("another password here").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    let login = app.login(&email, "an operator's password").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let user = &login.json()["user"];
    assert_eq!(user["role"], "operator");
    assert_eq!(user["coop_id"], Uuid::nil().to_string());
    let session = login.session_token();
    let me = app.get("/api/v1/auth/me").session(&session).send().await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.json()["email"], email.as_str());

    // Every co-op route refuses the operator.
    for path in [
        "/api/v1/families",
        family_path.as_str(),
        "/api/v1/semesters",
        "/api/v1/announcements",
        "/api/v1/admin/jobs",
    ] {
        let refused = app.get(path).session(&session).send().await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            refused.text
        );
        assert!(!refused.text.contains("The Private"), "{}", refused.text);
    }
    let write = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "Planted", "email": "planted@example.org"}),
        )
        .session(&session)
        .send()
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.text);
    // And the co-op's pages: home is the operations page, the rest are refused.
    let home = app.get("/home").session(&session).send().await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.header("location"), Some("/operations"));
    for path in ["/families", "/semesters", "/jobs", "/profile"] {
        let refused = app.get(path).session(&session).send().await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            refused
                .header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }
    let page = app.get("/operations").session(&session).send().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("<h1>Operations</h1>"), "{}", page.text);

    // Adding the operator again gives a new link; a member's address is refused.
    let (ok, stdout, _) = operators_add(&backing, &email).await;
    assert!(ok && stdout.contains("#token="), "{stdout}");
    let (ok, stdout, stderr) = operators_add(&backing, &coordinator.email).await;
    assert!(!ok, "a member's address became an operator: {stdout}");
    assert!(stderr.contains("co-op member's account"), "{stderr}");
    let (ok, _, stderr) = operators_add(&backing, "not an address").await;
    assert!(!ok);
    assert!(stderr.contains("not an email address"), "{stderr}");
}

async fn only_operators_see_the_operations_endpoints(tier: Tier) {
    let backing: Arc<Backing> = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &["--operations-sample-every", "1s"]).await;
    let coordinator = app.coordinator().await;
    let (_, operator) = operator_session(&app, &backing).await;

    let samples = app
        .get("/api/v1/operations/samples")
        .session(&operator)
        .send()
        .await;
    assert_eq!(samples.status, StatusCode::OK, "{}", samples.text);
    let body = samples.json();
    assert_eq!(body["every_seconds"], 1.0);
    assert!(body["instance"].is_string());
    assert!(body["samples"].is_array());

    for session in [Some(coordinator.session.as_str()), None] {
        let mut api = app.get("/api/v1/operations/samples");
        let mut page = app.get("/operations");
        let mut charts = app.get("/operations/charts");
        if let Some(session) = session {
            api = api.session(session);
            page = page.session(session);
            charts = charts.session(session);
        }
        // The API: 401 without a session, like every route that needs one;
        // a member is told it does not exist.
        let api = api.send().await;
        match session {
            Some(_) => {
                assert_eq!(api.status, StatusCode::NOT_FOUND, "{}", api.text);
                assert_eq!(api.error_code(), "not_found");
            }
            None => assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text),
        }
        let page = page.send().await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(charts.send().await.status, StatusCode::NOT_FOUND);
    }
}
