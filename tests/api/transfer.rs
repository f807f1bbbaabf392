//! `coop transfer`, `coop backup` and `coop restore`, run as an operator runs
//! them: the real binary as a subprocess, against real SQLite files and
//! PostgreSQL databases, with `coop serve` processes reading the result
//! through the API.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{
    Backing, Coordinator, Endpoint, PASSWORD, ProcessApp, RawDb, TestDatabase, eventually,
    spawn_process,
};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// Serving for these tests: jobs stay queued (they are part of what is
/// copied), and one client may sign in as often as it likes.
const SERVE_ENV: &[(&str, &str)] = &[("COOP_RUN_JOBS", "off"), ("COOP_RATE_LIMITS", "off")];

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("coop.sqlite3").display())
}

async fn serve_sqlite(dir: &Path) -> ProcessApp {
    let args = vec!["--data-dir".into(), dir.display().to_string()];
    spawn_process(Arc::new(Backing::Args(args)), SERVE_ENV).await
}

async fn serve_postgres(url: &str) -> ProcessApp {
    let args = vec!["--database-url".into(), url.to_owned()];
    spawn_process(Arc::new(Backing::Args(args)), SERVE_ENV).await
}

/// Runs `coop ARGS` to the end: (success, stdout, stderr).
fn coop(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run coop");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn transfer(from: &str, to: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["transfer", "--from", from, "--to", to];
    args.extend_from_slice(extra);
    let (ok, out, err) = coop(&args);
    (ok, format!("{out}{err}"))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

async fn created(app: &Endpoint, session: &str, path: &str, body: &Value) -> Value {
    let answer = app.post(path, body).session(session).send().await;
    assert!(
        answer.status.is_success(),
        "{path}: {} {}",
        answer.status,
        answer.text
    );
    answer.json()
}

/// What the seed made that the comparison reads again.
struct Seeded {
    coordinator_email: String,
    families: usize,
}

/// A co-op made through the API (coordinator, semester, two classes with fees,
/// `api_families` families with children, enrollments past capacity so some
/// wait, an announcement, their queued jobs), then grown by SQL on the SQLite
/// file to `total` families, each with a child, an enrollment, a fee, a
/// payment and a pending job.
async fn seed(dir: &Path, api_families: usize, total: usize) -> Seeded {
    let app = serve_sqlite(dir).await;
    let c: Coordinator = app.coordinator().await;
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let semester = created(
        &app,
        &c.session,
        "/api/v1/semesters",
        &json!({
            "name": "Fall",
            "starts_on": (today + time::Duration::days(30)).to_string(),
            "ends_on": (today + time::Duration::days(120)).to_string(),
            "registration_opens_at": rfc3339(now - time::Duration::hours(1)),
            "registration_closes_at": rfc3339(now + time::Duration::days(10)),
            "holidays": [(today + time::Duration::days(44)).to_string()],
        }),
    )
    .await["semester_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut classes = Vec::new();
    for (title, weekday) in [("Watercolor", "monday"), ("Latin", "tuesday")] {
        let class = created(
            &app,
            &c.session,
            &format!("/api/v1/semesters/{semester}/classes"),
            &json!({"title": title, "capacity": 3, "fee_cents": 4500, "currency": "USD",
                    "meetings": [{"weekday": weekday, "starts_at": "09:30", "minutes": 60, "room": "Hall"}]}),
        )
        .await;
        classes.push(class["class_id"].as_str().unwrap().to_owned());
    }
    for i in 0..api_families {
        let family = app.family(&c.session, &format!("Family {i}")).await;
        let id = family["family_id"].as_str().unwrap();
        let child = created(
            &app,
            &c.session,
            &format!("/api/v1/families/{id}/children"),
            &json!({"first_name": format!("Kid{i}"), "birth_date": "2016-04-0{}".replace("0{}", &format!("{:02}", 1 + i % 28))}),
        )
        .await;
        let child = child["child_id"].as_str().unwrap();
        created(
            &app,
            &c.session,
            &format!("/api/v1/classes/{}/enrollments", classes[i % 2]),
            &json!({"child_id": child}),
        )
        .await;
    }
    created(
        &app,
        &c.session,
        "/api/v1/announcements",
        &json!({"subject": "Welcome", "body": "Classes start soon."}),
    )
    .await;
    drop(app);

    let bulk = total.saturating_sub(api_families);
    let raw = sqlx::SqlitePool::connect(&sqlite_url(dir)).await.unwrap();
    let statements = [
        // Families cloned from the first one, with their own names and emails.
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {bulk})
             INSERT INTO families
             SELECT randomblob(16), f.coop_id, 'Bulk family ' || n.i, 'bulk' || n.i || '@example.org',
                    f.enrollment_date, 1, f.created_at, f.updated_at
             FROM n, (SELECT * FROM families ORDER BY id LIMIT 1) f"
        ),
        "INSERT INTO children
         SELECT randomblob(16), coop_id, id, 'Child of ' || family_name, '2015-09-0' || (length(email) % 9 + 1),
                NULL, 1, created_at, updated_at
         FROM families WHERE email LIKE 'bulk%'"
            .into(),
        "INSERT INTO enrollments
         SELECT randomblob(16), ch.coop_id, cl.id, ch.id, ch.family_id, 'dropped', NULL, ch.created_at, ch.updated_at
         FROM children ch, (SELECT id FROM classes ORDER BY id LIMIT 1) cl
         WHERE ch.first_name LIKE 'Child of %'"
            .into(),
        "INSERT INTO ledger
         SELECT randomblob(16), coop_id, id, NULL, 'fee', 4500, 'USD', 'Fall fees', created_at
         FROM families WHERE email LIKE 'bulk%'"
            .into(),
        "INSERT INTO payments
         SELECT randomblob(16), coop_id, id, 2000 + length(family_name), 'USD', 'Fall fees',
                'succeeded', 'ch_' || lower(hex(randomblob(6))), NULL, 1764000000000, 1764000000000
         FROM families WHERE email LIKE 'bulk%'"
            .into(),
        // A pending job per family, due far in the future (nothing runs it).
        "INSERT INTO jobs
         SELECT randomblob(16), f.coop_id, j.kind, 'bulk-' || lower(hex(f.id)), j.payload, 'ready', 0, 10,
                4102444800000, NULL, NULL, NULL, 1764000000000, 1764000000000, NULL
         FROM families f, (SELECT kind, payload FROM jobs ORDER BY id LIMIT 1) j
         WHERE f.email LIKE 'bulk%'"
            .into(),
    ];
    if bulk > 0 {
        for sql in &statements {
            sqlx::query(sql)
                .execute(&raw)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    raw.close().await;
    Seeded {
        coordinator_email: c.email,
        families: total,
    }
}

/// The answers a coordinator reads: families (pages of them), each sampled
/// family's children, enrollments, balance and payments, the semesters and
/// their catalog, rosters, announcements and the job list.
async fn answers(app: &Endpoint, seeded: &Seeded) -> Vec<(String, Value)> {
    let login = app.login(&seeded.coordinator_email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let session = login.session_token();
    let mut out = Vec::new();
    let mut get = async |path: String| -> Value {
        let answer = app.get(&path).session(&session).send().await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
        let body = answer.json();
        out.push((path, body.clone()));
        body
    };
    let mut sampled = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/families?limit=200&cursor={c}"),
            None => "/api/v1/families?limit=200".into(),
        };
        let page = get(path).await;
        for (i, item) in page["items"].as_array().unwrap().iter().enumerate() {
            if i % 37 == 0 {
                sampled.push(item["family_id"].as_str().unwrap().to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for id in &sampled {
        for tail in ["", "/children", "/enrollments", "/balance", "/payments"] {
            get(format!("/api/v1/families/{id}{tail}")).await;
        }
    }
    let semesters = get("/api/v1/semesters".into()).await;
    let semesters = semesters
        .get("items")
        .unwrap_or(&semesters)
        .as_array()
        .cloned()
        .unwrap_or_default();
    for semester in semesters {
        let id = semester["semester_id"].as_str().unwrap().to_owned();
        let catalog = get(format!("/api/v1/semesters/{id}/classes")).await;
        let classes = catalog
            .get("items")
            .unwrap_or(&catalog)
            .as_array()
            .cloned()
            .unwrap_or_default();
        for class in classes {
            let class = class["class_id"].as_str().unwrap().to_owned();
            get(format!("/api/v1/classes/{class}")).await;
            get(format!("/api/v1/classes/{class}/roster")).await;
        }
    }
    get("/api/v1/announcements".into()).await;
    get("/api/v1/admin/jobs?limit=100".into()).await;
    get("/api/v1/auth/me".into()).await;
    assert!(out.len() > 10, "too few answers to compare: {}", out.len());
    out
}

fn assert_same_answers(before: &[(String, Value)], after: &[(String, Value)], what: &str) {
    assert_eq!(before.len(), after.len(), "{what}: not the same requests");
    for ((path, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "{what}: {path} answers differently");
    }
}

async fn count(db: &RawDb, table: &str) -> i64 {
    db.number(&format!("SELECT COUNT(*) FROM {table}")).await
}

/// SQLite → PostgreSQL → SQLite; with `kill`, the first transfer is killed
/// (SIGKILL) after some batches and run again.
async fn round_trip(api_families: usize, total: usize, kill: bool) {
    let source = tempfile::tempdir().unwrap();
    let seeded = seed(source.path(), api_families, total).await;
    let on_sqlite = {
        let app = serve_sqlite(source.path()).await;
        answers(&app, &seeded).await
    };
    let raw_source = RawDb::Sqlite(
        sqlx::SqlitePool::connect(&sqlite_url(source.path()))
            .await
            .unwrap(),
    );
    assert_eq!(count(&raw_source, "families").await, seeded.families as i64);

    let pg = TestDatabase::create().await;
    if kill {
        let mut child = Command::new(BIN)
            .args([
                "transfer",
                "--from",
                &sqlite_url(source.path()),
                "--to",
                &pg.url,
            ])
            .args(["--batch-size", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = RawDb::postgres(&pg.url).await;
        eventually(
            "some batches on the target",
            Duration::from_secs(120),
            || async {
                let copied: i64 = match &target {
                    RawDb::Postgres(pool) => sqlx::query_scalar(
                        "SELECT COALESCE(SUM(rows_copied), 0)::bigint FROM coop_transfer_progress
                     WHERE table_name <> '(source)'",
                    )
                    .fetch_one(pool)
                    .await
                    .unwrap_or(0),
                    RawDb::Sqlite(_) => unreachable!(),
                };
                (copied > 2000).then_some(())
            },
        )
        .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let partial = count(&target, "families").await + count(&target, "payments").await;
        assert!(
            partial < 2 * seeded.families as i64,
            "the transfer was to be killed midway, but it had copied everything"
        );
    }
    let (ok, report) = transfer(&sqlite_url(source.path()), &pg.url, &[]);
    assert!(ok, "{report}");
    assert!(
        report.contains("transfer complete and verified"),
        "{report}"
    );
    assert!(report.contains("left behind"), "{report}");
    if kill {
        assert!(report.contains("resuming after"), "{report}");
    }
    let target = RawDb::postgres(&pg.url).await;
    for table in [
        "families",
        "children",
        "enrollments",
        "payments",
        "ledger",
        "jobs",
        "users",
    ] {
        assert_eq!(
            count(&target, table).await,
            count(&raw_source, table).await,
            "{table}: rows doubled or missing"
        );
    }
    let on_postgres = {
        let app = serve_postgres(&pg.url).await;
        answers(&app, &seeded).await
    };
    assert_same_answers(&on_sqlite, &on_postgres, "PostgreSQL after the transfer");

    // And back, into a new SQLite file.
    let back = tempfile::tempdir().unwrap();
    let (ok, report) = transfer(&pg.url, &sqlite_url(back.path()), &[]);
    assert!(ok, "{report}");
    let on_sqlite_again = {
        let app = serve_sqlite(back.path()).await;
        answers(&app, &seeded).await
    };
    assert_same_answers(&on_sqlite, &on_sqlite_again, "SQLite after the way back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_coop_goes_to_postgres_and_back_with_the_same_answers() {
    round_trip(12, 300, false).await;
}

#[cfg(feature = "full-suite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_families_survive_a_killed_transfer_and_the_way_back() {
    round_trip(20, 10_000, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_database_is_not_transferred() {
    let dir = tempfile::tempdir().unwrap();
    let pg = TestDatabase::create().await;
    {
        let _serving = serve_sqlite(dir.path()).await;
        let (ok, report) = transfer(&sqlite_url(dir.path()), &pg.url, &[]);
        assert!(!ok, "{report}");
        assert!(report.contains("in use by a running Coop"), "{report}");
    }
    {
        let _serving = serve_postgres(&pg.url).await;
        let other = tempfile::tempdir().unwrap();
        let (ok, report) = transfer(&pg.url, &sqlite_url(other.path()), &[]);
        assert!(!ok, "{report}");
        assert!(report.contains("in use by a running Coop"), "{report}");
    }
    // Stopped, the same database transfers.
    let fresh = TestDatabase::create().await;
    let (ok, report) = transfer(&sqlite_url(dir.path()), &fresh.url, &[]);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_transfer_does_not_know_stops_it_before_anything_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = seed(dir.path(), 3, 3).await;
    assert_eq!(seeded.families, 3);
    let raw = sqlx::SqlitePool::connect(&sqlite_url(dir.path()))
        .await
        .unwrap();
    // What a later migration might add, which schema.rs has not learnt.
    sqlx::query(
        "CREATE TABLE field_trips (id BLOB PRIMARY KEY, coop_id BLOB NOT NULL, title TEXT)",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let pg = TestDatabase::create().await;
    let (ok, report) = transfer(&sqlite_url(dir.path()), &pg.url, &[]);
    assert!(!ok, "{report}");
    assert!(report.contains("field_trips"), "{report}");
    assert!(report.contains("nothing was copied"), "{report}");
    let target = RawDb::postgres(&pg.url).await;
    let tables = target
        .number("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'families'")
        .await;
    if tables > 0 {
        assert_eq!(count(&target, "families").await, 0);
    }
}

/// A steady stream of family enrollments, each recorded when acknowledged.
struct Writes {
    acknowledged: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

fn keep_writing(address: String, session: String) -> Writes {
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn({
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        async move {
            let http = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let answer = http
                    .post(format!("{address}/api/v1/families"))
                    .header("cookie", format!("coop_session={session}"))
                    .json(&json!({"family_name": format!("Writer {i}"), "email": format!("writer{i}@example.org")}))
                    .send()
                    .await;
                if let Ok(answer) = answer
                    && answer.status() == StatusCode::CREATED
                {
                    let body: Value = answer.json().await.unwrap();
                    let id = body["family_id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((Instant::now(), id));
                }
            }
        }
    });
    Writes {
        acknowledged,
        stop,
        task,
    }
}

impl Writes {
    async fn finish(self) -> Vec<(Instant, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap();
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Every write acknowledged before the backup began is in the restored Coop,
/// which serves.
async fn check_restored(app: &Endpoint, email: &str, before: &[String]) {
    let login = app.login(email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let session = login.session_token();
    for id in before {
        let answer = app
            .get(&format!("/api/v1/families/{id}"))
            .session(&session)
            .send()
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "family {id}: {}",
            answer.text
        );
    }
}

/// Backs up (with `data`, the app's storage arguments) while a stream of
/// writes goes on; returns the writes acknowledged before the backup began.
async fn backup_under_writes(
    app: &ProcessApp,
    c: &Coordinator,
    data: Vec<String>,
    to: &Path,
) -> Vec<String> {
    let writes = keep_writing(app.address.clone(), c.session.clone());
    eventually("a few writes", Duration::from_secs(30), || async {
        (writes.acknowledged.lock().unwrap().len() >= 20).then_some(())
    })
    .await;
    let began = Instant::now();
    let (ok, out, err) = coop_with_data_args(data, &["backup", "--to", &to.display().to_string()]);
    assert!(ok, "{out}{err}");
    // Writes go on a little after the backup, too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acknowledged = writes.finish().await;
    let before: Vec<String> = acknowledged
        .iter()
        .filter(|(at, _)| *at < began)
        .map(|(_, id)| id.clone())
        .collect();
    assert!(before.len() >= 20 && before.len() < acknowledged.len() + 1);
    before
}

fn coop_with_data_args(data: Vec<String>, args: &[&str]) -> (bool, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(data.iter().map(String::as_str));
    coop(&all)
}

fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn database_args(url: &str) -> Vec<String> {
    vec!["--database-url".into(), url.to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_backup_taken_under_writes_restores_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let app = serve_sqlite(dir.path()).await;
    let c = app.coordinator().await;
    let backups = tempfile::tempdir().unwrap();
    let to: PathBuf = backups.path().join("nightly");
    let before = backup_under_writes(&app, &c, data_dir_args(dir.path()), &to).await;
    drop(app);
    assert!(to.join("manifest.json").exists());

    let restored = tempfile::tempdir().unwrap();
    let (ok, out, err) = coop_with_data_args(
        data_dir_args(restored.path()),
        &["restore", "--from", &to.display().to_string()],
    );
    assert!(ok, "{out}{err}");
    // The outbox (welcome emails written as files) came back too.
    assert!(restored.path().join("outbox").exists() || !dir.path().join("outbox").exists());
    // A restore never overwrites a database.
    let (ok, _, err) = coop_with_data_args(
        data_dir_args(restored.path()),
        &["restore", "--from", &to.display().to_string()],
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let app = serve_sqlite(restored.path()).await;
    check_restored(&app, &c.email, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_backup_taken_under_writes_restores_every_acknowledged_write() {
    let pg = TestDatabase::create().await;
    let app = serve_postgres(&pg.url).await;
    let c = app.coordinator().await;
    let backups = tempfile::tempdir().unwrap();
    let to = backups.path().join("nightly");
    let before = backup_under_writes(&app, &c, database_args(&pg.url), &to).await;
    drop(app);

    let fresh = TestDatabase::create().await;
    let (ok, out, err) = coop_with_data_args(
        database_args(&fresh.url),
        &["restore", "--from", &to.display().to_string()],
    );
    assert!(ok, "{out}{err}");
    let app = serve_postgres(&fresh.url).await;
    check_restored(&app, &c.email, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_tier_backs_itself_up_keeps_the_newest_and_says_when() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = SERVE_ENV.to_vec();
    env.extend([("COOP_BACKUP_INTERVAL", "1s"), ("COOP_BACKUP_KEEP", "2")]);
    let args = vec!["--data-dir".into(), dir.path().display().to_string()];
    let app = spawn_process(Arc::new(Backing::Args(args)), &env).await;
    let c = app.coordinator().await;
    eventually(
        "three scheduled backups",
        Duration::from_secs(60),
        || async {
            (app.metric("coop_backups_total", &["result=\"ok\""]).await >= 3.0).then_some(())
        },
    )
    .await;
    let ready = app.get("/ready").send().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let backup = &ready.json()["checks"]["backup"];
    let last = backup["last_good_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{backup}"));
    let last = OffsetDateTime::parse(last, &Rfc3339).unwrap();
    assert!(
        OffsetDateTime::now_utc() - last < time::Duration::seconds(30),
        "{backup}"
    );
    assert!(
        app.metric("coop_backup_last_success_timestamp_seconds", &[])
            .await
            > 0.0
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.display().to_string().ends_with(".partial"))
        .collect();
    assert!(
        (1..=2).contains(&kept.len()),
        "COOP_BACKUP_KEEP=2, found {kept:?}"
    );
    drop(app);

    // The newest one restores, and the restored Coop serves.
    let newest = kept.iter().max().unwrap();
    let restored = tempfile::tempdir().unwrap();
    let (ok, out, err) = coop_with_data_args(
        data_dir_args(restored.path()),
        &["restore", "--from", &newest.display().to_string()],
    );
    assert!(ok, "{out}{err}");
    let app = serve_sqlite(restored.path()).await;
    let login = app.login(&c.email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
}
