//! An account's life after signing in: changing the password, signing out
//! everywhere, resetting a forgotten password by an emailed single-use link.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::support::fakes::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::{Backing, RawDb, TestApp, Tier, spawn_app, spawn_app_on};

both_tiers!(
    changing_the_password_ends_the_other_sessions,
    signing_out_everywhere_ends_every_session,
    a_reset_link_sets_a_new_password_once,
    a_reset_request_says_nothing_about_which_emails_exist,
    reset_links_expire_and_bad_input_is_refused,
    a_new_email_counts_only_once_its_inbox_confirms,
    removing_a_family_ends_its_account_and_frees_its_email,
    a_corrected_email_revokes_the_old_invite_and_invites_the_new_address,
);

async fn welcome_token(sink: &SmtpSink, to: &str, nth: usize) -> String {
    let mail = crate::support::eventually("the welcome email", Duration::from_secs(20), || async {
        sink.messages()
            .into_iter()
            .filter(|m| {
                m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Welcome"))
                    && m.to.iter().any(|t| t.contains(to))
            })
            .nth(nth)
    })
    .await;
    mail.link_token("token=")
}

async fn accept(app: &TestApp, token: &str) -> crate::support::TestResponse {
    app.post(
        "/api/v1/auth/accept-invite",
        &json!({"token": token, "password": "family password 1"}),
    )
    .send()
    .await
}

/// Removing a family signs its account out everywhere and removes the
/// account, so the same email can be enrolled (and invited) again.
async fn removing_a_family_ends_its_account_and_frees_its_email(tier: Tier) {
    let (app, sink, _backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    let family = app.family(&c.session, "The Moreaus").await;
    let id = family["family_id"].as_str().unwrap().to_owned();
    let email = family["email"].as_str().unwrap().to_owned();
    let accepted = accept(&app, &welcome_token(&sink, &email, 0).await).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    let session = accepted.session_token();
    assert_eq!(me(&app, &session).await, StatusCode::OK);

    let removed = app
        .delete(&format!("/api/v1/families/{id}"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_eq!(
        me(&app, &session).await,
        StatusCode::UNAUTHORIZED,
        "signed out"
    );
    assert_eq!(
        app.login(&email, "family password 1").await.status,
        StatusCode::UNAUTHORIZED,
        "the account is gone"
    );

    let again = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "The Moreaus", "email": email}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    let accepted = accept(&app, &welcome_token(&sink, &email, 1).await).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
}

/// A coordinator corrects a mistyped email: the invite sent to the wrong
/// address stops working, and the right address gets one of its own.
async fn a_corrected_email_revokes_the_old_invite_and_invites_the_new_address(tier: Tier) {
    let (app, sink, _backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    let family = app.family(&c.session, "The Lindqvists").await;
    let id = family["family_id"].as_str().unwrap().to_owned();
    let typo = family["email"].as_str().unwrap().to_owned();
    let wrong_token = welcome_token(&sink, &typo, 0).await;
    let right = format!("right-{typo}");
    let corrected = app
        .put(
            &format!("/api/v1/families/{id}"),
            &json!({"family_name": "The Lindqvists", "email": right}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(corrected.status, StatusCode::OK, "{}", corrected.text);
    let stolen = accept(&app, &wrong_token).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND, "{}", stolen.text);
    let accepted = accept(&app, &welcome_token(&sink, &right, 0).await).await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    assert_eq!(accepted.json()["user"]["email"], right.as_str());

    // Renaming alone (same email) sends nothing and revokes nothing.
    let renamed = app
        .put(
            &format!("/api/v1/families/{id}"),
            &json!({"family_name": "The Lindqvist family", "email": right}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to_right = sink
        .messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t.contains(&right)))
        .count();
    assert_eq!(to_right, 1, "one welcome for the corrected address");
}

async fn me(app: &TestApp, session: &str) -> StatusCode {
    app.get("/api/v1/auth/me")
        .session(session)
        .send()
        .await
        .status
}

async fn changing_the_password_ends_the_other_sessions(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let here = app.login(&c.email, &c.password).await.session_token();
    let elsewhere = app.login(&c.email, &c.password).await.session_token();

    let wrong = app
        .post(
            "/api/v1/auth/password",
            &json!({"current_password": "not the password", "new_password": "a new password 1"}),
        )
        .session(&here)
        .send()
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.text
    );
    assert!(wrong.text.contains("current_password"), "{}", wrong.text);
    let short = app
        .post(
            "/api/v1/auth/password",
            &json!({"current_password": c.password, "new_password": "short"}),
        )
        .session(&here)
        .send()
        .await;
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        short.text
    );
    assert!(short.text.contains("new_password"), "{}", short.text);
    assert_eq!(
        me(&app, &elsewhere).await,
        StatusCode::OK,
        "nothing changed yet"
    );

    let changed = app
        .post(
            "/api/v1/auth/password",
            &json!({"current_password": c.password, "new_password": "a new password 1"}),
        )
        .session(&here)
        .send()
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    assert_eq!(me(&app, &here).await, StatusCode::OK, "this session stays");
    assert_eq!(
        me(&app, &elsewhere).await,
        StatusCode::UNAUTHORIZED,
        "the other session ended"
    );
    assert_eq!(
        app.login(&c.email, &c.password).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&c.email, "a new password 1").await.status,
        StatusCode::OK
    );

    let anonymous = app
        .post(
            "/api/v1/auth/password",
            &json!({"current_password": "a new password 1", "new_password": "another one 22"}),
        )
        .send()
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn signing_out_everywhere_ends_every_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let other = app.coordinator().await;
    let sessions: Vec<String> = futures_sessions(&app, &c.email, &c.password, 3).await;
    for s in &sessions {
        assert_eq!(me(&app, s).await, StatusCode::OK);
    }
    let out = app
        .post("/api/v1/auth/logout-everywhere", &json!({}))
        .session(&sessions[0])
        .send()
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    assert!(
        out.header("set-cookie")
            .unwrap_or_default()
            .contains("Max-Age=0"),
        "the cookie is cleared"
    );
    for s in &sessions {
        assert_eq!(
            me(&app, s).await,
            StatusCode::UNAUTHORIZED,
            "every session ended"
        );
    }
    assert_eq!(
        me(&app, &other.session).await,
        StatusCode::OK,
        "another user's session is untouched"
    );
    assert_eq!(
        app.login(&c.email, &c.password).await.status,
        StatusCode::OK
    );
}

async fn futures_sessions(app: &TestApp, email: &str, password: &str, n: usize) -> Vec<String> {
    let mut sessions = Vec::new();
    for _ in 0..n {
        sessions.push(app.login(email, password).await.session_token());
    }
    sessions
}

async fn app_with_mail(tier: Tier) -> (TestApp, SmtpSink, std::sync::Arc<Backing>) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(
        backing.clone(),
        &[
            "--smtp-url",
            sink.url(),
            "--job-poll",
            "50ms",
            "--run-jobs",
            "on",
        ],
    )
    .await;
    (app, sink, backing)
}

async fn reset_email(sink: &SmtpSink, to: &str, nth: usize) -> ReceivedMail {
    crate::support::eventually("the reset email", Duration::from_secs(20), || async {
        sink.messages()
            .into_iter()
            .filter(|m| {
                m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Reset your"))
                    && m.to.iter().any(|t| t.contains(to))
            })
            .nth(nth)
    })
    .await
}

fn reset_token(mail: &ReceivedMail) -> String {
    mail.link_token("/reset-password#token=")
}

async fn a_reset_link_sets_a_new_password_once(tier: Tier) {
    let (app, sink, _backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    let asked = app
        .post("/api/v1/auth/password-reset", &json!({"email": c.email}))
        .send()
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let mail = reset_email(&sink, &c.email, 0).await;
    let token = reset_token(&mail);
    assert!(
        mail.body().contains("works once and for one hour"),
        "{}",
        mail.body()
    );

    let short = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "short"}),
        )
        .send()
        .await;
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        short.text
    );

    let reset = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "a brand new password"}),
        )
        .send()
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.text);
    assert_eq!(
        me(&app, &c.session).await,
        StatusCode::UNAUTHORIZED,
        "a reset ends every session (whoever had the account is out)"
    );
    assert_eq!(
        app.login(&c.email, &c.password).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&c.email, "a brand new password").await.status,
        StatusCode::OK
    );

    let again = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "yet another password"}),
        )
        .send()
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.json()["error"]["code"], "reset_used");
    assert_eq!(
        app.login(&c.email, "a brand new password").await.status,
        StatusCode::OK,
        "the used link changed nothing"
    );
}

async fn a_reset_request_says_nothing_about_which_emails_exist(tier: Tier) {
    let (app, sink, _backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    let known = app
        .post("/api/v1/auth/password-reset", &json!({"email": c.email}))
        .send()
        .await;
    let unknown = app
        .post(
            "/api/v1/auth/password-reset",
            &json!({"email": "nobody-here@example.org"}),
        )
        .send()
        .await;
    let malformed = app
        .post("/api/v1/auth/password-reset", &json!({"email": "nobody"}))
        .send()
        .await;
    for response in [&known, &unknown, &malformed] {
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
        assert_eq!(response.text, known.text, "the same answer for every email");
    }
    reset_email(&sink, &c.email, 0).await;
    // The known email's link arrived; give a stray one time to arrive too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "only the account's owner got mail"
    );
}

async fn reset_links_expire_and_bad_input_is_refused(tier: Tier) {
    let (app, sink, backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    app.post("/api/v1/auth/password-reset", &json!({"email": c.email}))
        .send()
        .await;
    let token = reset_token(&reset_email(&sink, &c.email, 0).await);
    RawDb::open(&backing)
        .await
        .execute("UPDATE password_resets SET expires_at = 0")
        .await;
    let expired = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": token, "password": "a brand new password"}),
        )
        .send()
        .await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert_eq!(expired.json()["error"]["code"], "reset_expired");

    let unknown = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": "not-a-real-token", "password": "a brand new password"}),
        )
        .send()
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    for body in [
        json!({}),
        json!({"token": "", "password": ""}),
        json!({"email": 5}),
    ] {
        for path in [
            "/api/v1/auth/password-reset/confirm",
            "/api/v1/auth/password-reset",
        ] {
            let bad = app.post(path, &body).send().await;
            assert!(
                bad.status == StatusCode::UNPROCESSABLE_ENTITY
                    || bad.status == StatusCode::BAD_REQUEST,
                "{path} {body}: {} {}",
                bad.status,
                bad.text
            );
            assert!(bad.json()["error"]["message"].is_string(), "{}", bad.text);
        }
    }
    assert_eq!(
        app.login(&c.email, &c.password).await.status,
        StatusCode::OK
    );
}

fn confirm_token(mail: &ReceivedMail) -> String {
    mail.link_token("/confirm-email#token=")
}

async fn confirmation_to(sink: &SmtpSink, to: &str) -> ReceivedMail {
    crate::support::eventually(
        "the confirmation email",
        Duration::from_secs(20),
        || async {
            sink.messages().into_iter().find(|m| {
                m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Confirm your new email"))
                    && m.to.iter().any(|t| t.contains(to))
            })
        },
    )
    .await
}

/// A family changes its email: a link goes to the new address, nothing
/// changes until it is used; then the account and the family's record both
/// have the new address, every session ended, and the link is spent.
async fn a_new_email_counts_only_once_its_inbox_confirms(tier: Tier) {
    let (app, sink, _backing) = app_with_mail(tier).await;
    let c = app.verified_coordinator(&sink).await;
    let family = app.family(&c.session, "The Okafors").await;
    let family_id = family["family_id"].as_str().unwrap().to_owned();
    let old = family["email"].as_str().unwrap().to_owned();
    let welcome = crate::support::eventually("the welcome", Duration::from_secs(20), || async {
        sink.messages()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t.contains(&old)))
    })
    .await;
    let invite = welcome.link_token("token=");
    let accepted = app
        .post(
            "/api/v1/auth/accept-invite",
            &json!({"token": invite, "password": "family password 1"}),
        )
        .send()
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    let session = accepted.session_token();
    let new = format!("okafor-{}@example.org", uuid::Uuid::new_v4().simple());

    for (body, field) in [
        (
            json!({"current_password": "wrong password", "new_email": new}),
            "current_password",
        ),
        (
            json!({"current_password": "family password 1", "new_email": "not-an-email"}),
            "new_email",
        ),
        (
            json!({"current_password": "family password 1", "new_email": old}),
            "new_email",
        ),
    ] {
        let refused = app
            .post("/api/v1/auth/email", &body)
            .session(&session)
            .send()
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.text
        );
        assert!(refused.text.contains(field), "{}", refused.text);
    }
    let asked = app
        .post(
            "/api/v1/auth/email",
            &json!({"current_password": "family password 1", "new_email": new}),
        )
        .session(&session)
        .send()
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let token = confirm_token(&confirmation_to(&sink, &new).await);
    // Nothing changed yet.
    assert_eq!(
        app.login(&old, "family password 1").await.status,
        StatusCode::OK
    );
    assert_eq!(me(&app, &session).await, StatusCode::OK);

    let confirmed = app
        .post("/api/v1/auth/email/confirm", &json!({"token": token}))
        .send()
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::NO_CONTENT,
        "{}",
        confirmed.text
    );
    assert_eq!(
        me(&app, &session).await,
        StatusCode::UNAUTHORIZED,
        "sessions ended"
    );
    assert_eq!(
        app.login(&old, "family password 1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let signed_in = app.login(&new, "family password 1").await;
    assert_eq!(signed_in.status, StatusCode::OK);
    assert_eq!(signed_in.json()["user"]["email"], new.as_str());
    let record = app
        .get(&format!("/api/v1/families/{family_id}"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(record.json()["email"], new.as_str(), "{}", record.text);

    let again = app
        .post("/api/v1/auth/email/confirm", &json!({"token": token}))
        .send()
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let unknown = app
        .post("/api/v1/auth/email/confirm", &json!({"token": "nope"}))
        .send()
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);

    // An address taken between the request and the confirmation is refused.
    let coordinator_session = app.login(&c.email, &c.password).await.session_token();
    let other = app.verified_coordinator(&sink).await;
    app.post(
        "/api/v1/auth/email",
        &json!({"current_password": c.password, "new_email": other.email}),
    )
    .session(&coordinator_session)
    .send()
    .await;
    let token = confirm_token(&confirmation_to(&sink, &other.email).await);
    let taken = app
        .post("/api/v1/auth/email/confirm", &json!({"token": token}))
        .send()
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.json()["error"]["code"], "email_taken");
    assert_eq!(
        app.login(&c.email, &c.password).await.status,
        StatusCode::OK
    );
}
