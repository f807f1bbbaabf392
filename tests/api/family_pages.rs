//! A family's pages read the semesters, the family's children and its
//! enrollments from the cache: each test first views a page (so the cache
//! holds the old value), then writes, then checks that the next view shows
//! the write: the family's own, another family's drop that promoted its
//! child, a coordinator's capacity raise, rename or new semester.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_tiers;
use crate::courses::{Family, a_class, app_with, family_account, open_semester};
use crate::support::fakes::smtp_sink::SmtpSink;
use crate::support::{Backing, Endpoint, Tier, spawn_app_on};

/// A signed-in page's HTML (200).
async fn page(app: &Endpoint, session: &str, path: &str) -> String {
    let answer = app
        .get(path)
        .session(session)
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    answer.text
}

/// What the catalog says of a child in a class: "Ann: enrolled",
/// "Cy: waitlist, number 1"; the catalog shows one line per placed child.
fn placed(name: &str, state: &str) -> String {
    format!("<p>{name}: {state} <button")
}

async fn drop_child(app: &Endpoint, session: &str, class: &str, child: &str) {
    let dropped = app
        .delete(&format!("/api/v1/classes/{class}/enrollments/{child}"))
        .session(session)
        .send()
        .await;
    assert_eq!(dropped.status, StatusCode::NO_CONTENT, "{}", dropped.text);
}

async fn enrolled(app: &Endpoint, family: &Family, class: &str, child: &str, state: &str) {
    let answer = app.enroll(&family.session, class, child).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.json()["state"], state, "{}", answer.text);
}

/// Each family views its pages before every write, so a missing invalidation
/// shows as an old page after it.
async fn a_family_s_pages_show_every_write_that_changed_them(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink, &[]).await;
    let c = app.verified_coordinator(&sink).await;
    let semester = app.semester(&c.session, &open_semester()).await;
    let paint = app
        .class(
            &c.session,
            &semester,
            &a_class("Painting", 1, "monday", "09:00"),
        )
        .await;
    let ann_family = family_account(&app, &sink, &c.session, "Arden").await;
    let cy_family = family_account(&app, &sink, &c.session, "Castor").await;
    let dee_family = family_account(&app, &sink, &c.session, "Dunne").await;
    let ann = app
        .child(&ann_family.session, &ann_family.id, "Ann", "2016-02-01")
        .await;
    let cy = app
        .child(&cy_family.session, &cy_family.id, "Cy", "2016-02-01")
        .await;
    let dee = app
        .child(&dee_family.session, &dee_family.id, "Dee", "2016-02-01")
        .await;
    let view = |family: &Family| {
        let session = family.session.clone();
        let app = &app;
        async move { page(app, &session, "/catalog").await }
    };
    for family in [&ann_family, &cy_family, &dee_family] {
        view(family).await;
        page(&app, &family.session, "/home").await;
    }

    // A child added is in the catalog's picker at once.
    let before = view(&ann_family).await;
    assert!(!before.contains(">Abe</option>"), "{before}");
    let abe = app
        .child(&ann_family.session, &ann_family.id, "Abe", "2016-05-01")
        .await;
    let after = view(&ann_family).await;
    assert!(
        after.contains(&format!("<option value=\"{abe}\">Abe</option>")),
        "the new child is not in the picker: {after}"
    );
    let children = app
        .get_json(
            &ann_family.session,
            &format!("/api/v1/families/{}/children", ann_family.id),
        )
        .await;
    assert_eq!(children["items"].as_array().unwrap().len(), 2, "{children}");

    // Enrolling: the catalog and the home page say so at once.
    enrolled(&app, &ann_family, &paint, &ann, "enrolled").await;
    let catalog = view(&ann_family).await;
    assert!(catalog.contains(&placed("Ann", "enrolled")), "{catalog}");
    let home = page(&app, &ann_family.session, "/home").await;
    assert!(home.contains("<li>Painting</li>"), "{home}");

    // Two waitlisted children of two other families.
    enrolled(&app, &cy_family, &paint, &cy, "waitlisted").await;
    enrolled(&app, &dee_family, &paint, &dee, "waitlisted").await;
    let catalog = view(&dee_family).await;
    assert!(
        catalog.contains(&placed("Dee", "waitlist, number 2")),
        "{catalog}"
    );

    // Cy leaves the waitlist: Dee moves up, on Dee's family's pages too.
    drop_child(&app, &cy_family.session, &paint, &cy).await;
    let catalog = view(&dee_family).await;
    assert!(
        catalog.contains(&placed("Dee", "waitlist, number 1")),
        "Dee's place did not move up after Cy left the waitlist: {catalog}"
    );
    let home = page(&app, &dee_family.session, "/home").await;
    assert!(
        home.contains("<li>Painting (waitlist, number 1)</li>"),
        "{home}"
    );

    // Ann drops: Dee is promoted, and Dee's family (which did nothing) sees it.
    drop_child(&app, &ann_family.session, &paint, &ann).await;
    let catalog = view(&dee_family).await;
    assert!(
        catalog.contains(&placed("Dee", "enrolled")),
        "Dee was promoted by another family's drop, but the page says: {catalog}"
    );
    let home = page(&app, &dee_family.session, "/home").await;
    assert!(home.contains("<li>Painting</li>"), "{home}");
    let mine = app
        .get_json(
            &dee_family.session,
            &format!("/api/v1/families/{}/enrollments", dee_family.id),
        )
        .await;
    assert_eq!(mine["items"][0]["state"], "enrolled", "{mine}");
    let catalog = view(&ann_family).await;
    assert!(!catalog.contains(&placed("Ann", "enrolled")), "{catalog}");

    // A coordinator's capacity raise promotes Cy, enrolled again onto the
    // waitlist: Cy's family sees the seat.
    enrolled(&app, &cy_family, &paint, &cy, "waitlisted").await;
    let catalog = view(&cy_family).await;
    assert!(
        catalog.contains(&placed("Cy", "waitlist, number 1")),
        "{catalog}"
    );
    let mut raised = a_class("Painting", 2, "monday", "09:00");
    let put = app
        .put(&format!("/api/v1/classes/{paint}"), &raised)
        .session(&c.session)
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let catalog = view(&cy_family).await;
    assert!(
        catalog.contains(&placed("Cy", "enrolled")),
        "Cy was promoted by a capacity raise, but the page says: {catalog}"
    );

    // A class renamed and a child renamed: the home page has both names.
    raised["title"] = json!("Oil painting");
    let put = app
        .put(&format!("/api/v1/classes/{paint}"), &raised)
        .session(&c.session)
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let renamed = app
        .put(
            &format!("/api/v1/families/{}/children/{cy}", cy_family.id),
            &json!({"first_name": "Cyrus", "birth_date": "2016-02-01"}),
        )
        .session(&cy_family.session)
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let home = page(&app, &cy_family.session, "/home").await;
    assert!(
        home.contains("<h3>Cyrus</h3>") && home.contains("<li>Oil painting</li>"),
        "{home}"
    );
    let catalog = view(&cy_family).await;
    assert!(catalog.contains(&placed("Cyrus", "enrolled")), "{catalog}");

    // A new semester, then a renamed one: in the catalog's semester list.
    let mut spring = open_semester();
    spring["name"] = json!("Spring");
    let spring_id = app.semester(&c.session, &spring).await;
    let catalog = view(&ann_family).await;
    assert!(
        catalog.contains(&format!("<option value=\"{spring_id}\""))
            && catalog.contains(">Spring</option>"),
        "the new semester is not in the catalog's list: {catalog}"
    );
    spring["name"] = json!("Late spring");
    let put = app
        .put(&format!("/api/v1/semesters/{spring_id}"), &spring)
        .session(&c.session)
        .send()
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    let catalog = view(&ann_family).await;
    assert!(catalog.contains(">Late spring</option>"), "{catalog}");
    let listed = app.get_json(&c.session, "/api/v1/semesters").await;
    assert!(listed.to_string().contains("Late spring"), "{listed}");
}

both_tiers!(a_family_s_pages_show_every_write_that_changed_them);

/// Polls a page on `app` until it contains `text`; the promise is the same as
/// for every cached read across instances (tests/api/cache.rs): another
/// instance hears of a write over Redis pub/sub, within 100 ms of the answer.
async fn shows_soon(app: &Endpoint, session: &str, path: &str, text: &str) {
    let acknowledged = Instant::now();
    loop {
        let html = page(app, session, path).await;
        if html.contains(text) {
            return;
        }
        assert!(
            acknowledged.elapsed() < Duration::from_millis(100),
            "{path} on the other instance still lacks {text:?} 100 ms after the write: {html}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Two instances on PostgreSQL + Redis: a family's pages on one show writes
/// made through the other, its own and those of others that changed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_s_pages_on_another_instance_show_its_writes() {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(Tier::Postgres).await;
    let a = app_with(backing.clone(), &sink, &[]).await;
    let b = spawn_app_on(backing.clone(), &["--run-jobs", "off"]).await;
    let c = a.verified_coordinator(&sink).await;
    let semester = a.semester(&c.session, &open_semester()).await;
    let chess = a
        .class(
            &c.session,
            &semester,
            &a_class("Chess", 1, "friday", "13:00"),
        )
        .await;
    let first = family_account(&a, &sink, &c.session, "Ferris").await;
    let second = family_account(&a, &sink, &c.session, "Soto").await;
    let fay = a
        .child(&first.session, &first.id, "Fay", "2015-01-01")
        .await;
    let sol = a
        .child(&second.session, &second.id, "Sol", "2015-01-01")
        .await;
    for app in [&a, &b] {
        for family in [&first, &second] {
            page(app, &family.session, "/catalog").await;
            page(app, &family.session, "/home").await;
        }
    }

    let gus = a
        .child(&first.session, &first.id, "Gus", "2015-06-01")
        .await;
    shows_soon(
        &b,
        &first.session,
        "/catalog",
        &format!("<option value=\"{gus}\">Gus</option>"),
    )
    .await;

    enrolled(&a, &first, &chess, &fay, "enrolled").await;
    shows_soon(&b, &first.session, "/catalog", &placed("Fay", "enrolled")).await;
    enrolled(&b, &second, &chess, &sol, "waitlisted").await;
    shows_soon(
        &a,
        &second.session,
        "/catalog",
        &placed("Sol", "waitlist, number 1"),
    )
    .await;

    // The first family drops through A; the second, promoted, looks on B.
    drop_child(&a, &first.session, &chess, &fay).await;
    shows_soon(&b, &second.session, "/catalog", &placed("Sol", "enrolled")).await;
    shows_soon(&b, &second.session, "/home", "<li>Chess</li>").await;
}
