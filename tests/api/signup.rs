//! Verified sign-up: a co-op works from its founding, but its emails to
//! anyone else wait until the founder confirms their address; the sign-up's
//! answer never tells which addresses have accounts.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_tiers;
use crate::support::fakes::smtp_sink::SmtpSink;
use crate::support::{Backing, PASSWORD, RawDb, TestApp, Tier, spawn_app_on};

both_tiers!(
    the_answer_is_the_same_for_a_registered_email,
    an_unconfirmed_coops_invites_wait_for_the_confirmation,
    a_founder_who_lost_the_link_gets_a_new_one,
    an_invite_frees_an_address_an_unconfirmed_founder_took,
    confirmation_links_are_checked,
);

async fn app_with_mail(backing: Arc<Backing>, sink: &SmtpSink) -> TestApp {
    spawn_app_on(
        backing,
        &[
            "--smtp-url",
            sink.url(),
            "--job-poll",
            "50ms",
            "--run-jobs",
            "on",
        ],
    )
    .await
}

fn sign_up_body(email: &str) -> Value {
    json!({"name": "Riverside Co-op", "coordinator": {"name": "Ada Lovelace", "email": email, "password": PASSWORD}})
}

fn unique_email() -> String {
    format!("{}@example.org", uuid::Uuid::new_v4().simple())
}

async fn the_answer_is_the_same_for_a_registered_email(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with_mail(backing.clone(), &sink).await;
    let raw = RawDb::open(&backing).await;
    let fresh = app
        .post("/api/v1/coops", &sign_up_body(&unique_email()))
        .send()
        .await;
    let existing = app.verified_coordinator(&sink).await;
    let coops_before = raw.number("SELECT COUNT(*) FROM coops").await;

    let again = app
        .post(
            "/api/v1/coops",
            &sign_up_body(&existing.email.to_uppercase()),
        )
        .send()
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.status, fresh.status);
    assert_eq!(again.text, fresh.text, "the same answer, word for word");
    assert_eq!(raw.number("SELECT COUNT(*) FROM coops").await, coops_before);
    // The address's owner hears of it; the account is untouched.
    let notice = sink
        .take_mail_to(&existing.email, Duration::from_secs(20))
        .await;
    assert_eq!(
        notice.subject.as_deref(),
        Some("You already have a Coop account")
    );
    assert!(
        notice.body().contains("/forgot-password"),
        "{}",
        notice.body()
    );
    assert!(
        !notice.body().contains("Riverside"),
        "no text of the sign-up's own"
    );
    let login = app.login(&existing.email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

async fn an_unconfirmed_coops_invites_wait_for_the_confirmation(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(Backing::new(tier).await, &sink).await;
    let c = app.coordinator().await;
    // The co-op works at once: a family can be added.
    let family = app.family(&c.session, "The Smiths").await;
    let family_email = family["email"].as_str().unwrap().to_owned();
    let confirmation = sink.take_mail_to(&c.email, Duration::from_secs(20)).await;
    assert_eq!(
        confirmation.subject.as_deref(),
        Some("Confirm your email to start your co-op")
    );
    assert!(
        !confirmation.body().contains("Riverside") && !confirmation.body().contains("Ada"),
        "the confirmation carries none of the sign-up's text: {}",
        confirmation.body()
    );
    // Nothing goes to the family while the co-op is unconfirmed; its jobs
    // are listed as held.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.count(), 0, "{:?}", sink.messages());
    let jobs = app
        .get("/api/v1/admin/jobs")
        .session(&c.session)
        .send()
        .await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
    let welcome = jobs.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "welcome_email")
        .cloned()
        .expect("a welcome job");
    assert_eq!(welcome["state"], "held", "{welcome}");
    assert!(welcome["run_at"].is_null(), "{welcome}");
    let kinds_in = |state: &'static str| {
        let app = &app;
        let session = c.session.clone();
        async move {
            let jobs = app
                .get(&format!("/api/v1/admin/jobs?state={state}"))
                .session(&session)
                .send()
                .await;
            assert_eq!(jobs.status, StatusCode::OK, "{state}: {}", jobs.text);
            jobs.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["kind"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert!(kinds_in("held").await.contains(&"welcome_email".to_owned()));
    assert!(
        !kinds_in("ready")
            .await
            .contains(&"welcome_email".to_owned())
    );

    let token = confirmation.link_token("/verify-email#token=");
    let verified = app
        .post("/api/v1/auth/verify-email", &json!({ "token": token }))
        .send()
        .await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.text);
    // Held, not lost: the welcome goes out now.
    let welcome = sink
        .take_mail_to(&family_email, Duration::from_secs(20))
        .await;
    assert!(welcome.body().contains("/accept-invite#token="));
    // A second use of the link is fine: the address is confirmed.
    let again = app
        .post("/api/v1/auth/verify-email", &json!({ "token": token }))
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.text);
}

async fn a_founder_who_lost_the_link_gets_a_new_one(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with_mail(backing.clone(), &sink).await;
    let raw = RawDb::open(&backing).await;
    let c = app.coordinator().await;
    let _lost = sink.take_mail_to(&c.email, Duration::from_secs(20)).await;
    let again = app
        .post("/api/v1/coops", &sign_up_body(&c.email))
        .send()
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(
        raw.number("SELECT COUNT(*) FROM coops").await,
        1,
        "no second co-op"
    );
    let second = sink.take_mail_to(&c.email, Duration::from_secs(20)).await;
    let verified = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({ "token": second.link_token("/verify-email#token=") }),
        )
        .send()
        .await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.text);
}

async fn an_invite_frees_an_address_an_unconfirmed_founder_took(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with_mail(backing.clone(), &sink).await;
    let raw = RawDb::open(&backing).await;
    let real = app.verified_coordinator(&sink).await;
    let family = app.family(&real.session, "The Smiths").await;
    let family_email = family["email"].as_str().unwrap().to_owned();
    let welcome = sink
        .take_mail_to(&family_email, Duration::from_secs(20))
        .await;
    // Someone else founds a co-op with the family's address first, and never
    // confirms it (they cannot: the mail goes to the family).
    let squat = app
        .post("/api/v1/coops", &sign_up_body(&family_email))
        .send()
        .await;
    assert_eq!(squat.status, StatusCode::ACCEPTED, "{}", squat.text);
    assert_eq!(raw.number("SELECT COUNT(*) FROM coops").await, 2);

    let accepted = app
        .post(
            "/api/v1/auth/accept-invite",
            &json!({"token": welcome.link_token("/accept-invite#token="), "password": "family password 1"}),
        )
        .send()
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    assert_eq!(accepted.json()["user"]["family_id"], family["family_id"]);
    assert_eq!(
        raw.number("SELECT COUNT(*) FROM coops").await,
        1,
        "the unconfirmed claim on the address is gone"
    );
    let login = app.login(&family_email, "family password 1").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

async fn confirmation_links_are_checked(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with_mail(backing.clone(), &sink).await;
    let raw = RawDb::open(&backing).await;
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (body, status) in cases {
        let response = app.post("/api/v1/auth/verify-email", &body).send().await;
        assert_eq!(response.status, status, "{body}: {}", response.text);
        assert!(!response.error_code().is_empty());
    }
    let c = app.coordinator().await;
    let mail = sink.take_mail_to(&c.email, Duration::from_secs(20)).await;
    raw.execute("UPDATE signup_verifications SET expires_at = 0")
        .await;
    let expired = app
        .post(
            "/api/v1/auth/verify-email",
            &json!({ "token": mail.link_token("/verify-email#token=") }),
        )
        .send()
        .await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert_eq!(expired.error_code(), "verification_expired");
    assert_eq!(
        raw.number("SELECT COUNT(*) FROM coops WHERE verified_at IS NULL")
            .await,
        1,
        "still unconfirmed"
    );
}
