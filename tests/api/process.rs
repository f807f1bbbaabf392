//! The `coop` binary as an operator runs it: configuration errors, `migrate`,
//! and graceful shutdown on SIGTERM.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// Runs `coop` with only the given COOP_* variables and returns (exit code, stderr).
fn run_with_env(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("COOP_DATA_DIR", data.path())
        .env("COOP_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.stdin(Stdio::null()).output().expect("run coop");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_refused_naming_the_variable() {
    for (variable, value) in [
        ("COOP_LISTEN", "localhost"),
        ("COOP_DATABASE_URL", "mysql://db/coop"),
        ("COOP_REDIS_URL", "http://cache"),
        ("COOP_LOG", "xml"),
        ("COOP_DB_POOL_SIZE", "0"),
        ("COOP_SHUTDOWN_TIMEOUT", "forever"),
    ] {
        let (code, stderr) = run_with_env(&[(variable, value)], &["serve"]);
        assert_ne!(code, Some(0), "{variable}={value} was accepted");
        assert!(
            stderr.contains(variable),
            "{variable}={value}: the message should name it:\n{stderr}"
        );
    }
}

#[test]
fn an_unreachable_database_is_named_at_start() {
    let url = format!("postgres://postgres@127.0.0.1:{}/coop", free_port());
    let (code, stderr) = run_with_env(&[("COOP_DATABASE_URL", &url)], &["serve"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("COOP_DATABASE_URL") && stderr.contains("PostgreSQL"),
        "{stderr}"
    );
}

#[test]
fn migrate_applies_migrations_and_exits() {
    let data = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .arg("migrate")
        .env("COOP_DATA_DIR", data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(data.path().join("coop.sqlite3").exists());
}

/// SIGTERM: `/ready` turns 503 at once, a request already in flight completes,
/// and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("COOP_DATA_DIR", data.path())
        .env("COOP_LISTEN", format!("127.0.0.1:{port}"))
        .env("COOP_DRAIN_DELAY", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "coop did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A request in flight: headers and half the body sent, the rest withheld.
    let body = br#"{"email":"nobody@example.org","password":"0123456789"}"#;
    let mut in_flight = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        in_flight,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    in_flight.write_all(&body[..10]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "ready turns 503 at once"
    );

    in_flight.write_all(&body[10..]).unwrap();
    let mut response = String::new();
    in_flight.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 401"),
        "the in-flight request completed: {response}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "coop did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// A configuration error quotes the value it could not use, and `--help`
/// shows where settings come from: neither prints a password.
#[test]
fn configuration_errors_and_help_never_print_a_password() {
    let secret = "hunter2-secret";
    let (code, stderr) = run_with_env(
        &[(
            "COOP_DATABASE_URL",
            &format!("postgres://coop:{secret}@db.example:notaport/coop"),
        )],
        &["serve"],
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains("COOP_DATABASE_URL"), "{stderr}");
    assert!(
        !stderr.contains(secret),
        "the password was printed: {stderr}"
    );
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["cluster", "--help"],
    ] {
        let output = Command::new(BIN)
            .args(args)
            .env(
                "COOP_DATABASE_URL",
                format!("postgres://coop:{secret}@127.0.0.1:5432/coop"),
            )
            .env(
                "COOP_REDIS_URL",
                format!("redis://:{secret}@127.0.0.1:6379"),
            )
            .env("COOP_METRICS_TOKEN", format!("{secret}-token-0123456789"))
            .output()
            .expect("run coop --help");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {text}");
        assert!(!text.contains(secret), "{args:?} printed a secret: {text}");
    }
}

/// What Coop writes (its folder, the database, the outbox's emails with
/// their invite links) is readable by its own account only, even in a
/// folder someone made readable to all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let backing = crate::support::Backing::new(crate::support::Tier::Sqlite).await;
    let crate::support::Backing::Sqlite(dir) = &*backing else {
        unreachable!()
    };
    let dir = dir.path().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = crate::support::spawn_process(backing.clone(), &[("COOP_JOB_POLL", "50ms")]).await;
    let c = app.coordinator().await;
    app.family(&c.session, "The Smiths").await;
    let outbox = dir.join("outbox");
    let emails =
        crate::support::eventually("an email in the outbox", Duration::from_secs(20), || {
            let outbox = outbox.clone();
            async move {
                let files: Vec<_> = std::fs::read_dir(&outbox)
                    .ok()?
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .collect();
                (!files.is_empty()).then_some(files)
            }
        })
        .await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the data folder");
    assert_eq!(mode(&outbox), 0o700, "the outbox");
    for file in [dir.join("coop.sqlite3"), dir.join("coop.sqlite3-wal")]
        .into_iter()
        .chain(emails)
    {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
