//! The two-tier cache: coherent across instances, no stale sets, no stampedes,
//! and a Redis outage that users do not notice.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backing, Endpoint, PrivateRedis, Tier, spawn_app_on, spawn_process};

fn family_path(family: &Value) -> String {
    format!("/api/v1/families/{}", family["family_id"].as_str().unwrap())
}

async fn rename(app: &Endpoint, session: &str, family: &Value, name: &str) {
    let put = app
        .put(
            &family_path(family),
            &json!({"family_name": name, "email": family["email"]}),
        )
        .session(session)
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
}

async fn name_of(app: &Endpoint, session: &str, family: &Value) -> String {
    let read = app.get(&family_path(family)).session(session).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    read.json()["family_name"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_read_on_another_at_once() {
    let backing = Backing::new(Tier::Postgres).await;
    let a = spawn_app_on(backing.clone(), &[]).await;
    let b = spawn_app_on(backing.clone(), &[]).await;
    let c = a.coordinator().await;
    let family = a.family(&c.session, "Before").await;
    for _ in 0..3 {
        assert_eq!(name_of(&b, &c.session, &family).await, "Before"); // now in B's L1
    }
    rename(&a, &c.session, &family, "After").await;
    let acknowledged = Instant::now();
    loop {
        if name_of(&b, &c.session, &family).await == "After" {
            break;
        }
        assert!(
            acknowledged.elapsed() < Duration::from_millis(100),
            "B still serves the old value 100 ms after A acknowledged the write"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The stale-set race, made deterministic: B reads the old row from the
/// database, then (fill delay) waits while A writes and invalidates; B must not
/// be able to store what it read.
async fn a_slow_reader_cannot_put_back_an_old_value(tier: Tier) {
    let backing = Backing::new(tier).await;
    let slow = spawn_app_on(backing.clone(), &["--cache-fill-delay", "400ms"]).await;
    // On the embedded tier one process is both reader and writer.
    let writer_app = match tier {
        Tier::Postgres => Some(spawn_app_on(backing.clone(), &[]).await),
        Tier::Sqlite => None,
    };
    let writer: &Endpoint = writer_app.as_deref().unwrap_or(&slow);
    let c = writer.coordinator().await;
    let family = writer.family(&c.session, "Old").await;
    // Warm the slow instance's session cache, so the family is its only slow load.
    assert_eq!(
        slow.get("/api/v1/auth/me")
            .session(&c.session)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    let url = format!("{}{}", slow.address, family_path(&family));
    let (http, cookie) = (slow.http.clone(), format!("coop_session={}", c.session));
    let reader = tokio::spawn(async move {
        let response = http.get(url).header("cookie", cookie).send().await.unwrap();
        response.json::<Value>().await.unwrap()["family_name"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    tokio::time::sleep(Duration::from_millis(150)).await; // the reader holds "Old"
    rename(writer, &c.session, &family, "New").await;
    assert_eq!(
        reader.await.unwrap(),
        "Old",
        "the slow read began before the write"
    );

    if let Tier::Postgres = tier {
        let key = format!(
            "coop:cache:family:{}:{}",
            c.coop_id,
            family["family_id"].as_str().unwrap()
        );
        let client = redis::Client::open(crate::support::redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let cached: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            !cached.unwrap_or_default().contains("\"Old\""),
            "the old value landed in Redis"
        );
    }
    assert_eq!(name_of(&slow, &c.session, &family).await, "New");
    assert_eq!(name_of(writer, &c.session, &family).await, "New");
}

crate::both_tiers!(a_slow_reader_cannot_put_back_an_old_value);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_a_handful_of_queries() {
    let backing = Backing::new(Tier::Postgres).await;
    let a = spawn_process(backing.clone(), &[]).await;
    let b = spawn_process(backing.clone(), &[]).await;
    let c = a.coordinator().await;
    let family = a.family(&c.session, "Popular").await;
    for app in [&a, &b] {
        assert_eq!(
            app.get("/api/v1/auth/me")
                .session(&c.session)
                .send()
                .await
                .status,
            StatusCode::OK
        );
    }
    let family_reads = async || {
        a.metric("cache_db_reads_total", &["kind=\"family\""]).await
            + b.metric("cache_db_reads_total", &["kind=\"family\""]).await
    };
    assert_eq!(family_reads().await, 0.0);

    let path = family_path(&family);
    let requests = (0..1000).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.get(&path).session(&c.session).send()
    });
    let responses = futures::future::join_all(requests).await;
    let failures: Vec<_> = responses
        .iter()
        .filter(|r| r.status != StatusCode::OK)
        .map(|r| (r.status, r.text.clone()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );

    let reads = family_reads().await;
    println!(
        "database reads for one cold key under 1,000 concurrent requests on two instances: {reads}"
    );
    assert!((1.0..=3.0).contains(&reads), "{reads} database reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_is_invisible_to_users_and_leaves_nothing_stale() {
    let mut redis = PrivateRedis::start().await;
    let backing = Backing::postgres_with_redis(redis.url()).await;
    let a = spawn_app_on(backing.clone(), &[]).await;
    let b = spawn_app_on(backing.clone(), &[]).await;
    let c = a.coordinator().await;
    let family = a.family(&c.session, "v0").await;
    assert_eq!(name_of(&b, &c.session, &family).await, "v0");
    assert_eq!(a.get("/ready").send().await.status, StatusCode::OK);

    // Write on A, read on B, over and over: A must see its write at once and B
    // within 100 ms, while Redis dies and comes back (empty) in the middle.
    for step in 1..=90 {
        if step == 30 {
            redis.kill();
            let ready = a.get("/ready").send().await;
            assert_eq!(
                ready.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                ready.text
            );
            assert_ne!(ready.json()["checks"]["redis"], "ok");
            assert_eq!(ready.json()["checks"]["database"], "ok");
        }
        if step == 60 {
            redis.restart().await;
        }
        let name = format!("v{step}");
        rename(&a, &c.session, &family, &name).await;
        // Another instance hears of the write over pub/sub, asynchronously:
        // the promise (as in the first test) is the new value within 100 ms.
        let acknowledged = Instant::now();
        while name_of(&b, &c.session, &family).await != name {
            assert!(
                acknowledged.elapsed() < Duration::from_millis(100),
                "B is stale 100 ms after A acknowledged step {step}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            name_of(&a, &c.session, &family).await,
            name,
            "A is stale at step {step}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.get("/api/v1/auth/me")
            .session(&c.session)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    // Caching resumes by itself: reads fill the restarted Redis again.
    let key = format!(
        "coop:cache:family:{}:{}",
        c.coop_id,
        family["family_id"].as_str().unwrap()
    );
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    loop {
        assert_eq!(name_of(&b, &c.session, &family).await, "v90");
        let cached: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if cached.is_some_and(|v| v.contains("\"v90\"")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cache never filled again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.get("/ready").send().await.status, StatusCode::OK);
}
