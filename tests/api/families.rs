use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_tiers;
use crate::support::{Tier, spawn_app};

both_tiers!(
    families_can_be_created_read_updated_and_deleted,
    a_stale_if_match_is_refused_with_412,
    another_coops_family_does_not_exist,
    pages_walk_every_family_once,
    bad_page_parameters_are_named,
    invalid_families_are_refused,
    a_family_email_is_unique_within_a_coop,
    families_need_a_session,
);

async fn families_can_be_created_read_updated_and_deleted(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let created = app
        .post(
            "/api/v1/families",
            &json!({"family_name": " The Smiths ", "email": "smiths@example.org", "enrollment_date": "2026-09-01"}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let family = created.json();
    let id = family["family_id"].as_str().unwrap().to_owned();
    assert_eq!(family["family_name"], "The Smiths");
    assert_eq!(family["enrollment_date"], "2026-09-01");
    assert_eq!(family["coop_id"], c.coop_id.as_str());
    assert_eq!(family["version"], 1);
    crate::support::assert_utc_time(&family["created_at"], "created_at");
    crate::support::assert_utc_time(&family["updated_at"], "updated_at");
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/families/{id}").as_str())
    );

    let path = format!("/api/v1/families/{id}");
    let read = app.get(&path).session(&c.session).send().await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json(), family);
    assert_eq!(read.header("etag"), Some("\"1\""));

    let updated = app
        .put(
            &path,
            &json!({"family_name": "The Smith-Joneses", "email": "sj@example.org"}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.json()["version"], 2);
    assert_eq!(updated.json()["family_name"], "The Smith-Joneses");
    assert_eq!(updated.json()["created_at"], family["created_at"]);
    assert_eq!(
        app.get(&path).session(&c.session).send().await.json()["email"],
        "sj@example.org"
    );

    let deleted = app.delete(&path).session(&c.session).send().await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&path).session(&c.session).send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path).session(&c.session).send().await.status,
        StatusCode::NOT_FOUND
    );
}

async fn a_stale_if_match_is_refused_with_412(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let family = app.family(&c.session, "Smiths").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let change = |name: &str| json!({"family_name": name, "email": family["email"]});

    // Two editors read version 1; the first save wins, the second is told.
    let first = app
        .put(&path, &change("First"))
        .session(&c.session)
        .header("if-match", "\"1\"")
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second = app
        .put(&path, &change("Second"))
        .session(&c.session)
        .header("if-match", "\"1\"")
        .send()
        .await;
    assert_eq!(
        second.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        second.text
    );
    assert_eq!(second.error_code(), "version_mismatch");
    assert_eq!(
        app.get(&path).session(&c.session).send().await.json()["family_name"],
        "First"
    );

    let retried = app
        .put(&path, &change("Second"))
        .session(&c.session)
        .header("if-match", "2")
        .send()
        .await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.json()["version"], 3);

    let stale_delete = app
        .delete(&path)
        .session(&c.session)
        .header("if-match", "\"2\"")
        .send()
        .await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    let garbage = app
        .put(&path, &change("X"))
        .session(&c.session)
        .header("if-match", "soon")
        .send()
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

async fn another_coops_family_does_not_exist(tier: Tier) {
    let app = spawn_app(tier).await;
    let ours = app.coordinator().await;
    let theirs = app.coordinator().await;
    let family = app.family(&theirs.session, "Theirs").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let missing = format!("/api/v1/families/{}", uuid::Uuid::now_v7());

    let read = app.get(&path).session(&ours.session).send().await;
    let absent = app.get(&missing).session(&ours.session).send().await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    assert_eq!(
        read.text, absent.text,
        "no hint that the family exists elsewhere"
    );
    let update = app
        .put(
            &path,
            &json!({"family_name": "Mine", "email": "m@example.org"}),
        )
        .session(&ours.session)
        .send()
        .await;
    assert_eq!(update.status, StatusCode::NOT_FOUND);
    // Its payments too: a 404, not an empty list (issue 15, finding 9).
    let payments = app
        .get(&format!("{path}/payments"))
        .session(&ours.session)
        .send()
        .await;
    assert_eq!(payments.status, StatusCode::NOT_FOUND, "{}", payments.text);
    assert_eq!(
        app.delete(&path).session(&ours.session).send().await.status,
        StatusCode::NOT_FOUND
    );
    let listed = app
        .get("/api/v1/families")
        .session(&ours.session)
        .send()
        .await;
    assert_eq!(listed.json()["items"], json!([]));
    // Still intact for its owner.
    assert_eq!(
        app.get(&path).session(&theirs.session).send().await.json()["family_name"],
        "Theirs"
    );
    // Ids that are not UUIDs are just unknown ids.
    assert_eq!(
        app.get("/api/v1/families/42")
            .session(&ours.session)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn pages_walk_every_family_once(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(app.family(&c.session, &format!("Family {n}")).await["family_id"].clone());
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/families?limit=3&cursor={cursor}"),
            None => "/api/v1/families?limit=3".to_owned(),
        };
        let page = app.get(&path).session(&c.session).send().await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let page = page.json();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|f| f["family_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every family once, in creation order");
    let unique: HashSet<String> = seen.iter().map(|v| v.to_string()).collect();
    assert_eq!(unique.len(), 7);

    let default_page = app
        .get("/api/v1/families")
        .session(&c.session)
        .send()
        .await
        .json();
    assert_eq!(default_page["items"].as_array().unwrap().len(), 7);
    assert!(default_page["next_cursor"].is_null());
}

async fn bad_page_parameters_are_named(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=abc", "cursor"),
    ] {
        let response = app
            .get(&format!("/api/v1/families?{query}"))
            .session(&c.session)
            .send()
            .await;
        assert!(
            response.status == StatusCode::UNPROCESSABLE_ENTITY
                || response.status == StatusCode::BAD_REQUEST,
            "{query}: {} {}",
            response.status,
            response.text
        );
        if response.status == StatusCode::UNPROCESSABLE_ENTITY {
            assert!(
                response.json()["error"]["fields"][field].is_string(),
                "{query}: {}",
                response.text
            );
        }
    }
    let max = app
        .get("/api/v1/families?limit=200")
        .session(&c.session)
        .send()
        .await;
    assert_eq!(max.status, StatusCode::OK);
}

async fn invalid_families_are_refused(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let response = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "", "email": "nope", "enrollment_date": "2026-13-45"}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.text
    );
    let fields = response.json()["error"]["fields"].clone();
    for field in ["family_name", "email", "enrollment_date"] {
        assert!(fields[field].is_string(), "{field} not named in {fields}");
    }
    let missing = app
        .post("/api/v1/families", &json!({}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let family = app.family(&c.session, "Valid").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let bad_update = app
        .put(&path, &json!({"family_name": "x"}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(bad_update.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_update.json()["error"]["fields"]["email"].is_string());
    // Nothing was lost or changed by the refused update.
    assert_eq!(
        app.get(&path).session(&c.session).send().await.json(),
        family
    );
}

async fn a_family_email_is_unique_within_a_coop(tier: Tier) {
    let app = spawn_app(tier).await;
    let c = app.coordinator().await;
    let body = json!({"family_name": "A", "email": "same@example.org"});
    assert_eq!(
        app.post("/api/v1/families", &body)
            .session(&c.session)
            .send()
            .await
            .status,
        StatusCode::CREATED
    );
    let again = app
        .post("/api/v1/families", &body)
        .session(&c.session)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.json()["error"]["fields"]["email"].is_string());
    // Another co-op may have a family with the same email.
    let other = app.coordinator().await;
    assert_eq!(
        app.post("/api/v1/families", &body)
            .session(&other.session)
            .send()
            .await
            .status,
        StatusCode::CREATED
    );
}

async fn families_need_a_session(tier: Tier) {
    let app = spawn_app(tier).await;
    let id = uuid::Uuid::now_v7();
    for response in [
        app.get("/api/v1/families").send().await,
        app.post(
            "/api/v1/families",
            &json!({"family_name": "A", "email": "a@example.org"}),
        )
        .send()
        .await,
        app.get(&format!("/api/v1/families/{id}")).send().await,
        app.delete(&format!("/api/v1/families/{id}")).send().await,
    ] {
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text
        );
        assert_eq!(response.error_code(), "unauthenticated");
    }
}
