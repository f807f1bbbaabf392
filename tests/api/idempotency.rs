use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::support::{
    Backing, Coordinator, Endpoint, PASSWORD, TestResponse, Tier, spawn_app, spawn_app_on,
};

both_tiers!(
    a_repeated_request_replays_the_first_response,
    a_reused_key_with_another_body_is_a_422,
    keys_belong_to_their_user,
    concurrent_repeats_create_one_family,
    unauthenticated_posts_are_idempotent_too,
    session_tokens_are_never_stored_with_a_key,
    a_strangers_reuse_of_an_anonymous_key_fails_nobody,
);

async fn family_count(app: &crate::support::TestApp, session: &str) -> usize {
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
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
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
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    assert_eq!(first.json(), second.json());
    // Replayed, not run again: a second run would have found the address
    // taken and queued a note to its owner.
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(raw.count("coops").await, 1);
    assert_eq!(raw.count("jobs").await, 1, "only the confirmation email");
}

/// A keyed log-in is not saved for replay: its answer carries a live
/// session token, which would sit in the idempotency table in plain text.
async fn session_tokens_are_never_stored_with_a_key(tier: Tier) {
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
    let c = app.coordinator().await;
    let login = || async {
        app.post(
            "/api/v1/auth/login",
            &json!({"email": c.email, "password": PASSWORD}),
        )
        .header("idempotency-key", "login-once")
        .send()
        .await
    };
    let first = login().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let token = first.session_token();
    assert_eq!(
        raw.count(&format!(
            "idempotency WHERE headers LIKE '%{token}%' OR headers LIKE '%coop_session%'"
        ))
        .await,
        0,
        "no session token in the idempotency table"
    );
    // A repeat signs in again (a new session), rather than replaying.
    let again = login().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(again.header("idempotent-replayed").is_none());
    assert_ne!(again.session_token(), token);
}

/// Anonymous keys are scoped to the request: someone who sends another
/// body with a key they saw (or guessed) gets no 422 and no "in progress",
/// and the key's owner still gets their own answer.
async fn a_strangers_reuse_of_an_anonymous_key_fails_nobody(tier: Tier) {
    let app = spawn_app(tier).await;
    let sign_up = |email: String| json!({"name": "Co-op", "coordinator": {"name": "Ada", "email": email, "password": PASSWORD}});
    let key = "shared-anonymous-key";
    let stranger = app
        .post(
            "/api/v1/coops",
            &sign_up(format!("{}@example.org", uuid::Uuid::new_v4().simple())),
        )
        .header("idempotency-key", key)
        .send()
        .await;
    assert_eq!(stranger.status, StatusCode::ACCEPTED, "{}", stranger.text);
    let owner_email = format!("{}@example.org", uuid::Uuid::new_v4().simple());
    let owner = app
        .post("/api/v1/coops", &sign_up(owner_email.clone()))
        .header("idempotency-key", key)
        .send()
        .await;
    assert_eq!(owner.status, StatusCode::ACCEPTED, "{}", owner.text);
    assert!(
        owner.header("idempotent-replayed").is_none(),
        "the owner's work ran"
    );
    assert_eq!(
        app.login(&owner_email, PASSWORD).await.status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------
// Recovery: a request holding a key dies (its instance is killed, or the
// request is abandoned at COOP_REQUEST_TIMEOUT) before its response is saved.

both_tiers!(
    a_dead_owners_reservation_is_taken_over_once_its_lease_passes,
    a_takeover_answers_with_the_family_the_dead_request_enrolled,
    a_takeover_answers_with_the_payment_the_dead_request_created,
    a_takeover_answers_with_the_coop_the_dead_request_founded,
    concurrent_takeovers_run_the_work_once,
    work_under_a_lost_claim_cannot_commit,
);

/// Direct access to an app's database, to set up what a dead instance leaves
/// behind and to count rows.
enum Raw {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Raw {
    async fn open(backing: &Backing) -> Self {
        match backing {
            Backing::Postgres { db, .. } => {
                Raw::Postgres(sqlx::PgPool::connect(&db.url).await.expect("connect"))
            }
            Backing::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("coop.sqlite3").display());
                Raw::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("open"))
            }
            Backing::Args(_) => panic!("no database handle for Backing::Args"),
        }
    }

    /// What an instance that reserved `key` and died leaves: a reservation
    /// with no response, owned by a request that no longer exists.
    async fn reserve(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        lease_until_ms: i64,
    ) -> uuid::Uuid {
        const SQL: &str = "INSERT INTO idempotency \
             (scope, key, request_hash, created_at, owner, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let owner = uuid::Uuid::new_v4();
        match self {
            Raw::Postgres(pool) => sqlx::query(SQL)
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(owner)
                .bind(lease_until_ms)
                .execute(pool)
                .await
                .map(drop),
            Raw::Sqlite(pool) => sqlx::query(SQL)
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(owner)
                .bind(lease_until_ms)
                .execute(pool)
                .await
                .map(drop),
        }
        .expect("insert a reservation");
        owner
    }

    async fn resource(&self, scope: &str, key: &str) -> Option<String> {
        const SQL: &str = "SELECT resource FROM idempotency WHERE scope = $1 AND key = $2";
        match self {
            Raw::Postgres(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(scope)
                    .bind(key)
                    .fetch_one(pool)
                    .await
            }
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(scope)
                    .bind(key)
                    .fetch_one(pool)
                    .await
            }
        }
        .expect("read the resource")
    }

    async fn set_lease(&self, scope: &str, key: &str, lease_until_ms: i64) {
        const SQL: &str = "UPDATE idempotency SET lease_until = $1 WHERE scope = $2 AND key = $3";
        let updated = match self {
            Raw::Postgres(pool) => sqlx::query(SQL)
                .bind(lease_until_ms)
                .bind(scope)
                .bind(key)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Raw::Sqlite(pool) => sqlx::query(SQL)
                .bind(lease_until_ms)
                .bind(scope)
                .bind(key)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("update the lease");
        assert_eq!(updated, 1);
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            Raw::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
            Raw::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
        }
        .expect("count rows")
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The request hash the app stores for a POST of `body` (as `Req::json` sends it).
fn hash_of(path: &str, body: &serde_json::Value) -> String {
    coop_web::http::idempotency::fingerprint(
        &axum::http::Method::POST,
        &path.parse().unwrap(),
        &serde_json::to_vec(body).unwrap(),
    )
}

fn scope_of(c: &Coordinator) -> String {
    format!("user:{}", c.user_id)
}

async fn send_keyed(
    app: &Endpoint,
    session: &str,
    path: &str,
    body: &serde_json::Value,
    key: &str,
) -> TestResponse {
    app.post(path, body)
        .session(session)
        .header("idempotency-key", key)
        .send()
        .await
}

/// POSTs with `key` as a client of a Stripe-style API does: a 409
/// `request_in_progress` (or a 503) is retried after its `Retry-After`.
async fn post_until_answered(
    app: &Endpoint,
    session: &str,
    path: &str,
    body: &serde_json::Value,
    key: &str,
) -> TestResponse {
    let started = std::time::Instant::now();
    loop {
        let response = send_keyed(app, session, path, body, key).await;
        let retry = response.status == StatusCode::SERVICE_UNAVAILABLE
            || (response.status == StatusCode::CONFLICT
                && response.error_code() == "request_in_progress");
        if !retry {
            return response;
        }
        let wait = response
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .expect("a retryable answer says when to retry");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still {} after 30 s: {}",
            response.status,
            response.text
        );
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

async fn a_dead_owners_reservation_is_taken_over_once_its_lease_passes(tier: Tier) {
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
    let c = app.coordinator().await;
    let body = json!({"family_name": "Orphans", "email": "orphans@example.org"});
    let hash = hash_of("/api/v1/families", &body);
    let send = || {
        app.post("/api/v1/families", &body)
            .session(&c.session)
            .header("idempotency-key", "orphaned")
            .send()
    };

    // The owner's lease still runs: it may be alive and about to commit.
    raw.reserve(&scope_of(&c), "orphaned", &hash, now_ms() + 60_000)
        .await;
    let waiting = send().await;
    assert_eq!(waiting.status, StatusCode::CONFLICT, "{}", waiting.text);
    assert_eq!(waiting.error_code(), "request_in_progress");
    assert_eq!(waiting.header("retry-after"), Some("1"));
    assert_eq!(raw.count("families").await, 0);

    // Its lease passes without a commit: the owner is gone and did nothing.
    raw.set_lease(&scope_of(&c), "orphaned", now_ms() - 1).await;
    let first = send().await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(
        first.header("idempotent-replayed").is_none(),
        "the work ran"
    );
    assert_eq!(raw.count("families").await, 1);
    assert_eq!(
        raw.count("jobs WHERE kind <> 'signup_verification'").await,
        3,
        "one enrollment's jobs"
    );

    let again = send().await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(raw.count("families").await, 1, "the work ran exactly once");

    // A different request under the same key is still refused.
    let other = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "Other", "email": "other@example.org"}),
        )
        .session(&c.session)
        .header("idempotency-key", "orphaned")
        .send()
        .await;
    assert_eq!(other.error_code(), "idempotency_key_reused");
}

/// Instance A commits the work, then is held before saving the response until
/// COOP_REQUEST_TIMEOUT abandons the request: what a kill between commit and
/// save leaves. Repeats go to instance B.
const DIES_AFTER_COMMIT: &[&str] = &[
    "--request-timeout",
    "1s",
    "--idempotency-lease",
    "3s",
    "--idempotency-save-delay",
    "30s",
];

async fn a_takeover_answers_with_the_family_the_dead_request_enrolled(tier: Tier) {
    let backing = Backing::new(tier).await;
    let a = spawn_app_on(backing.clone(), DIES_AFTER_COMMIT).await;
    let b = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
    let c = b.coordinator().await;
    let body = json!({"family_name": "Survivors", "email": "survivors@example.org"});
    let (path, key) = ("/api/v1/families", "enroll-survivors");

    let started = std::time::Instant::now();
    let lost = send_keyed(&a, &c.session, path, &body, key).await;
    assert_eq!(
        lost.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        lost.text
    );
    assert_eq!(lost.error_code(), "request_timeout");
    assert_eq!(raw.count("families").await, 1, "A's work committed");

    // A's lease (3 s from its start) has not passed yet.
    let early = send_keyed(&b, &c.session, path, &body, key).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the machine is too slow for this test's 3 s lease"
    );
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);
    assert_eq!(early.header("retry-after"), Some("1"));

    let answered = post_until_answered(&b, &c.session, path, &body, key).await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.text);
    let family = answered.json();
    assert_eq!(family["email"], "survivors@example.org");
    let location = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    assert_eq!(answered.header("location"), Some(location.as_str()));
    assert_eq!(raw.count("families").await, 1, "nothing enrolled twice");
    assert_eq!(
        raw.count("jobs WHERE kind <> 'signup_verification'").await,
        3,
        "no second set of jobs"
    );
    let page = b
        .get("/api/v1/families")
        .session(&c.session)
        .send()
        .await
        .json();
    assert_eq!(page["items"][0]["family_id"], family["family_id"]);

    // That answer is now the key's saved response.
    let replayed = send_keyed(&b, &c.session, path, &body, key).await;
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.text, answered.text);
}

async fn a_takeover_answers_with_the_payment_the_dead_request_created(tier: Tier) {
    let backing = Backing::new(tier).await;
    // Nothing listens on the provider URL, and jobs stay queued: this test is
    // about the request, not the charge.
    let settings = ["--run-jobs", "off", "--payments-url", "http://127.0.0.1:9"];
    let a = spawn_app_on(backing.clone(), &[DIES_AFTER_COMMIT, &settings].concat()).await;
    let b = spawn_app_on(backing.clone(), &settings).await;
    let raw = Raw::open(&backing).await;
    let c = b.coordinator().await;
    let family = b.family(&c.session, "Payers").await;
    let path = format!(
        "/api/v1/families/{}/payments",
        family["family_id"].as_str().unwrap()
    );
    let body = json!({"amount_cents": 12_500, "description": "Autumn term"});
    let jobs_before = raw.count("jobs").await;

    let lost = send_keyed(&a, &c.session, &path, &body, "autumn-fee").await;
    assert_eq!(
        lost.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        lost.text
    );
    assert_eq!(raw.count("payments").await, 1, "A's work committed");

    let answered = post_until_answered(&b, &c.session, &path, &body, "autumn-fee").await;
    assert_eq!(answered.status, StatusCode::ACCEPTED, "{}", answered.text);
    let payment = answered.json();
    assert_eq!(payment["amount_cents"], 12_500);
    assert_eq!(payment["state"], "pending");
    crate::support::assert_utc_time(&payment["created_at"], "created_at");
    crate::support::assert_utc_time(&payment["updated_at"], "updated_at");
    assert_eq!(
        answered.header("location"),
        Some(format!("{path}/{}", payment["payment_id"].as_str().unwrap()).as_str())
    );
    assert_eq!(raw.count("payments").await, 1, "charged once, not twice");
    assert_eq!(raw.count("jobs").await, jobs_before + 1, "one charge job");
}

async fn a_takeover_answers_with_the_coop_the_dead_request_founded(tier: Tier) {
    let backing = Backing::new(tier).await;
    let a = spawn_app_on(backing.clone(), DIES_AFTER_COMMIT).await;
    let b = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
    let email = format!("{}@example.org", uuid::Uuid::new_v4().simple());
    let body = json!({"name": "Co-op", "coordinator": {"name": "Ada", "email": email, "password": PASSWORD}});
    let key = uuid::Uuid::new_v4().to_string();

    let lost = a
        .post("/api/v1/coops", &body)
        .header("idempotency-key", &key)
        .send()
        .await;
    assert_eq!(
        lost.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        lost.text
    );
    assert_eq!(raw.count("coops").await, 1, "A's work committed");

    let answered = loop {
        let response = b
            .post("/api/v1/coops", &body)
            .header("idempotency-key", &key)
            .send()
            .await;
        if response.status != StatusCode::CONFLICT {
            break response;
        }
        assert_eq!(response.error_code(), "request_in_progress");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(answered.status, StatusCode::ACCEPTED, "{}", answered.text);
    assert_eq!(raw.count("coops").await, 1);
    assert_eq!(raw.count("users").await, 1);
    // Answered for A's work, not run again: a second run would have found
    // the address taken and queued a note to its owner.
    assert_eq!(raw.count("jobs").await, 1, "only the confirmation email");
    let login = b.login(&email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}

async fn concurrent_takeovers_run_the_work_once(tier: Tier) {
    let backing = Backing::new(tier).await;
    // The winner holds the key for a while after its work, so every other
    // taker meets its fresh lease rather than its saved response.
    let app = spawn_app_on(backing.clone(), &["--idempotency-save-delay", "3s"]).await;
    let raw = Raw::open(&backing).await;
    let c = app.coordinator().await;
    let body = json!({"family_name": "Racers", "email": "racers@example.org"});
    raw.reserve(
        &scope_of(&c),
        "contested",
        &hash_of("/api/v1/families", &body),
        now_ms() - 1,
    )
    .await;

    let attempts = (0..8).map(|_| {
        app.post("/api/v1/families", &body)
            .session(&c.session)
            .header("idempotency-key", "contested")
            .send()
    });
    let responses = futures::future::join_all(attempts).await;
    let created: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "one taker ran the work");
    for response in responses.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text);
        assert_eq!(response.error_code(), "request_in_progress");
    }
    assert_eq!(raw.count("families").await, 1);
    assert_eq!(
        raw.count("jobs WHERE kind <> 'signup_verification'").await,
        3
    );
}

/// The scenario with a real process and a real SIGKILL: the instance
/// dies after committing an enrollment and before answering; the client's
/// retry, on another instance, gets that family, and nothing is enrolled twice.
// The doomed process is held between commit and save by a test knob, which
// only a binary built with `test-knobs` reads.
#[cfg(feature = "test-knobs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_instance_is_killed_after_commit_is_answered_by_another() {
    use crate::support::spawn_process;

    let backing = Backing::new(Tier::Postgres).await;
    // The kill comes well before the request timeout would abandon the request.
    let timeouts = [
        ("COOP_REQUEST_TIMEOUT", "4s"),
        ("COOP_IDEMPOTENCY_LEASE", "5s"),
    ];
    let doomed = spawn_process(
        backing.clone(),
        &[
            timeouts.as_slice(),
            &[("COOP_IDEMPOTENCY_SAVE_DELAY", "60s")],
        ]
        .concat(),
    )
    .await;
    let survivor = spawn_process(backing.clone(), &timeouts).await;
    let raw = Raw::open(&backing).await;
    let c = survivor.coordinator().await;
    let body = json!({"family_name": "Killed", "email": "killed@example.org"});

    let in_flight = {
        let address = doomed.address.clone();
        let (session, body) = (c.session.clone(), body.clone());
        tokio::spawn(async move {
            crate::support::client()
                .post(format!("{address}/api/v1/families"))
                .header("cookie", format!("coop_session={session}"))
                .header("idempotency-key", "killed-mid-request")
                .json(&body)
                .send()
                .await
        })
    };
    let started = std::time::Instant::now();
    while raw.count("families").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not committed within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(doomed); // SIGKILL, while it waits to save the response
    let outcome = in_flight.await.unwrap();
    assert!(outcome.is_err(), "the client saw the connection die");

    let answered = post_until_answered(
        &survivor,
        &c.session,
        "/api/v1/families",
        &body,
        "killed-mid-request",
    )
    .await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.text);
    assert_eq!(answered.json()["email"], "killed@example.org");
    assert_eq!(raw.count("families").await, 1);
    assert_eq!(
        raw.count("jobs WHERE kind <> 'signup_verification'").await,
        3
    );
}

/// The fence itself, below HTTP: work under a claim that no longer owns its key
/// (a takeover gave the key a new owner) writes nothing at all; under the
/// current owner it commits and records on the key what it created.
async fn work_under_a_lost_claim_cannot_commit(tier: Tier) {
    use coop_domain::{Email, Name, PasswordHash, PaymentState};
    use coop_mechanisms::store::idempotency::Claim;
    use coop_mechanisms::store::{coops, families, payments};

    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &[]).await;
    let raw = Raw::open(&backing).await;
    let c = app.coordinator().await;
    let db =
        coop_mechanisms::store::Db::connect(&crate::support::config_from(&backing.args()).database)
            .await
            .expect("connect");
    let coop_id = uuid::Uuid::parse_str(&c.coop_id).unwrap();
    let (coops_before, jobs_before) = (raw.count("coops").await, raw.count("jobs").await);
    let scope = scope_of(&c);
    let owner = raw.reserve(&scope, "fenced", "h", now_ms() + 60_000).await;
    let lost = Claim {
        scope: scope.clone(),
        key: "fenced".into(),
        owner: uuid::Uuid::new_v4(),
        committed: None,
    };

    let name = Name::parse("Fenced").unwrap();
    let email = Email::parse("fenced@example.org").unwrap();
    let fields = families::FamilyFields {
        family_name: &name,
        email: &email,
        enrollment_date: time::OffsetDateTime::now_utc().date(),
    };
    let jobs_for =
        |row: &families::FamilyRow| coop_services::jobs::enrollment_jobs(row.coop_id, row.id, 3);
    let enrolled = families::insert(&db, coop_id, &fields, jobs_for, Some(&lost))
        .await
        .expect("no database error");
    assert!(enrolled.is_none(), "a lost claim enrolls nobody");

    let payment = payments::PaymentRow {
        id: uuid::Uuid::now_v7(),
        coop_id,
        family_id: uuid::Uuid::now_v7(),
        amount_cents: 100,
        currency: "usd".into(),
        description: "fee".into(),
        state: PaymentState::Pending,
        provider_charge_id: None,
        failure_reason: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    };
    let job = coop_services::jobs::payment_job(coop_id, payment.id, 3);
    let charged = payments::create(&db, &payment, &job, Some(&lost))
        .await
        .expect("no database error");
    assert!(!charged, "a lost claim creates no payment");

    let coordinator = Email::parse("fenced-coordinator@example.org").unwrap();
    let password = PasswordHash("not-a-real-hash".into());
    let new_coop = coops::NewCoop {
        name: &name,
        coordinator_name: &name,
        coordinator_email: &coordinator,
        coordinator_password: &password,
    };
    let founded = coops::create_coop(&db, new_coop, Some(&lost), |coop, user| {
        coop_services::jobs::signup_verification_job(coop, user, 3)
    })
    .await
    .expect("no database error");
    assert!(founded.is_none(), "a lost claim founds no co-op");

    assert_eq!(raw.count("families").await, 0);
    assert_eq!(raw.count("payments").await, 0);
    assert_eq!(raw.count("coops").await, coops_before);
    assert_eq!(raw.count("jobs").await, jobs_before);
    assert_eq!(raw.resource(&scope, "fenced").await, None);

    // The key's real owner commits, and the key records what it created.
    let owned = Claim { owner, ..lost };
    let (row, _) = families::insert(&db, coop_id, &fields, jobs_for, Some(&owned))
        .await
        .expect("no database error")
        .expect("the owner's work commits");
    assert_eq!(raw.count("families").await, 1);
    assert_eq!(raw.count("jobs").await, jobs_before + 3);
    assert_eq!(
        raw.resource(&scope, "fenced").await,
        Some(row.id.to_string())
    );
    // Once recorded, the key admits no second piece of work, even its owner's.
    assert!(
        !payments::create(&db, &payment, &job, Some(&owned))
            .await
            .expect("no database error")
    );
    db.close().await;
}
