//! The web app in a real browser (Debian's Chromium through chromedriver):
//! the journeys of a coordinator, families and a teacher, with JavaScript on
//! and off, accessibility checked by axe-core on every page visited, page
//! weight, CSRF from another site, tenancy. With `COOP_SCREENSHOTS=DIR` the
//! journey also saves screenshots of the main pages at desktop and phone width.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::fakes::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::{Backing, TestApp, Tier, eventually, spawn_app_on};

const FAST: &[&str] = &["--job-poll", "50ms", "--run-jobs", "on"];
/// Page, stylesheet and script together, compressed, cold cache.
const PAGE_BUDGET: u64 = 60 * 1024;

async fn app_with(backing: Arc<Backing>, sink: &SmtpSink) -> TestApp {
    let mut args: Vec<&str> = vec!["--smtp-url", sink.url()];
    args.extend_from_slice(FAST);
    spawn_app_on(backing, &args).await
}

/// Checks the page: no serious or critical accessibility violation, no
/// Content-Security-Policy violation, within its weight budget, and, for
/// screenshots, saves it. (The checks run in the page: without JavaScript
/// they cannot, and those are the same pages the JavaScript journey checks.)
async fn check(b: &Browser, what: &str) {
    if !b.javascript() {
        return;
    }
    let problems = b.accessibility_problems().await;
    assert!(
        problems.is_empty(),
        "{what} ({}): {problems:#?}",
        b.path().await
    );
    let violations = b.csp_violations().await;
    assert!(
        violations.is_empty(),
        "{what} ({}) broke its Content-Security-Policy: {violations:#?}",
        b.path().await
    );
    let weight = b.transferred_bytes().await;
    assert!(
        weight <= PAGE_BUDGET,
        "{what} ({}) weighs {weight} bytes with a cold cache, over the {PAGE_BUDGET}-byte budget",
        b.path().await
    );
    if let Ok(dir) = std::env::var("COOP_SCREENSHOTS") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("the screenshots folder");
        b.screenshot(&dir.join(format!("{what}.png"))).await;
    }
}

async fn wait_for_text(b: &Browser, text: &str) {
    b.wait_for_text(text).await
}

fn invite_token(mail: &ReceivedMail) -> String {
    mail.link_token("token=")
}

async fn welcome_for(sink: &SmtpSink, email: &str) -> ReceivedMail {
    eventually("the welcome email", Duration::from_secs(20), || async {
        sink.messages().into_iter().find(|m| {
            m.to.iter().any(|to| to.contains(email))
                && m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Welcome"))
        })
    })
    .await
}

/// A family opens its invite, chooses a password, adds a child.
async fn family_joins(
    app: &TestApp,
    sink: &SmtpSink,
    email: &str,
    child: &str,
    javascript: bool,
) -> Browser {
    let b = Browser::start(javascript, 1280).await;
    let token = invite_token(&welcome_for(sink, email).await);
    if javascript {
        // The link as the email has it: the script copies the fragment.
        b.goto(&format!("{}/accept-invite#token={token}", app.address))
            .await;
    } else {
        b.goto(&format!("{}/accept-invite", app.address)).await;
        b.fill("f-token", &token).await;
    }
    check(&b, "accept-invite").await;
    b.fill("f-password", "family password 1").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Your family").await;
    check(&b, "family-home").await;
    b.click("a[href$='/children/new']").await;
    wait_for_text(&b, "Add a child").await;
    check(&b, "add-child").await;
    b.fill("f-first_name", child).await;
    b.fill("f-birth_date", "05/05/2019").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "The child is added").await;
    b
}

async fn enroll_in(b: &Browser, app: &TestApp, class: &str) {
    b.goto(&format!("{}/catalog", app.address)).await;
    check(b, "catalog").await;
    b.click(&format!("form[action='/classes/{class}/enroll'] button"))
        .await;
}

/// The coordinator's part through the API (fast); the journeys' browser
/// parts are what they test. Returns (coordinator session, semester, class,
/// second class).
async fn coordinator_setup(
    app: &TestApp,
    sink: &SmtpSink,
) -> (crate::support::Coordinator, String, String, String) {
    let c = app.verified_coordinator(sink).await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let semester = app
        .post(
            "/api/v1/semesters",
            &json!({"name": "Fall 2030", "starts_on": "2030-09-02", "ends_on": "2030-12-20",
                    "registration_opens_at": fmt(now - time::Duration::hours(1)),
                    "registration_closes_at": fmt(now + time::Duration::days(30))}),
        )
        .session(&c.session)
        .send()
        .await;
    assert_eq!(semester.status, StatusCode::CREATED, "{}", semester.text);
    let semester = semester.json()["semester_id"].as_str().unwrap().to_owned();
    let mut classes = Vec::new();
    for (title, day) in [("Art", "monday"), ("Music", "tuesday")] {
        let class = app
            .post(
                &format!("/api/v1/semesters/{semester}/classes"),
                &json!({"title": title, "capacity": 1, "fee_cents": 4500, "currency": "usd",
                        "meetings": [{"weekday": day, "starts_at": "09:30", "minutes": 60, "room": "Hall"}]}),
            )
            .session(&c.session)
            .send()
            .await;
        assert_eq!(class.status, StatusCode::CREATED, "{}", class.text);
        classes.push(class.json()["class_id"].as_str().unwrap().to_owned());
    }
    (c, semester, classes[0].clone(), classes[1].clone())
}

/// The core journey: two families join from their invite emails, add a child
/// each and race for the one seat of Art; the first gets it, the second the
/// waitlist; the first drops; the second is emailed and sees its child
/// enrolled; the coordinator sees the roster; a parent made the class's
/// teacher sees its roster and no other.
async fn core_journey(tier: Tier, javascript: bool) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink).await;
    let (c, _semester, art, music) = coordinator_setup(&app, &sink).await;
    let smiths = app.family(&c.session, "The Smiths").await;
    let joneses = app.family(&c.session, "The Joneses").await;
    let (smiths_email, joneses_email) = (
        smiths["email"].as_str().unwrap().to_owned(),
        joneses["email"].as_str().unwrap().to_owned(),
    );

    let a = family_joins(&app, &sink, &smiths_email, "Emma", javascript).await;
    enroll_in(&a, &app, &art).await;
    wait_for_text(&a, "Enrolled: the seat is yours").await;
    assert!(a.text().await.contains("Emma: enrolled"));

    let b = family_joins(&app, &sink, &joneses_email, "Leo", javascript).await;
    enroll_in(&b, &app, &art).await;
    wait_for_text(&b, "you are on the waitlist").await;
    assert!(b.text().await.contains("Leo: waitlist, number 1"));
    assert!(
        b.text().await.contains("Full"),
        "the catalog says the class is full"
    );

    // Emma drops; Leo gets the seat and his family an email.
    a.goto(&format!("{}/catalog", app.address)).await;
    a.click(&format!("form[action='/classes/{art}/drop'] button"))
        .await;
    wait_for_text(&a, "Dropped").await;
    let promotion = eventually("the promotion email", Duration::from_secs(20), || async {
        sink.messages().into_iter().find(|m| {
            m.subject.as_deref() == Some("Leo is enrolled in Art")
                && m.to.iter().any(|to| to.contains(&joneses_email))
        })
    })
    .await;
    assert!(promotion.body().contains("a seat opened"));
    b.goto(&format!("{}/home", app.address)).await;
    wait_for_text(&b, "Art").await;
    assert!(!b.text().await.contains("waitlist"), "{}", b.text().await);
    b.goto(&format!("{}/schedule", app.address)).await;
    check(&b, "schedule").await;
    assert!(
        b.text().await.contains("09:30–10:30 Art — Leo, Hall"),
        "{}",
        b.text().await
    );
    // The calendar subscription: an address a calendar app reads without a
    // session.
    b.click("form[action='/schedule/feed'] button").await;
    wait_for_text(&b, "Your subscription address is ready").await;
    let address = b
        .client
        .find(fantoccini::Locator::Id("f-subscription"))
        .await
        .expect("the subscription address")
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    let ics = reqwest::get(&address).await.expect("the feed");
    assert_eq!(ics.status(), StatusCode::OK, "{address}");
    assert!(ics.text().await.unwrap().contains("Art — Leo"));
    for page in ["pay", "profile", "announcements"] {
        b.goto(&format!("{}/{page}", app.address)).await;
        check(&b, &format!("family-{page}")).await;
    }

    // The coordinator's view: the roster, then making the Smiths' parent the
    // teacher of Art.
    let coordinator = Browser::start(javascript, 1280).await;
    coordinator.goto(&format!("{}/sign-in", app.address)).await;
    check(&coordinator, "sign-in").await;
    coordinator.fill("f-email", &c.email).await;
    coordinator.fill("f-password", &c.password).await;
    coordinator.click("main form button[type=submit]").await;
    wait_for_text(&coordinator, "Dashboard").await;
    check(&coordinator, "dashboard").await;
    coordinator
        .goto(&format!("{}/classes/{art}", app.address))
        .await;
    wait_for_text(&coordinator, "Roster").await;
    check(&coordinator, "class-roster").await;
    assert!(coordinator.text().await.contains("Leo"));
    coordinator
        .goto(&format!("{}/classes/{art}/edit", app.address))
        .await;
    check(&coordinator, "class-edit").await;
    coordinator
        .select("f-teacher_user_id", &format!("The Smiths ({smiths_email})"))
        .await;
    coordinator.click("main form button[type=submit]").await;
    wait_for_text(&coordinator, "The class is saved").await;
    for page in ["families", "semesters", "announcements", "jobs?state=dead"] {
        coordinator.goto(&format!("{}/{page}", app.address)).await;
        check(
            &coordinator,
            &format!("coordinator-{}", page.split('?').next().unwrap()),
        )
        .await;
    }

    // The teacher sees Art's roster, and no roster of Music.
    a.goto(&format!("{}/teaching", app.address)).await;
    wait_for_text(&a, "Art").await;
    check(&a, "teaching").await;
    a.goto(&format!("{}/classes/{art}", app.address)).await;
    wait_for_text(&a, "Roster").await;
    assert!(a.text().await.contains("Leo"));
    a.goto(&format!("{}/classes/{music}", app.address)).await;
    wait_for_text(&a, "Music").await;
    assert!(!a.text().await.contains("Roster"), "{}", a.text().await);

    for browser in [a, b, coordinator] {
        browser.close().await;
    }
}

async fn the_core_journey_in_a_browser(tier: Tier) {
    core_journey(tier, true).await;
}

async fn the_core_journey_without_javascript(tier: Tier) {
    core_journey(tier, false).await;
}

/// A coordinator builds the co-op in the browser itself: sign-up, a
/// semester, a class, a family, an announcement; forms with mistakes come
/// back with the problem next to the field.
async fn a_coordinator_sets_up_the_co_op_in_the_browser(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink).await;
    let b = Browser::start(true, 1280).await;
    b.goto(&format!("{}/", app.address)).await;
    check(&b, "landing").await;
    b.goto(&format!("{}/sign-up", app.address)).await;
    check(&b, "sign-up").await;
    b.fill("f-coop_name", "Riverside").await;
    b.fill("f-name", "Ada Lovelace").await;
    b.fill("f-email", "ada@example.org").await;
    b.fill("f-password", "short").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "at least 10 characters").await;
    check(&b, "sign-up-problem").await;
    b.fill("f-password", "correct horse battery").await;
    b.click("main form button[type=submit]").await;
    // The same answer whether or not the address has an account: check
    // the email, and sign in meanwhile.
    wait_for_text(&b, "Check your email").await;
    check(&b, "sign-up-done").await;
    b.fill("f-email", "ada@example.org").await;
    b.fill("f-password", "correct horse battery").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Confirm your email.").await;
    let confirmation = sink
        .take_mail_to("ada@example.org", Duration::from_secs(20))
        .await;
    b.goto(&format!(
        "{}/verify-email#token={}",
        app.address,
        confirmation.link_token("/verify-email#token=")
    ))
    .await;
    check(&b, "verify-email").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Your email is confirmed").await;
    assert!(
        !b.text().await.contains("Confirm your email."),
        "{}",
        b.text().await
    );

    b.goto(&format!("{}/semesters/new", app.address)).await;
    check(&b, "semester-new").await;
    b.fill("f-name", "Fall 2030").await;
    b.fill("f-starts_on", "09/02/2030").await;
    b.fill("f-ends_on", "12/20/2030").await;
    // datetime-local fields: month, day, year, then the time.
    b.fill("f-registration_opens_at", "01/01/2026\t09:00AM")
        .await;
    b.fill("f-registration_closes_at", "09/01/2030\t09:00AM")
        .await;
    b.fill("f-holidays", "2030-11-25").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "The semester is saved").await;
    check(&b, "semester").await;
    assert!(
        b.text().await.contains("Registration: open"),
        "{}",
        b.text().await
    );

    b.click("a[href$='/classes/new']").await;
    wait_for_text(&b, "New class").await;
    check(&b, "class-new").await;
    b.fill("f-title", "Watercolor").await;
    b.fill("f-capacity", "0").await;
    b.select("f-weekday_0", "Monday").await;
    b.fill("f-starts_at_0", "09:30AM").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "must be a whole number from 1").await;
    b.fill("f-capacity", "12").await;
    b.fill("f-fee", "45.00").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "The class is saved").await;
    assert!(
        b.text().await.contains("Monday 09:30 (60 min)"),
        "{}",
        b.text().await
    );

    b.goto(&format!("{}/families/new", app.address)).await;
    check(&b, "family-new").await;
    b.fill("f-family_name", "The Smiths").await;
    b.fill("f-email", "smiths@example.org").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "The family is enrolled").await;
    check(&b, "family").await;
    welcome_for(&sink, "smiths@example.org").await;
    b.goto(&format!("{}/families?q=smith", app.address)).await;
    wait_for_text(&b, "smiths@example.org").await;

    b.goto(&format!("{}/announcements/new", app.address)).await;
    check(&b, "announcement-new").await;
    b.fill("f-subject", "Welcome back").await;
    b.fill("f-body", "Classes start on the 2nd.").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "on its way").await;
    check(&b, "announcement").await;
    b.close().await;
}

/// A form posted from another site is refused, and changes nothing; another
/// co-op's pages are not found; pages are never stored by shared caches and
/// stay within their weight budget.
async fn pages_refuse_forged_forms_and_other_co_ops(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink).await;
    let (c, _, _, _) = coordinator_setup(&app, &sink).await;
    let family = app.family(&c.session, "The Smiths").await;
    let family_id = family["family_id"].as_str().unwrap().to_owned();
    let other = app.verified_coordinator(&sink).await;

    let b = Browser::start(true, 1280).await;
    b.goto(&format!("{}/sign-in", app.address)).await;
    b.fill("f-email", &other.email).await;
    b.fill("f-password", &other.password).await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Dashboard").await;
    check(&b, "dashboard-other-co-op").await;
    // The policy check can fail: an inline script is refused and reported.
    b.client
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.appendChild(s); return null;",
            vec![],
        )
        .await
        .expect("inject a script");
    let violations = b.csp_violations().await;
    assert!(
        violations.iter().any(|v| v.starts_with("script-src")),
        "an inline script must break the policy and be reported: {violations:?}"
    );
    // Another co-op's family: not found, as a page.
    b.goto(&format!("{}/families/{family_id}", app.address))
        .await;
    wait_for_text(&b, "Not found").await;
    check(&b, "not-found").await;

    // Another site's form aimed at our "add a family".
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let target = format!("{}/families/new", app.address);
    let page = format!(
        "<!doctype html><html lang=en><title>x</title><form method=post action='{target}'>\
         <input name=csrf value=guess><input name=family_name value=Forged>\
         <input name=email value=forged@example.org><button id=go>go</button></form>"
    );
    let server = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        );
        axum::serve(evil, app).await.unwrap();
    });
    b.goto(&format!("http://localhost:{evil_port}/")).await;
    b.click("#go").await;
    wait_for_text(&b, "Please try that again").await;
    server.abort();
    let forged = app
        .get("/api/v1/families?limit=200")
        .session(&other.session)
        .send()
        .await;
    assert!(!forged.text.contains("Forged"), "{}", forged.text);

    // Signed-in pages are private; static assets are public and immutable.
    let home = app.get("/home").session(&other.session).send().await;
    assert_eq!(home.header("cache-control"), Some("private, no-store"));
    let policy = home.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("script-src 'self'")
            && policy.contains("frame-ancestors 'none'")
            && !policy.contains("unsafe"),
        "{policy}"
    );
    b.close().await;
}

/// The main pages at phone width (360 px): laid out without sideways
/// scrolling, and accessible.
async fn pages_work_at_phone_width(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink).await;
    let (c, semester, _, _) = coordinator_setup(&app, &sink).await;
    let b = Browser::start(true, 360).await;
    b.goto(&format!("{}/sign-in", app.address)).await;
    b.fill("f-email", &c.email).await;
    b.fill("f-password", &c.password).await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Dashboard").await;
    for (page, name) in [
        ("home".to_owned(), "phone-dashboard"),
        (format!("semesters/{semester}"), "phone-semester"),
        ("families".to_owned(), "phone-families"),
    ] {
        b.goto(&format!("{}/{page}", app.address)).await;
        check(&b, name).await;
        let overflow = b
            .client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(0) <= 0,
            "{page} scrolls sideways by {overflow}"
        );
    }
    b.close().await;
}

crate::both_tiers!(
    the_core_journey_in_a_browser,
    the_core_journey_without_javascript,
    a_coordinator_sets_up_the_co_op_in_the_browser,
    pages_refuse_forged_forms_and_other_co_ops,
    pages_work_at_phone_width,
    an_account_is_kept_in_the_browser,
    an_operator_watches_the_charts_fill_and_a_coordinator_gets_404,
);

/// A platform operator (from `coop operators add`) signs in on the sign-in
/// page and lands on the operations page; while a short load runs, htmx
/// redraws the charts and they fill. A coordinator asking for the page gets
/// the 404 page.
async fn an_operator_watches_the_charts_fill_and_a_coordinator_gets_404(tier: Tier) {
    let backing = Backing::new(tier).await;
    let app = spawn_app_on(backing.clone(), &["--operations-sample-every", "1s"]).await;
    let c = app.coordinator().await;
    let (operator_email, _) = crate::operators::operator_session(&app, &backing).await;

    let b = Browser::start(true, 1280).await;
    b.goto(&format!("{}/sign-in", app.address)).await;
    b.fill("f-email", &operator_email).await;
    b.fill("f-password", "an operator's password").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Requests per second").await;
    assert_eq!(b.path().await, "/operations");

    // A short load: reads and writes for a few seconds.
    let family = app.family(&c.session, "The Loaded").await;
    let path = format!("/api/v1/families/{}", family["family_id"].as_str().unwrap());
    let load_until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < load_until {
        for _ in 0..20 {
            let read = app.get(&path).session(&c.session).send().await;
            assert_eq!(read.status, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // htmx redraws every second: the charts fill with what the load did.
    // (Counted and drawn points are read in one go and retried together: a
    // redraw may replace the chart between two reads.)
    for chart in ["requests", "latency", "cache-hits"] {
        eventually(
            &format!("points counted and drawn on the {chart} chart"),
            Duration::from_secs(15),
            || async {
                let counted: usize = b
                    .attribute(&format!("#chart-{chart}"), "data-points")
                    .await?
                    .parse()
                    .ok()?;
                let drawn = b
                    .attribute(&format!("#chart-{chart} polyline"), "points")
                    .await?;
                (counted > 0 && !drawn.trim().is_empty()).then_some(())
            },
        )
        .await;
    }
    check(&b, "operations").await;
    b.close().await;

    // A coordinator: the 404 page, as for an address that does not exist.
    let coordinator = Browser::start(true, 1280).await;
    coordinator.goto(&format!("{}/sign-in", app.address)).await;
    coordinator.fill("f-email", &c.email).await;
    coordinator.fill("f-password", &c.password).await;
    coordinator.click("main form button[type=submit]").await;
    wait_for_text(&coordinator, "Dashboard").await;
    coordinator
        .goto(&format!("{}/operations", app.address))
        .await;
    wait_for_text(&coordinator, "no such page").await;
    assert!(!coordinator.text().await.contains("Requests per second"));
    coordinator.close().await;
    let answer = app.get("/operations").session(&c.session).send().await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

/// "Forgot your password?" from the sign-in page, the link from the real
/// email, a new password; then, signed in, a password change, a new email
/// confirmed from the link sent to it, and "sign out everywhere".
async fn an_account_is_kept_in_the_browser(tier: Tier) {
    let sink = SmtpSink::start().await;
    let app = app_with(Backing::new(tier).await, &sink).await;
    let c = app.verified_coordinator(&sink).await;
    let b = Browser::start(true, 1280).await;
    b.goto(&format!("{}/sign-in", app.address)).await;
    b.click("a[href='/forgot-password']").await;
    wait_for_text(&b, "Forgot your password?").await;
    check(&b, "forgot-password").await;
    b.fill("f-email", &c.email).await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "is on its way").await;

    let mail = eventually("the reset email", Duration::from_secs(20), || async {
        sink.messages().into_iter().find(|m| {
            m.subject
                .as_deref()
                .is_some_and(|s| s.starts_with("Reset your"))
        })
    })
    .await;
    let body = mail.body();
    let start = body.find("/reset-password#").expect("a reset link");
    let link: String = body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    b.goto(&format!("{}{link}", app.address)).await;
    wait_for_text(&b, "Choose a new password").await;
    check(&b, "reset-password").await;
    b.fill("f-password", "short").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "at least 10 characters").await;
    b.fill("f-password", "my new password 1").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Your password is changed. Sign in with it.").await;

    b.fill("f-email", &c.email).await;
    b.fill("f-password", "my new password 1").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Dashboard").await;
    let elsewhere = app
        .login(&c.email, "my new password 1")
        .await
        .session_token();

    b.goto(&format!("{}/profile", app.address)).await;
    b.fill("f-current_password", "not my password").await;
    b.fill("f-new_password", "my newer password 2").await;
    b.click("form[action='/profile/password'] button").await;
    wait_for_text(&b, "This is not your current password").await;
    check(&b, "profile-problem").await;
    b.fill("f-current_password", "my new password 1").await;
    b.fill("f-new_password", "my newer password 2").await;
    b.click("form[action='/profile/password'] button").await;
    wait_for_text(&b, "your other devices are signed out").await;
    let me = app.get("/api/v1/auth/me").session(&elsewhere).send().await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "the other device is out"
    );

    // A new email, confirmed from the link sent to it.
    let new_email = format!("new-{}", c.email);
    b.fill("f-new_email", &new_email).await;
    b.fill("f-email_password", "my newer password 2").await;
    b.click("form[action='/profile/email'] button").await;
    wait_for_text(&b, "A link to confirm your new email is on its way").await;
    check(&b, "profile").await;
    let mail = eventually(
        "the confirmation email",
        Duration::from_secs(20),
        || async {
            sink.messages().into_iter().find(|m| {
                m.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("Confirm your new email"))
            })
        },
    )
    .await;
    let body = mail.body();
    let start = body.find("/confirm-email#").expect("a confirmation link");
    let link: String = body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    b.goto(&format!("{}{link}", app.address)).await;
    wait_for_text(&b, "Confirm your new email").await;
    check(&b, "confirm-email").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Your email is changed. Sign in with the new one.").await;
    b.fill("f-email", &new_email).await;
    b.fill("f-password", "my newer password 2").await;
    b.click("main form button[type=submit]").await;
    wait_for_text(&b, "Dashboard").await;
    b.goto(&format!("{}/profile", app.address)).await;
    wait_for_text(&b, &new_email).await;

    let elsewhere = app
        .login(&new_email, "my newer password 2")
        .await
        .session_token();
    b.click("form[action='/profile/sign-out-everywhere'] button")
        .await;
    wait_for_text(&b, "You are signed out on every device.").await;
    let me = app.get("/api/v1/auth/me").session(&elsewhere).send().await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    b.goto(&format!("{}/home", app.address)).await;
    wait_for_text(&b, "Sign in").await;
    b.close().await;
}
