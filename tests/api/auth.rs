use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::support::{Tier, spawn_app, spawn_app_on};

both_tiers!(
    login_sets_a_safe_cookie_and_me_answers,
    wrong_email_and_wrong_password_look_the_same,
    every_login_gets_a_new_session,
    logout_deletes_the_session,
    me_needs_a_valid_session,
    login_requires_both_fields,
    cookie_authenticated_writes_from_another_site_are_refused,
    an_unused_session_ends_and_a_busy_one_ends_at_its_lifetime,
);

/// A page of another site cannot make the browser write with the person's
/// session (a form-encoded logout from a foreign Origin used to succeed);
/// clients that are not browsers send neither header and pass.
async fn cookie_authenticated_writes_from_another_site_are_refused(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let me = || async {
        app.get("/api/v1/auth/me")
            .session(&c.session)
            .send()
            .await
            .status
    };
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let forged = app
            .req(reqwest::Method::POST, "/api/v1/auth/logout")
            .session(&c.session)
            .header(header, value)
            .raw("application/x-www-form-urlencoded", "")
            .send()
            .await;
        assert_eq!(
            forged.status,
            StatusCode::FORBIDDEN,
            "{header}: {}",
            forged.text
        );
        assert_eq!(forged.error_code(), "forbidden");
        assert_eq!(me().await, StatusCode::OK, "{header}: the session lives on");
    }
    let family = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "Forged", "email": "forged@example.org"}),
        )
        .session(&c.session)
        .header("sec-fetch-site", "same-site")
        .send()
        .await;
    assert_eq!(family.status, StatusCode::FORBIDDEN, "{}", family.text);
    // Coop's own pages (same origin) and clients without a browser pass.
    let own = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "Own", "email": "own@example.org"}),
        )
        .session(&c.session)
        .header("origin", &app.address)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text);
    let plain = app
        .post("/api/v1/auth/logout", &json!({}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(plain.status, StatusCode::NO_CONTENT);
    assert_eq!(me().await, StatusCode::UNAUTHORIZED);
}

/// Idle expiry ends a session nobody uses; the absolute lifetime ends even
/// a session in constant use.
async fn an_unused_session_ends_and_a_busy_one_ends_at_its_lifetime(tier: Tier) {
    let backing = crate::support::Backing::new(tier).await;
    let app = spawn_app_on(backing, &["--session-idle", "2s", "--session-ttl", "5s"]).await;
    let c = app.coordinator().await;
    let me = |session: String| {
        let app = &app;
        async move {
            app.get("/api/v1/auth/me")
                .session(&session)
                .send()
                .await
                .status
        }
    };
    // Unused for longer than the idle window: gone.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(
        me(c.session.clone()).await,
        StatusCode::UNAUTHORIZED,
        "idle"
    );
    // Used every 0.6 s: alive past the idle window, until its lifetime.
    let busy = app.login(&c.email, &c.password).await.session_token();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(3800) {
        assert_eq!(
            me(busy.clone()).await,
            StatusCode::OK,
            "in use at {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        me(busy).await,
        StatusCode::UNAUTHORIZED,
        "past its lifetime"
    );
}

async fn login_sets_a_safe_cookie_and_me_answers(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let login = app.login(&c.email, &c.password).await;
    assert_eq!(login.status, StatusCode::OK);
    let user = &login.json()["user"];
    assert_eq!(user["email"], c.email.as_str());
    assert_eq!(user["role"], "coordinator");
    let cookie = login.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains("Secure"),
        "not Secure unless configured: {cookie}"
    );

    let me = app
        .get("/api/v1/auth/me")
        .session(&login.session_token())
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let me = me.json();
    assert_eq!(me["user_id"], c.user_id.as_str());
    assert_eq!(me["coop_id"], c.coop_id.as_str());
    assert_eq!(me["role"], "coordinator");
    assert_eq!(me["email"], c.email.as_str());
}

async fn wrong_email_and_wrong_password_look_the_same(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let wrong_password = app.login(&c.email, "definitely-wrong").await;
    let unknown_email = app.login("nobody@example.org", &c.password).await;
    let malformed_email = app.login("nobody", &c.password).await;
    for response in [&wrong_password, &unknown_email, &malformed_email] {
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text
        );
        assert!(response.header("set-cookie").is_none());
    }
    assert_eq!(wrong_password.text, unknown_email.text);
    assert_eq!(wrong_password.text, malformed_email.text);
}

async fn every_login_gets_a_new_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let second = app
        .post(
            "/api/v1/auth/login",
            &json!({"email": c.email, "password": c.password}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let new_token = second.session_token();
    assert_ne!(
        new_token, c.session,
        "a log-in must issue a fresh session id"
    );
    // The session presented at log-in was replaced (no fixation).
    let old = app.get("/api/v1/auth/me").session(&c.session).send().await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app.get("/api/v1/auth/me").session(&new_token).send().await;
    assert_eq!(new.status, StatusCode::OK);
}

async fn logout_deletes_the_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let logout = app
        .req(reqwest::Method::POST, "/api/v1/auth/logout")
        .session(&c.session)
        .send()
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    // The token itself is dead in the shared store, not merely forgotten by the client.
    let me = app.get("/api/v1/auth/me").session(&c.session).send().await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    // Logging out without a session is harmless.
    let again = app
        .req(reqwest::Method::POST, "/api/v1/auth/logout")
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
}

async fn me_needs_a_valid_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let none = app.get("/api/v1/auth/me").send().await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.error_code(), "unauthenticated");
    for bogus in ["garbage", &"a".repeat(43), "", "x;y"] {
        let response = app.get("/api/v1/auth/me").session(bogus).send().await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{bogus:?}");
    }
}

async fn login_requires_both_fields(tier: Tier) {
    let app = spawn_app(tier).await;
    let response = app.post("/api/v1/auth/login", &json!({})).send().await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = &response.json()["error"]["fields"];
    assert!(
        fields["email"].is_string() && fields["password"].is_string(),
        "{fields}"
    );
}

#[tokio::test]
async fn cookies_are_secure_when_configured() {
    let backing = crate::support::Backing::new(Tier::Sqlite).await;
    let app = spawn_app_on(backing, &["--secure-cookies", "true"]).await;
    let c = app.coordinator().await;
    let login = app.login(&c.email, &c.password).await;
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // `__Host-`: the browser takes it only over HTTPS, for this host alone
    // (no Domain), for every path: a sibling subdomain cannot plant one.
    assert!(cookie.starts_with("__Host-coop_session="), "{cookie}");
    assert!(
        cookie.contains("; Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    let me = app
        .get("/api/v1/auth/me")
        .header(
            "cookie",
            &format!("__Host-coop_session={}", login.session_token()),
        )
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
}
