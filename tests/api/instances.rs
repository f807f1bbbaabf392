//! Statelessness: several instances on one PostgreSQL + Redis are
//! interchangeable, and restarts lose nothing.

use reqwest::StatusCode;

use crate::support::{Backing, Tier, spawn_app, spawn_app_on};

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
