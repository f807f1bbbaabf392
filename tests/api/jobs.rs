//! Background jobs end to end: enrollment commits its jobs, workers deliver
//! them over real SMTP and HTTP, and failures are retried, deferred by the
//! breaker, or parked as dead until a coordinator retries them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::fakes::payment_provider::PaymentProvider;
use crate::support::fakes::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::{Backing, PASSWORD, TestApp, Tier, eventually, spawn_app_on, spawn_worker};

/// Fast retries and polling, so tests take seconds.
const FAST: &[&str] = &[
    "--job-poll",
    "50ms",
    "--job-retry-base",
    "100ms",
    "--job-retry-max",
    "1s",
];

async fn app_with(backing: Arc<Backing>, sink: &SmtpSink, extra: &[&str]) -> TestApp {
    let mut args: Vec<&str> = vec!["--smtp-url", sink.url()];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    spawn_app_on(backing, &args).await
}

fn pg_url(backing: &Backing) -> String {
    match backing {
        Backing::Postgres { db, .. } => db.url.clone(),
        _ => panic!("a PostgreSQL backing"),
    }
}

/// The invite token in a welcome email's link.
fn invite_token(mail: &ReceivedMail) -> String {
    mail.link_token("token=")
}

fn welcome_for<'a>(mails: &'a [ReceivedMail], email: &str) -> Option<&'a ReceivedMail> {
    mails.iter().find(|m| {
        m.to.iter().any(|to| to.contains(email))
            && m.subject
                .as_deref()
                .is_some_and(|s| s.starts_with("Welcome"))
    })
}

/// The coordinator's view of the queue: `GET` of that admin path, as JSON.
async fn admin_jobs(app: &TestApp, session: &str, path: &str) -> Value {
    let response = app.get(path).session(session).send().await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json()
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn enrollment_sends_welcome_and_notice_and_writes_the_calendar(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with(backing.clone(), &sink, &[]).await;
    // On PostgreSQL, jobs are run by `coop worker` processes.
    let _worker = match tier {
        Tier::Postgres => {
            let mut env = vec![("COOP_SMTP_URL", sink.url())];
            env.extend([("COOP_JOB_POLL", "50ms")]);
            Some(spawn_worker(&backing, &env).await)
        }
        Tier::Sqlite => None,
    };
    let coordinator = app.verified_coordinator(&sink).await;
    let family = app.family(&coordinator.session, "The Smiths").await;
    let family_email = family["email"].as_str().unwrap();
    let family_id = family["family_id"].as_str().unwrap();

    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 2, "welcome + coordinator notice: {mails:?}");
    let welcome = welcome_for(&mails, family_email).expect("a welcome email to the family");
    assert!(
        welcome
            .subject
            .as_deref()
            .unwrap()
            .contains("Riverside Co-op")
    );
    assert!(
        welcome.body().contains("/accept-invite#token="),
        "{}",
        welcome.body()
    );
    assert_eq!(
        welcome.message_id.as_deref(),
        Some(format!("<welcome_email.{family_id}@coop.localhost>").as_str())
    );
    let notice = mails
        .iter()
        .find(|m| m.to.iter().any(|to| to.contains(&coordinator.email)))
        .expect("a notice to the coordinator");
    assert!(notice.body().contains(family_email));

    // Calendar entries: wait for the job, then a valid iCalendar feed.
    let path = format!("/api/v1/families/{family_id}/calendar.ics");
    let started = Instant::now();
    let ics = loop {
        let response = app.get(&path).session(&coordinator.session).send().await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(
            response.header("content-type"),
            Some("text/calendar; charset=utf-8")
        );
        if response.text.matches("BEGIN:VEVENT").count() == 3 {
            break response.text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no calendar events: {}",
            response.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:"),
        "{ics}"
    );
    assert!(ics.trim_end().ends_with("END:VCALENDAR"));
    assert_eq!(ics.matches("END:VEVENT").count(), 3);
    for required in ["UID:", "DTSTAMP:", "DTSTART;VALUE=DATE:", "SUMMARY:"] {
        assert_eq!(ics.matches(required).count(), 3, "{required} in {ics}");
    }
    assert!(!ics.replace("\r\n", "").contains('\n'), "lines end in CRLF");

    // The coordinator sees the three jobs done (each is marked done just after
    // its effect, so poll).
    let all_three: HashSet<String> = HashSet::from([
        "welcome_email".into(),
        "coordinator_notice".into(),
        "calendar_events".into(),
    ]);
    eventually(
        "the three enrollment jobs to be done",
        Duration::from_secs(20),
        || async {
            let jobs = app
                .get("/api/v1/admin/jobs?state=done")
                .session(&coordinator.session)
                .send()
                .await;
            assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
            let kinds: HashSet<String> = jobs.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["kind"].as_str().unwrap().to_owned())
                .filter(|kind| kind != "signup_verification")
                .collect();
            (kinds == all_three).then_some(())
        },
    )
    .await;
}

async fn the_invite_lets_the_family_in_to_its_own_family_only(tier: Tier) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let app = app_with(backing.clone(), &sink, &["--run-jobs", "on"]).await;
    let coordinator = app.verified_coordinator(&sink).await;
    let ours = app.family(&coordinator.session, "The Smiths").await;
    let other = app.family(&coordinator.session, "The Joneses").await;
    let our_email = ours["email"].as_str().unwrap();
    let our_id = ours["family_id"].as_str().unwrap();
    let other_id = other["family_id"].as_str().unwrap();

    let mails = sink.wait_for(4, Duration::from_secs(20)).await;
    let token = invite_token(welcome_for(&mails, our_email).expect("welcome email"));

    let accepted = app
        .post(
            "/api/v1/auth/accept-invite",
            &json!({"token": token, "password": "a new family password"}),
        )
        .send()
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text);
    assert_eq!(accepted.json()["user"]["role"], "family");
    assert_eq!(accepted.json()["user"]["family_id"], our_id);

    // The family logs in with the password it chose.
    let login = app.login(our_email, "a new family password").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let session = login.session_token();
    let own = app
        .get(&format!("/api/v1/families/{our_id}"))
        .session(&session)
        .send()
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.json()["family_name"], "The Smiths");
    for path in [
        format!("/api/v1/families/{other_id}"),
        format!("/api/v1/families/{other_id}/calendar.ics"),
        format!("/api/v1/families/{other_id}/payments"),
    ] {
        let denied = app.get(&path).session(&session).send().await;
        assert_eq!(
            denied.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            denied.text
        );
        assert_eq!(denied.error_code(), "not_found");
    }
    // Coordinator-only endpoints stay closed to a family.
    let listing = app.get("/api/v1/families").session(&session).send().await;
    assert_eq!(listing.status, StatusCode::FORBIDDEN);
    let admin = app.get("/api/v1/admin/jobs").session(&session).send().await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN);

    // The token worked once.
    let again = app
        .post(
            "/api/v1/auth/accept-invite",
            &json!({"token": token, "password": "another password!"}),
        )
        .send()
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.error_code(), "invite_used");
}

async fn bad_invites_and_bad_payments_get_clear_errors(tier: Tier) {
    let sink = SmtpSink::start().await;
    let provider = PaymentProvider::start().await;
    let backing = Backing::new(tier).await;
    // Invites expire at once, so the expired case needs no waiting.
    let app = app_with(
        backing.clone(),
        &sink,
        &[
            "--run-jobs",
            "on",
            "--invite-ttl",
            "0s",
            "--payments-url",
            provider.url(),
        ],
    )
    .await;
    let coordinator = app.verified_coordinator(&sink).await;
    let family = app.family(&coordinator.session, "The Smiths").await;
    let family_id = family["family_id"].as_str().unwrap();
    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    let token = invite_token(welcome_for(&mails, family["email"].as_str().unwrap()).unwrap());

    let accept = |body: Value| app.post("/api/v1/auth/accept-invite", &body).send();
    let expired = accept(json!({"token": token, "password": "long enough password"})).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.text);
    assert_eq!(expired.error_code(), "invite_expired");
    let unknown =
        accept(json!({"token": "not-a-real-token", "password": "long enough password"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let short = accept(json!({"token": token, "password": "short"})).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        short.json()["error"]["fields"]["password"].is_string(),
        "{}",
        short.text
    );
    let missing = accept(json!({})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);

    let payments = format!("/api/v1/families/{family_id}/payments");
    for amount in [
        json!(-100),
        json!(0),
        json!(10_000_001),
        json!(1e20),
        json!(12.5),
        json!("100"),
        json!(null),
    ] {
        let refused = app
            .post(
                &payments,
                &json!({"amount_cents": amount, "description": "Term fee"}),
            )
            .session(&coordinator.session)
            .send()
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{amount}: {}",
            refused.text
        );
        assert!(
            refused.json()["error"]["fields"]["amount_cents"].is_string(),
            "{}",
            refused.text
        );
    }
    let no_description = app
        .post(&payments, &json!({"amount_cents": 100}))
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(no_description.status, StatusCode::UNPROCESSABLE_ENTITY);
    let nobody = app
        .post(
            &format!("/api/v1/families/{}/payments", Uuid::now_v7()),
            &json!({"amount_cents": 100, "description": "x"}),
        )
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND, "{}", nobody.text);

    // Queue administration: bad filters, unknown jobs, retrying a live job.
    let bad_state = app
        .get("/api/v1/admin/jobs?state=sleeping")
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_job = app
        .post(
            &format!("/api/v1/admin/jobs/{}/retry", Uuid::now_v7()),
            &json!({}),
        )
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(unknown_job.status, StatusCode::NOT_FOUND);
    let jobs = admin_jobs(&app, &coordinator.session, "/api/v1/admin/jobs").await;
    let some_job = jobs["items"][0]["job_id"].as_str().unwrap().to_owned();
    let not_dead = app
        .post(&format!("/api/v1/admin/jobs/{some_job}/retry"), &json!({}))
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(not_dead.status, StatusCode::CONFLICT, "{}", not_dead.text);
    assert_eq!(not_dead.error_code(), "job_not_dead");
}

async fn a_rejected_enrollment_leaves_no_jobs(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink, &["--run-jobs", "off"]).await;
    let coordinator = app.coordinator().await;
    let family = app.family(&coordinator.session, "The Smiths").await;
    let duplicate = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "Again", "email": family["email"]}),
        )
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let jobs = admin_jobs(&app, &coordinator.session, "/api/v1/admin/jobs").await;
    // Besides the founder's confirmation email, which nothing here sends.
    let jobs: Vec<_> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] != "signup_verification")
        .collect();
    assert_eq!(
        jobs.len(),
        3,
        "the committed enrollment's three jobs only: {jobs:?}"
    );
    // The emails wait for the founder's confirmation; the calendar does not.
    assert!(
        jobs.iter()
            .all(|j| j["state"] == "ready" || j["state"] == "held")
    );
}

async fn a_job_that_runs_out_of_attempts_is_dead_until_retried(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(
        Backing::new(tier).await,
        &sink,
        &[
            "--run-jobs",
            "on",
            "--job-max-attempts",
            "2",
            "--breaker-min-calls",
            "1000",
        ],
    )
    .await;
    let coordinator = app.verified_coordinator(&sink).await;
    sink.set_failing(true);
    app.family(&coordinator.session, "The Smiths").await;
    let dead_jobs = || async {
        admin_jobs(&app, &coordinator.session, "/api/v1/admin/jobs?state=dead").await["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    wait_until("two dead email jobs", Duration::from_secs(20), || async {
        dead_jobs().await.len() == 2
    })
    .await;
    let dead = dead_jobs().await;
    for job in &dead {
        for time in ["run_at", "created_at", "updated_at"] {
            crate::support::assert_utc_time(&job[time], time);
        }
        assert_eq!(job["attempts"], 2, "{job}");
        assert!(job["last_error"].as_str().unwrap().contains("451"), "{job}");
    }
    assert_eq!(sink.count(), 0);

    sink.set_failing(false);
    for job in &dead {
        let retried = app
            .post(
                &format!(
                    "/api/v1/admin/jobs/{}/retry",
                    job["job_id"].as_str().unwrap()
                ),
                &json!({}),
            )
            .session(&coordinator.session)
            .send()
            .await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
        assert_eq!(retried.json()["state"], "ready");
    }
    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 2);
    let metrics = app.metrics().await;
    assert!(metrics.contains("jobs_dead_total"), "dead jobs are counted");
}

crate::both_tiers!(
    enrollment_sends_welcome_and_notice_and_writes_the_calendar,
    the_invite_lets_the_family_in_to_its_own_family_only,
    bad_invites_and_bad_payments_get_clear_errors,
    a_rejected_enrollment_leaves_no_jobs,
    a_job_that_runs_out_of_attempts_is_dead_until_retried,
);

/// Without a provider configured, a payment is refused up front.
#[tokio::test]
async fn payments_without_a_provider_are_refused_with_the_setting_to_change() {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(Tier::Sqlite).await, &sink, &[]).await;
    let coordinator = app.verified_coordinator(&sink).await;
    let family = app.family(&coordinator.session, "The Smiths").await;
    let refused = app
        .post(
            &format!(
                "/api/v1/families/{}/payments",
                family["family_id"].as_str().unwrap()
            ),
            &json!({"amount_cents": 100, "description": "Term fee"}),
        )
        .session(&coordinator.session)
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.error_code(), "payments_not_configured");
    assert!(refused.text.contains("COOP_PAYMENTS_URL"));
}

/// 1,000 enrollments, two workers, one SIGKILLed midway: every family gets
/// exactly one welcome email; a duplicate can only come from the window
/// between the SMTP server's acceptance and the record of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_enrollments_survive_a_worker_killed_midway() {
    const FAMILIES: usize = 1_000;
    let sink = SmtpSink::start().await;
    // 20 ms per email: the workers are always mid-job when one is killed.
    sink.set_mail_delay(Duration::from_millis(20));
    let backing = Backing::new(Tier::Postgres).await;
    let app = app_with(backing.clone(), &sink, &["--run-jobs", "off"]).await;

    let env = [
        ("COOP_SMTP_URL", sink.url()),
        ("COOP_JOB_POLL", "50ms"),
        // A short lease, so the killed worker's jobs come back quickly.
        ("COOP_JOB_LEASE", "2s"),
        ("COOP_WORKER_CONCURRENCY", "8"),
    ];
    let mut doomed = spawn_worker(&backing, &env).await;
    let survivor = spawn_worker(&backing, &env).await;
    // The workers send the founder's confirmation too.
    let coordinator = app.verified_coordinator(&sink).await;

    // Enroll from 16 concurrent clients while the workers drain the queue.
    let emails: Vec<String> = (0..FAMILIES)
        .map(|i| format!("family-{i}-{}@example.org", Uuid::new_v4().simple()))
        .collect();
    let enroll = futures::stream::iter(emails.iter().cloned())
        .map(|email| {
            let request = app
                .post(
                    "/api/v1/families",
                    &json!({"family_name": "Family", "email": email}),
                )
                .session(&coordinator.session)
                .send();
            async move {
                let response = request.await;
                assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>();
    let kill_midway = async {
        wait_until(
            "two thirds of the first 1,000 emails",
            Duration::from_secs(120),
            || async { sink.count() >= FAMILIES * 2 / 3 },
        )
        .await;
        doomed.kill();
    };
    tokio::join!(enroll, kill_midway);

    // Both emails per family (welcome + notice): 2,000 distinct messages.
    let started = Instant::now();
    let expected = FAMILIES * 2;
    let unique = |mails: &[ReceivedMail]| -> HashSet<String> {
        mails.iter().filter_map(|m| m.message_id.clone()).collect()
    };
    while unique(&sink.messages()).len() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {} of {expected} distinct emails arrived",
            unique(&sink.messages()).len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mails = sink.messages();
    let mut welcomes_per_family: HashMap<String, usize> = HashMap::new();
    for mail in mails.iter().filter(|m| {
        m.subject
            .as_deref()
            .is_some_and(|s| s.starts_with("Welcome"))
    }) {
        *welcomes_per_family.entry(mail.to.join(",")).or_default() += 1;
    }
    assert_eq!(
        welcomes_per_family.len(),
        FAMILIES,
        "every family got a welcome"
    );
    for email in &emails {
        assert!(
            welcomes_per_family.keys().any(|to| to.contains(email)),
            "{email} got no welcome"
        );
    }
    let duplicates = mails.len() - unique(&mails).len();
    let mut seen = HashSet::new();
    let repeated: Vec<&str> = mails
        .iter()
        .filter_map(|m| m.message_id.as_deref())
        .filter(|id| !seen.insert(*id))
        .collect();
    println!("repeated Message-IDs: {repeated:?}");
    let reclaimed = survivor.metric("jobs_lease_expired_total", &[]).await;
    println!("jobs the killed worker held, reclaimed by the survivor: {reclaimed}");
    assert!(
        reclaimed >= 1.0,
        "the killed worker held no job: the test proved nothing"
    );
    for name in [
        "email_send_seconds",
        "email_duplicate_window_seconds",
        "job_run_seconds",
    ] {
        let sum = survivor.metric(&format!("{name}_sum"), &[]).await;
        let count = survivor.metric(&format!("{name}_count"), &[]).await;
        println!(
            "survivor {name}: mean {:.2} ms over {count}",
            sum / count * 1e3
        );
    }
    println!(
        "1,000 enrollments, a worker SIGKILLed midway: {} emails, {} distinct, {duplicates} duplicates",
        mails.len(),
        unique(&mails).len()
    );
    // Only a job that was between the server's 250 and its record can repeat:
    // at most one per job the killed worker was running (its concurrency).
    assert!(
        duplicates <= 8,
        "{duplicates} duplicates exceed the killed worker's in-flight jobs"
    );

    // No job lost or stuck: every one done.
    let pool = sqlx::PgPool::connect(&pg_url(&backing)).await.unwrap();
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut done = 0;
    let started = Instant::now();
    while done != FAMILIES as i64 * 3 {
        let states: Vec<(String, i64)> =
            // (Besides the founder's confirmation email.)
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM jobs WHERE kind <> 'signup_verification' GROUP BY state",
            )
                .fetch_all(&pool)
                .await
                .unwrap();
        done = states
            .iter()
            .find(|(s, _)| s == "done")
            .map_or(0, |(_, n)| *n);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "jobs not all done: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(states);
    pool.close().await;
}

/// The payment provider goes down: the breaker opens after the threshold,
/// makes no calls while open, probes when half-open, and once the provider is
/// back every payment succeeds, charged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_provider_outage_opens_the_breaker_and_every_payment_is_charged_once() {
    let sink = SmtpSink::start().await;
    let provider = PaymentProvider::start().await;
    provider.set_down(true);
    let backing = Backing::new(Tier::Postgres).await;
    let app = app_with(
        backing.clone(),
        &sink,
        &["--run-jobs", "off", "--payments-url", provider.url()],
    )
    .await;
    let coordinator = app.coordinator().await;
    let family = app.family(&coordinator.session, "The Smiths").await;
    let family_id = family["family_id"].as_str().unwrap().to_owned();
    let worker = spawn_worker(
        &backing,
        &[
            ("COOP_SMTP_URL", sink.url()),
            ("COOP_PAYMENTS_URL", provider.url()),
            ("COOP_JOB_POLL", "50ms"),
            ("COOP_JOB_RETRY_BASE", "100ms"),
            ("COOP_JOB_RETRY_MAX", "300ms"),
            ("COOP_BREAKER_MIN_CALLS", "4"),
            ("COOP_BREAKER_FAILURE_RATE", "0.5"),
            ("COOP_BREAKER_OPEN_FOR", "2s"),
            ("COOP_BREAKER_HALF_OPEN_PROBES", "1"),
        ],
    )
    .await;

    let mut payment_ids = Vec::new();
    for i in 0..6 {
        let created = app
            .post(
                &format!("/api/v1/families/{family_id}/payments"),
                &json!({"amount_cents": 1_000 + i, "description": format!("Term fee {i}")}),
            )
            .session(&coordinator.session)
            .send()
            .await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
        assert_eq!(created.json()["state"], "pending");
        payment_ids.push(created.json()["payment_id"].as_str().unwrap().to_owned());
    }

    let opened = r#"to="open""#;
    let breaker = r#"breaker="payments""#;
    wait_until(
        "the payments breaker to open",
        Duration::from_secs(20),
        || async {
            worker
                .metric("breaker_transitions_total", &[breaker, opened])
                .await
                >= 1.0
        },
    )
    .await;
    let calls_at_open = provider.calls();
    assert!(
        calls_at_open >= 4,
        "opened after the minimum number of calls, not before"
    );
    // While open (2 s), no call reaches the provider.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        provider.calls(),
        calls_at_open,
        "no calls while the breaker is open"
    );

    // Then a half-open probe goes through, fails (still down) and reopens it.
    wait_until("a half-open probe", Duration::from_secs(10), || async {
        worker
            .metric(
                "breaker_transitions_total",
                &[breaker, r#"from="half_open",to="open""#],
            )
            .await
            >= 1.0
    })
    .await;
    assert!(
        provider.calls() > calls_at_open,
        "the probe reached the provider"
    );

    // Back up: the next probe closes the breaker and every payment succeeds.
    provider.set_down(false);
    for id in &payment_ids {
        let path = format!("/api/v1/families/{family_id}/payments/{id}");
        wait_until(
            "the payment to succeed",
            Duration::from_secs(30),
            || async {
                let payment = app
                    .get(&path)
                    .session(&coordinator.session)
                    .send()
                    .await
                    .json();
                assert_ne!(payment["state"], "failed", "{payment}");
                payment["state"] == "succeeded"
            },
        )
        .await;
        assert_eq!(provider.charges_for(id), 1, "charged exactly once");
    }
    assert_eq!(provider.charges(), payment_ids.len());
    assert!(
        worker
            .metric("breaker_transitions_total", &[breaker, r#"to="closed""#])
            .await
            >= 1.0
    );
    // Deferred while open, the jobs were never failed for it: none is dead.
    let dead = admin_jobs(&app, &coordinator.session, "/api/v1/admin/jobs?state=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 0, "{dead}");
}

/// SIGTERM: the worker stops claiming, finishes what it runs, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_exits_cleanly_on_sigterm() {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(Tier::Postgres).await;
    let mut worker = spawn_worker(&backing, &[("COOP_SMTP_URL", sink.url())]).await;
    let status = worker.terminate(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    let _ = PASSWORD;
}
