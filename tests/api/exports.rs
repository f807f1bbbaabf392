//! A co-op's export and its deletion, on both tiers: the archive holds every
//! row of the co-op and nothing of another; its link expires; a deletion
//! waits for its grace period, can be cancelled, and then removes every row
//! of the co-op (and nothing of another) through jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_tiers;
use crate::courses::{a_class, app_with, family_account, open_semester};
use crate::support::fakes::payment_provider::PaymentProvider;
use crate::support::fakes::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::{Backing, Coordinator, RawDb, TestApp, Tier, eventually};

both_tiers!(
    an_export_holds_every_row_of_its_coop_and_none_of_another,
    a_deletion_waits_can_be_cancelled_then_removes_every_row_of_its_coop,
);

/// What a populated co-op is made of, for the checks.
struct Populated {
    coordinator: Coordinator,
    family_session: String,
    /// Names and emails that must not appear in another co-op's export.
    words: Vec<String>,
}

/// A co-op with everything an export holds: families (one with its own
/// account), children, a semester, classes with meetings, enrollments (with
/// their fees), a payment, an announcement and its deliveries. `marker` is
/// in every name and email, so another co-op's archive can be searched for it.
async fn populate(app: &TestApp, sink: &SmtpSink, marker: &str) -> Populated {
    let c = app.verified_coordinator(sink).await;
    let semester = app.semester(&c.session, &open_semester()).await;
    let mut pottery = a_class(&format!("Pottery {marker}"), 5, "wednesday", "10:00");
    pottery["fee_cents"] = json!(4500);
    let pottery = app.class(&c.session, &semester, &pottery).await;
    let garden = a_class(&format!("Garden {marker}"), 5, "thursday", "10:00");
    let garden = app.class(&c.session, &semester, &garden).await;
    let account = family_account(app, sink, &c.session, &format!("Ortiz {marker}")).await;
    let other = app.family(&c.session, &format!("Smith {marker}")).await;
    let other_id = other["family_id"].as_str().unwrap().to_owned();
    let mut words = vec![
        c.email.clone(),
        account.email.clone(),
        other["email"].as_str().unwrap().to_owned(),
        format!("Ortiz {marker}"),
        format!("Smith {marker}"),
    ];
    for (family, child) in [(&account.id, "Lu"), (&other_id, "Max")] {
        let name = format!("{child} {marker}");
        let child = app.child(&c.session, family, &name, "2016-06-06").await;
        for class in [&pottery, &garden] {
            let enrolled = app.enroll(&c.session, class, &child).await;
            assert_eq!(enrolled.status, StatusCode::CREATED, "{}", enrolled.text);
        }
        words.push(name);
    }
    let paid = app
        .post(
            &format!("/api/v1/families/{}/payments", account.id),
            &json!({"amount_cents": 4500, "description": format!("Pottery {marker}")}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.text);
    let announced = app
        .post(
            "/api/v1/announcements",
            &json!({"subject": format!("Trip {marker}"), "body": "Bring lunch."}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(announced.status, StatusCode::ACCEPTED, "{}", announced.text);
    let announcement = announced.json()["announcement_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(
        "the announcement to reach both families",
        Duration::from_secs(30),
        || async {
            let a = app
                .get(&format!("/api/v1/announcements/{announcement}"))
                .session(&c.session)
                .send()
                .await
                .json();
            (a["delivery"]["sent"] == 2).then_some(())
        },
    )
    .await;
    // Every job the setup caused has run (calendar entries, charges), so
    // the database holds still while the checks compare it with an export.
    eventually("the queue to drain", Duration::from_secs(30), || async {
        let busy = app
            .get("/api/v1/admin/jobs?state=ready")
            .session(&c.session)
            .send()
            .await
            .json();
        let running = app
            .get("/api/v1/admin/jobs?state=running")
            .session(&c.session)
            .send()
            .await
            .json();
        (busy["items"].as_array().unwrap().is_empty()
            && running["items"].as_array().unwrap().is_empty())
        .then_some(())
    })
    .await;
    Populated {
        coordinator: c,
        family_session: account.session,
        words,
    }
}

async fn app(
    backing: std::sync::Arc<Backing>,
    sink: &SmtpSink,
    provider: &PaymentProvider,
    extra: &[&str],
) -> TestApp {
    let mut args = vec!["--payments-url", provider.url()];
    args.extend_from_slice(extra);
    app_with(backing, sink, &args).await
}

/// The first email to `to` whose subject starts with `subject`.
async fn mail(sink: &SmtpSink, to: &str, subject: &str) -> ReceivedMail {
    eventually(
        &format!("an email {subject:?} to {to}"),
        Duration::from_secs(30),
        || async {
            sink.messages().into_iter().find(|m| {
                m.to.iter().any(|t| t == to)
                    && m.subject.as_deref().is_some_and(|s| s.starts_with(subject))
            })
        },
    )
    .await
}

fn uuid_of(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

/// The files of a zip, by name.
fn unzip(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        files.insert(file.name().to_owned(), text);
    }
    files
}

/// A request's raw answer (the archive is binary).
async fn download(app: &TestApp, path: &str, session: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.address))
        .header("cookie", format!("coop_session={session}"))
        .send()
        .await
        .unwrap()
}

/// The ids in `column` of `table`'s rows `WHERE coop_id = $1`.
async fn ids(raw: &RawDb, table: &str, column: &str, coop: Uuid) -> BTreeSet<Uuid> {
    let sql = format!("SELECT {column} FROM {table} WHERE coop_id = $1");
    match raw {
        RawDb::Postgres(pool) => sqlx::query_scalar(&sql).bind(coop).fetch_all(pool).await,
        RawDb::Sqlite(pool) => sqlx::query_scalar(&sql).bind(coop).fetch_all(pool).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .into_iter()
    .collect()
}

/// The one number `sql` answers with `$1` bound to `value`.
async fn count(raw: &RawDb, sql: &str, value: impl ToString) -> i64 {
    let value = value.to_string();
    match (raw, Uuid::parse_str(&value)) {
        (RawDb::Postgres(pool), Ok(id)) => sqlx::query_scalar(sql).bind(id).fetch_one(pool).await,
        (RawDb::Sqlite(pool), Ok(id)) => sqlx::query_scalar(sql).bind(id).fetch_one(pool).await,
        (RawDb::Postgres(pool), Err(_)) => {
            sqlx::query_scalar(sql).bind(value).fetch_one(pool).await
        }
        (RawDb::Sqlite(pool), Err(_)) => sqlx::query_scalar(sql).bind(value).fetch_one(pool).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every table with a `coop_id` column, from the live schema (so a table a
/// later migration adds is checked too).
async fn tables_with_coop_id(raw: &RawDb) -> Vec<String> {
    let tables: Vec<String> = match raw {
        RawDb::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND column_name = 'coop_id' ORDER BY 1",
            )
            .fetch_all(pool)
            .await
        }
        RawDb::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.name = 'coop_id' ORDER BY 1",
            )
            .fetch_all(pool)
            .await
        }
    }
    .unwrap();
    assert!(tables.len() >= 15, "{tables:?}");
    tables
}

/// Rows of the co-op in every table that names it, and in the tables that
/// name its users.
async fn rows_of(raw: &RawDb, coop: Uuid, users: &[Uuid]) -> BTreeMap<String, i64> {
    let mut rows = BTreeMap::new();
    for table in tables_with_coop_id(raw).await {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE coop_id = $1");
        rows.insert(table, count(raw, &sql, coop).await);
    }
    rows.insert(
        "coops".into(),
        count(raw, "SELECT COUNT(*) FROM coops WHERE id = $1", coop).await,
    );
    for user in users {
        for (table, sql) in [
            (
                "sessions",
                "SELECT COUNT(*) FROM sessions WHERE user_id = $1",
            ),
            (
                "password_resets",
                "SELECT COUNT(*) FROM password_resets WHERE user_id = $1",
            ),
            (
                "email_changes",
                "SELECT COUNT(*) FROM email_changes WHERE user_id = $1",
            ),
        ] {
            *rows.entry(table.into()).or_default() += count(raw, sql, user).await;
        }
        let scope = format!("user:{user}");
        *rows.entry("idempotency".into()).or_default() += count(
            raw,
            "SELECT COUNT(*) FROM idempotency WHERE scope = $1",
            scope,
        )
        .await;
    }
    rows
}

async fn an_export_holds_every_row_of_its_coop_and_none_of_another(tier: Tier) {
    let sink = SmtpSink::start().await;
    let provider = PaymentProvider::start().await;
    let backing = Backing::new(tier).await;
    let app = app(backing.clone(), &sink, &provider, &["--export-ttl", "2h"]).await;
    let raw = RawDb::open(&backing).await;
    let b_marker = format!("b{}", Uuid::new_v4().simple());
    let a = populate(&app, &sink, "A").await;
    let b = populate(&app, &sink, &b_marker).await;
    let a_coop = uuid_of(&a.coordinator.coop_id);
    let b_coop = uuid_of(&b.coordinator.coop_id);

    // Families (and teachers, who are families) may not ask or download.
    let refused = app
        .post("/api/v1/exports", &json!({}))
        .session(&a.family_session)
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.error_code(), "forbidden");

    let asked = app
        .post("/api/v1/exports", &json!({}))
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    let export = asked.json();
    assert_eq!(export["state"], "queued", "{export}");
    let export_id = export["export_id"].as_str().unwrap().to_owned();

    // The job builds it and emails the coordinator who asked, with the link.
    let mail = mail(&sink, &a.coordinator.email, "Your export of").await;
    assert_eq!(
        mail.subject.as_deref(),
        Some("Your export of Riverside Co-op is ready")
    );
    let path = format!("/api/v1/exports/{export_id}/archive");
    assert!(mail.body().contains(&path), "{}", mail.body());
    let shown = app
        .get(&format!("/api/v1/exports/{export_id}"))
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let shown = shown.json();
    assert_eq!(shown["state"], "ready", "{shown}");
    assert_eq!(shown["download_path"], path.as_str());
    let ready = time::OffsetDateTime::parse(
        shown["ready_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        shown["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - ready).whole_minutes(), 120, "COOP_EXPORT_TTL");
    assert!(
        mail.body()
            .contains(&shown["expires_at"].as_str().unwrap()[..19]),
        "the email names the expiry: {}",
        mail.body()
    );
    let listed = app
        .get("/api/v1/exports")
        .session(&a.coordinator.session)
        .send()
        .await
        .json();
    assert_eq!(listed["items"][0]["export_id"], export_id.as_str());

    // Another co-op's coordinator cannot see it; a family cannot download it.
    let foreign = app.get(&path).session(&b.coordinator.session).send().await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.text);
    let family = app.get(&path).session(&a.family_session).send().await;
    assert_eq!(family.status, StatusCode::FORBIDDEN, "{}", family.text);

    let answer = download(&app, &path, &a.coordinator.session).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/zip");
    assert!(
        header("content-disposition").starts_with("attachment; filename=\"coop-export-"),
        "{}",
        header("content-disposition")
    );
    let files = unzip(&answer.bytes().await.unwrap());

    // README: every file and column, and how deletion works.
    let readme = &files["README.md"];
    assert!(readme.contains("## Deleting the co-op"), "{readme}");
    assert!(readme.contains("30 days"), "{readme}");
    for name in files.keys() {
        if name.ends_with(".csv") {
            assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
        }
    }
    assert!(!readme.contains("password_hash"));

    // Every row of A, by id, in both the CSV and the JSON file.
    for (file, table) in [
        ("users", "users"),
        ("families", "families"),
        ("children", "children"),
        ("semesters", "semesters"),
        ("classes", "classes"),
        ("enrollments", "enrollments"),
        ("ledger", "ledger"),
        ("payments", "payments"),
        ("refunds", "refunds"),
        ("announcements", "announcements"),
        ("calendar_events", "calendar_events"),
    ] {
        let rows: Vec<Value> = serde_json::from_str(&files[&format!("{file}.json")]).unwrap();
        let exported: BTreeSet<Uuid> = rows
            .iter()
            .map(|row| uuid_of(row["id"].as_str().unwrap()))
            .collect();
        let stored = ids(&raw, table, "id", a_coop).await;
        assert_eq!(exported, stored, "{file}");
        let csv_rows = csv::Reader::from_reader(files[&format!("{file}.csv")].as_bytes())
            .records()
            .count();
        assert_eq!(csv_rows, stored.len(), "{file}.csv");
        if file != "refunds" {
            assert!(!stored.is_empty(), "the test gave {file} rows");
        }
    }
    let deliveries: Vec<Value> =
        serde_json::from_str(&files["announcement_deliveries.json"]).unwrap();
    assert_eq!(
        deliveries.len() as i64,
        count(
            &raw,
            "SELECT COUNT(*) FROM announcement_deliveries WHERE coop_id = $1",
            a_coop
        )
        .await
    );
    assert_eq!(deliveries.len(), 2);
    let coop: Vec<Value> = serde_json::from_str(&files["coop.json"]).unwrap();
    assert_eq!(coop.len(), 1);
    assert_eq!(coop[0]["id"], a_coop.to_string());
    let classes: Vec<Value> = serde_json::from_str(&files["classes.json"]).unwrap();
    assert!(
        classes[0]["meetings"][0]["weekday"].is_string(),
        "{classes:?}"
    );
    let users: Vec<Value> = serde_json::from_str(&files["users.json"]).unwrap();
    assert!(users.iter().all(|u| u.get("password_hash").is_none()));

    // Nothing of B anywhere: no id, email or name, in any file.
    let all: String = files.values().cloned().collect();
    assert!(!all.contains(&b_marker), "a name of B is in A's export");
    for word in &b.words {
        assert!(!all.contains(word.as_str()), "{word} is in A's export");
    }
    for table in [
        "users",
        "families",
        "children",
        "classes",
        "semesters",
        "payments",
    ] {
        for id in ids(&raw, table, "id", b_coop).await {
            assert!(
                !all.contains(&id.to_string()),
                "{table} {id} of B is in A's export"
            );
        }
    }
    assert!(!all.contains(&b_coop.to_string()));
    // And A's own words are there (the search above can find them).
    for word in &a.words {
        assert!(
            all.contains(word.as_str()),
            "{word} is missing from A's export"
        );
    }

    // One export at a time: B has one in progress (set up directly: the job
    // would finish before a second request could meet it).
    match &raw {
        RawDb::Postgres(pool) => sqlx::query(
            "INSERT INTO coop_exports (id, coop_id, requested_by, state, created_at) VALUES ($1, $2, $3, 'queued', 0)",
        )
        .bind(Uuid::now_v7())
        .bind(b_coop)
        .bind(uuid_of(&b.coordinator.user_id))
        .execute(pool)
        .await
        .map(|_| ()),
        RawDb::Sqlite(pool) => sqlx::query(
            "INSERT INTO coop_exports (id, coop_id, requested_by, state, created_at) VALUES ($1, $2, $3, 'queued', 0)",
        )
        .bind(Uuid::now_v7())
        .bind(b_coop)
        .bind(uuid_of(&b.coordinator.user_id))
        .execute(pool)
        .await
        .map(|_| ()),
    }
    .unwrap();
    let busy = app
        .post("/api/v1/exports", &json!({}))
        .session(&b.coordinator.session)
        .send()
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.text);
    assert_eq!(busy.error_code(), "export_in_progress");
    assert!(
        busy.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("being built")
    );

    // Expiry: past `expires_at` the link answers 410 at once, and the
    // expiry job (made due here rather than in two hours) deletes the bytes.
    let past = coop_domain::clock::now_ms() - 1000;
    raw.execute(&format!(
        "UPDATE coop_exports SET expires_at = {past} WHERE state = 'ready'"
    ))
    .await;
    let gone = app.get(&path).session(&a.coordinator.session).send().await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.text);
    assert_eq!(gone.error_code(), "export_expired");
    raw.execute(&format!(
        "UPDATE jobs SET run_at = {past} WHERE kind = 'expire_export' AND state = 'ready'"
    ))
    .await;
    eventually(
        "the expiry job to delete the archive",
        Duration::from_secs(20),
        || async {
            (raw.number("SELECT COUNT(*) FROM coop_exports WHERE archive IS NOT NULL")
                .await
                == 0)
                .then_some(())
        },
    )
    .await;
    let shown = app
        .get(&format!("/api/v1/exports/{export_id}"))
        .session(&a.coordinator.session)
        .send()
        .await
        .json();
    assert_eq!(shown["state"], "expired", "{shown}");
    assert!(shown["download_path"].is_null());
    // A new export may be asked for.
    let again = app
        .post("/api/v1/exports", &json!({}))
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
}

async fn a_deletion_waits_can_be_cancelled_then_removes_every_row_of_its_coop(tier: Tier) {
    let sink = SmtpSink::start().await;
    let provider = PaymentProvider::start().await;
    let backing = Backing::new(tier).await;
    let grace = Duration::from_secs(6);
    let app = app(
        backing.clone(),
        &sink,
        &provider,
        &["--deletion-grace", "6s"],
    )
    .await;
    let raw = RawDb::open(&backing).await;
    let a = populate(&app, &sink, "A").await;
    let b = populate(&app, &sink, &format!("b{}", Uuid::new_v4().simple())).await;
    let a_coop = uuid_of(&a.coordinator.coop_id);
    let b_coop = uuid_of(&b.coordinator.coop_id);
    // A has an export and an idempotency record too.
    let asked = app
        .post("/api/v1/exports", &json!({}))
        .session(&a.coordinator.session)
        .header("idempotency-key", "export-1")
        .send()
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    mail(&sink, &a.coordinator.email, "Your export of").await;
    let a_users = ids(&raw, "users", "id", a_coop)
        .await
        .into_iter()
        .collect::<Vec<_>>();
    let b_users = ids(&raw, "users", "id", b_coop)
        .await
        .into_iter()
        .collect::<Vec<_>>();

    // A wrong password schedules nothing; a family may not ask.
    let wrong = app
        .post(
            "/api/v1/coop/deletion",
            &json!({"password": "not the password"}),
        )
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.text
    );
    assert_eq!(
        wrong.json()["error"]["fields"]["password"],
        "is not your password"
    );
    let family = app
        .post(
            "/api/v1/coop/deletion",
            &json!({"password": "family password 1"}),
        )
        .session(&a.family_session)
        .send()
        .await;
    assert_eq!(family.status, StatusCode::FORBIDDEN, "{}", family.text);
    assert_eq!(raw.number("SELECT COUNT(*) FROM coop_deletions").await, 0);
    let none = app
        .get("/api/v1/coop/deletion")
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);

    // Scheduled, then cancelled: after the grace period nothing is gone.
    let body = json!({"password": a.coordinator.password});
    let scheduled = app
        .post("/api/v1/coop/deletion", &body)
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(scheduled.status, StatusCode::ACCEPTED, "{}", scheduled.text);
    let notice = mail(
        &sink,
        &a.coordinator.email,
        "Riverside Co-op will be deleted on",
    )
    .await;
    assert!(notice.body().contains("/coop"), "{}", notice.body());
    let twice = app
        .post("/api/v1/coop/deletion", &body)
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.text);
    assert_eq!(twice.error_code(), "deletion_scheduled");
    // While a deletion is scheduled the co-op works, but sends no invites.
    let late = app.family(&a.coordinator.session, "Late A").await;
    let late_email = late["email"].as_str().unwrap().to_owned();
    let welcome = format!("welcome_email.{}", late["family_id"].as_str().unwrap());
    eventually(
        "the late family's welcome job to run",
        Duration::from_secs(20),
        || async {
            (count(
                &raw,
                "SELECT COUNT(*) FROM jobs WHERE key = $1 AND state = 'done'",
                &welcome,
            )
            .await
                == 1)
                .then_some(())
        },
    )
    .await;
    assert!(
        !sink
            .messages()
            .iter()
            .any(|m| m.to.iter().any(|t| t == &late_email)),
        "an invite went out while the deletion was scheduled"
    );
    let cancelled = app
        .delete("/api/v1/coop/deletion")
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(
        cancelled.status,
        StatusCode::NO_CONTENT,
        "{}",
        cancelled.text
    );
    let before = rows_of(&raw, a_coop, &a_users).await;
    tokio::time::sleep(grace + Duration::from_secs(2)).await;
    eventually(
        "the cancelled deletion's job to find nothing to do",
        Duration::from_secs(20),
        || async {
            (raw.number("SELECT COUNT(*) FROM jobs WHERE kind = 'delete_coop' AND state <> 'done'")
                .await
                == 0)
                .then_some(())
        },
    )
    .await;
    let mut after = rows_of(&raw, a_coop, &a_users).await;
    // The cancelled job itself is done and stays in the queue, like any.
    after.remove("jobs");
    let mut before_without_jobs = before.clone();
    before_without_jobs.remove("jobs");
    assert_eq!(after, before_without_jobs, "nothing was deleted");
    let me = app
        .get("/api/v1/auth/me")
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK);

    // Scheduled again: during the grace period the date is shown and the
    // co-op works; after it, jobs delete everything of A.
    let b_before = rows_of(&raw, b_coop, &b_users).await;
    let scheduled = app
        .post("/api/v1/coop/deletion", &body)
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(scheduled.status, StatusCode::ACCEPTED, "{}", scheduled.text);
    let deletes_at = scheduled.json()["deletes_at"].as_str().unwrap().to_owned();
    let shown = app
        .get("/api/v1/coop/deletion")
        .session(&a.family_session)
        .send()
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.json()["deletes_at"], deletes_at.as_str());
    let works = app
        .get("/api/v1/families")
        .session(&a.coordinator.session)
        .send()
        .await;
    assert_eq!(works.status, StatusCode::OK, "{}", works.text);

    eventually(
        "the co-op to be deleted",
        Duration::from_secs(60),
        || async {
            (count(&raw, "SELECT COUNT(*) FROM coops WHERE id = $1", a_coop).await == 0)
                .then_some(())
        },
    )
    .await;
    let left: BTreeMap<String, i64> = rows_of(&raw, a_coop, &a_users)
        .await
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        left.is_empty(),
        "rows of the deleted co-op are left: {left:?}"
    );
    assert_eq!(
        rows_of(&raw, b_coop, &b_users).await,
        b_before,
        "B is untouched"
    );

    // A's people can no longer sign in, and their sessions are over.
    let login = app
        .login(&a.coordinator.email, &a.coordinator.password)
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.text);
    for session in [&a.coordinator.session, &a.family_session] {
        let me = app.get("/api/v1/auth/me").session(session).send().await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{}", me.text);
    }
    // B's can.
    let login = app
        .login(&b.coordinator.email, &b.coordinator.password)
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let me = app
        .get("/api/v1/auth/me")
        .session(&b.family_session)
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
}

both_tiers!(the_coop_page_exports_and_schedules_a_deletion_with_plain_forms);

/// A page request with the session and the CSRF cookie, as a browser
/// without JavaScript sends it: (status, location, body).
async fn page(
    app: &TestApp,
    session: &str,
    csrf: &str,
    path: &str,
    form: Option<String>,
) -> (StatusCode, String, String) {
    let cookie = format!("coop_session={session}; coop_csrf={csrf}");
    let request = match form {
        Some(form) => app
            .http
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&{form}")),
        None => app.http.get(format!("{}{path}", app.address)),
    };
    let answer = request
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, answer.text().await.unwrap())
}

async fn the_coop_page_exports_and_schedules_a_deletion_with_plain_forms(tier: Tier) {
    let sink = SmtpSink::start().await;
    let provider = PaymentProvider::start().await;
    let app = app(Backing::new(tier).await, &sink, &provider, &[]).await;
    let c = app.verified_coordinator(&sink).await;
    let shown = app
        .get("/coop")
        .session(&c.session)
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let csrf = shown
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("coop_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("a CSRF cookie")
        .to_owned();
    assert!(
        shown.text.contains("Export the co-op&#x27;s data")
            || shown.text.contains("Export the co-op's data"),
        "{}",
        shown.text
    );
    assert!(shown.text.contains("No export yet"), "{}", shown.text);

    let (status, location, _) =
        page(&app, &c.session, &csrf, "/coop/export", Some(String::new())).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location, "/coop?done=export-asked");
    mail(&sink, &c.email, "Your export of").await;
    let (_, _, text) = page(&app, &c.session, &csrf, "/coop", None).await;
    assert!(text.contains("Download the zip"), "{text}");

    let (status, _, text) = page(
        &app,
        &c.session,
        &csrf,
        "/coop/deletion",
        Some("password=wrong+one".into()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("This is not your password"), "{text}");
    let (status, location, _) = page(
        &app,
        &c.session,
        &csrf,
        "/coop/deletion",
        Some("password=correct+horse+battery".into()),
    )
    .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location, "/coop?done=deletion-scheduled");
    let (_, _, text) = page(&app, &c.session, &csrf, "/coop", None).await;
    assert!(text.contains("will be deleted on"), "{text}");
    assert!(text.contains("Cancel the deletion"), "{text}");
    let (status, location, _) = page(
        &app,
        &c.session,
        &csrf,
        "/coop/deletion/cancel",
        Some(String::new()),
    )
    .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location, "/coop?done=deletion-cancelled");
    let (_, _, text) = page(&app, &c.session, &csrf, &location, None).await;
    assert!(!text.contains("will be deleted on"), "{text}");
    assert!(text.contains("The deletion is cancelled"), "{text}");
}
