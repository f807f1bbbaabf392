//! Statelessness: several instances on one PostgreSQL + Redis are
//! interchangeable, and restarts lose nothing.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Backing, Tier, spawn_app, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_instance_works_on_another_and_survives_its_restart() {
    let backing = Backing::new(Tier::Postgres).await;
    let a = spawn_app_on(backing.clone(), &["--instance-id", "a"]).await;
    let b = spawn_app_on(backing.clone(), &["--instance-id", "b"]).await;
    let c = a.coordinator().await;
    let family = a.family(&c.session, "Shared").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());

    let on_b = b.get(&path).session(&c.session).send().await;
    assert_eq!(
        on_b.status,
        StatusCode::OK,
        "B accepts A's session: {}",
        on_b.text
    );
    assert_eq!(on_b.json(), family);

    // A goes away entirely; B keeps serving the user, and a new A does too.
    a.stop().await;
    assert_eq!(
        b.get("/api/v1/auth/me")
            .session(&c.session)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    let a_again = spawn_app_on(backing.clone(), &["--instance-id", "a"]).await;
    let me = a_again
        .get("/api/v1/auth/me")
        .session(&c.session)
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);

    // A log-out on one instance ends the session everywhere.
    let logout = b
        .req(reqwest::Method::POST, "/api/v1/auth/logout")
        .session(&c.session)
        .send()
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        a_again
            .get("/api/v1/auth/me")
            .session(&c.session)
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let backing = Backing::new(Tier::Postgres).await;
    let (a, b, c) = tokio::join!(
        spawn_app_on(backing.clone(), &[]),
        spawn_app_on(backing.clone(), &[]),
        spawn_app_on(backing.clone(), &[]),
    );
    for app in [&a, &b, &c] {
        assert_eq!(app.get("/ready").send().await.status, StatusCode::OK);
    }
    let coordinator = a.coordinator().await;
    assert_eq!(
        c.get("/api/v1/auth/me")
            .session(&coordinator.session)
            .send()
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_tier_keeps_data_and_sessions_across_a_restart() {
    let backing = Backing::new(Tier::Sqlite).await;
    let first = spawn_app_on(backing.clone(), &[]).await;
    let c = first.coordinator().await;
    let family = first.family(&c.session, "Durable").await;
    first.stop().await;

    let second = spawn_app_on(backing.clone(), &[]).await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let read = second.get(&path).session(&c.session).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json(), family);
    assert_eq!(
        second.login(&c.email, &c.password).await.status,
        StatusCode::OK
    );
}

/// A private Redis on a random port, so the test can stop it.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_until_up(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_503_with_retry_after_and_not_ready() {
    let redis = PrivateRedis::start();
    redis.wait_until_up().await;
    let Backing::Postgres { db, .. } =
        std::sync::Arc::into_inner(Backing::new(Tier::Postgres).await).unwrap()
    else {
        unreachable!()
    };
    let backing = std::sync::Arc::new(Backing::Postgres {
        db,
        redis_url: redis.url(),
    });
    let app = spawn_app_on(backing, &[]).await;
    let c = app.coordinator().await;
    assert_eq!(app.get("/ready").send().await.status, StatusCode::OK);

    drop(redis);
    let ready = app.get("/ready").send().await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert!(
        ready.json()["checks"]["redis"]
            .as_str()
            .is_some_and(|s| s != "ok"),
        "{}",
        ready.text
    );
    assert_eq!(ready.json()["checks"]["database"], "ok");

    let me = app.get("/api/v1/auth/me").session(&c.session).send().await;
    assert_eq!(me.status, StatusCode::SERVICE_UNAVAILABLE, "{}", me.text);
    assert_eq!(me.header("retry-after"), Some("1"));
    assert_eq!(me.error_code(), "service_unavailable");
}

#[tokio::test]
async fn spawn_app_gives_each_test_its_own_database() {
    let one = spawn_app(Tier::Postgres).await;
    let two = spawn_app(Tier::Postgres).await;
    let c = one.coordinator().await;
    assert_eq!(
        two.login(&c.email, &c.password).await.status,
        StatusCode::UNAUTHORIZED
    );
}
