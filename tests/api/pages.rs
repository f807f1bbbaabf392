//! The web app's pages over plain HTTP (no browser): input a page cannot
//! read gets a page in plain words, never a framework's plain-text message.

use reqwest::StatusCode;

use crate::both_tiers;
use crate::support::{Tier, spawn_app};

both_tiers!(unreadable_input_gets_a_page_in_plain_words);

async fn unreadable_input_gets_a_page_in_plain_words(tier: Tier) {
    let app = spawn_app(tier).await;
    let form = app.get("/sign-in").send().await;
    let cookie = form
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("coop_csrf="))
        .and_then(|v| v.split(';').next())
        .expect("a CSRF cookie")
        .to_owned();
    let token = cookie.trim_start_matches("coop_csrf=").to_owned();
    assert!(form.text.contains(&token), "the form carries the token");

    /// What is wrong, the method, the path, and the body with its type.
    type Case<'a> = (&'a str, reqwest::Method, String, Option<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (
            "a field twice",
            reqwest::Method::POST,
            "/sign-in".into(),
            Some((
                "application/x-www-form-urlencoded",
                format!("csrf={token}&email=a%40b.org&email=c%40d.org&password=x"),
            )),
        ),
        (
            "a query parameter twice",
            reqwest::Method::GET,
            "/sign-in?next=%2Fhome&next=%2Fprofile".into(),
            None,
        ),
        (
            "JSON posted to a form",
            reqwest::Method::POST,
            "/sign-in".into(),
            Some(("application/json", format!("{{\"csrf\":\"{token}\"}}"))),
        ),
    ];
    for (what, method, path, body) in cases {
        let mut request = app
            .http
            .request(method, format!("{}{path}", app.address))
            .header("cookie", &cookie)
            .header("accept", "text/html");
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        assert!(
            status.is_client_error() && status != StatusCode::NOT_FOUND,
            "{what}: {status} {text}"
        );
        assert!(
            content_type.starts_with("text/html"),
            "{what}: {content_type}: {text}"
        );
        assert!(
            text.contains("Go back") || text.contains("try that again"),
            "{what}: a page that says what to do next: {text}"
        );
    }
}
