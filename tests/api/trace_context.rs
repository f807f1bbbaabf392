//! W3C Trace Context at the HTTP edge: a client's `traceparent` is continued
//! (its trace id answered back and stored with the jobs the request queues),
//! a missing or invalid one starts a new trace.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_tiers;
use crate::support::{TestApp, Tier, spawn_app};

both_tiers!(
    a_clients_trace_id_is_answered_and_stored_with_the_jobs_it_queues,
    a_missing_or_invalid_traceparent_starts_a_new_trace,
);

/// Adds a family with these extra headers; the answer's headers and the
/// family's email.
async fn add_family(
    app: &TestApp,
    session: &str,
    headers: &[(&str, &str)],
) -> (crate::support::TestResponse, String) {
    let email = format!("{}@example.org", Uuid::new_v4().simple());
    let mut request = app
        .post(
            "/api/v1/families",
            &json!({"family_name": "The Tracers", "email": email}),
        )
        .session(session);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = request.send().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    (answer, email)
}

/// The trace ids stored with the co-op's welcome-email jobs.
async fn welcome_job_trace_ids(app: &TestApp, session: &str) -> Vec<Value> {
    let jobs = app
        .get("/api/v1/admin/jobs?kind=welcome_email")
        .session(session)
        .send()
        .await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
    jobs.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["trace_id"].clone())
        .collect()
}

async fn a_clients_trace_id_is_answered_and_stored_with_the_jobs_it_queues(tier: Tier) {
    let app = spawn_app(tier).await;
    let coordinator = app.coordinator().await;
    let trace_id = Uuid::new_v4().simple().to_string();
    let parent = "00f067aa0ba902b7";
    let (answer, _) = add_family(
        &app,
        &coordinator.session,
        &[("traceparent", &format!("00-{trace_id}-{parent}-01"))],
    )
    .await;
    // The same trace, with Coop's own span as the parent.
    let answered = answer.header("traceparent").expect("a traceparent answer");
    let fields: Vec<&str> = answered.split('-').collect();
    assert_eq!(fields.len(), 4, "{answered}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", trace_id.as_str(), "01")
    );
    assert_eq!(fields[2].len(), 16);
    assert_ne!(fields[2], parent);
    assert_eq!(answer.header("coop-trace-id"), Some(trace_id.as_str()));
    // The welcome email's job carries the trace id.
    assert_eq!(
        welcome_job_trace_ids(&app, &coordinator.session).await,
        vec![Value::String(trace_id)]
    );
}

async fn a_missing_or_invalid_traceparent_starts_a_new_trace(tier: Tier) {
    let app = spawn_app(tier).await;
    let coordinator = app.coordinator().await;
    let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let upper_case = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let mut started = Vec::new();
    for headers in [
        vec![],
        vec![("traceparent", zero_trace)],
        vec![("traceparent", upper_case)],
    ] {
        let (answer, _) = add_family(&app, &coordinator.session, &headers).await;
        let trace_id = answer
            .header("coop-trace-id")
            .expect("a trace id")
            .to_owned();
        assert_eq!(trace_id.len(), 32);
        assert!(
            trace_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(trace_id, "0".repeat(32));
        assert_ne!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let answered = answer.header("traceparent").unwrap();
        assert!(
            answered.starts_with(&format!("00-{trace_id}-")),
            "{answered}"
        );
        started.push(Value::String(trace_id));
    }
    // Three new traces, each stored with its own request's job.
    let mut stored = welcome_job_trace_ids(&app, &coordinator.session).await;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    stored.sort_by_key(text);
    started.sort_by_key(text);
    assert_eq!(stored, started);
    // Requests that queue nothing are answered with a trace too.
    let health = app.get("/health").send().await;
    assert!(health.header("traceparent").is_some());
}
