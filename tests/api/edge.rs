//! The HTTP edge under abuse: what a client who never logs in can make the
//! server keep (metrics series), hold open (connections), or read (`/metrics`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_tiers;
use crate::support::{
    Backing, Endpoint, METRICS_TOKEN, Tier, spawn_app_as_configured, spawn_app_on, spawn_process,
};

both_tiers!(
    invented_methods_and_paths_do_not_become_metric_series,
    a_connection_trickling_its_headers_is_closed,
    an_idle_keep_alive_connection_is_closed,
    connections_past_the_cap_wait_for_a_free_slot,
    a_burst_of_connections_waits_in_the_backlog_not_in_syn_retries,
    a_parked_keep_alive_connection_serves_its_next_requests,
    metrics_are_served_only_where_the_operator_asks,
    every_answer_carries_security_headers,
);

/// Issue 15, finding 9: not only pages carry security headers. A JSON
/// answer (an error too), a feed or an asset gets the strictest policy; a
/// page keeps its own; nothing may be framed.
async fn every_answer_carries_security_headers(tier: Tier) {
    let app = crate::support::spawn_app(tier).await;
    for path in [
        "/health",
        "/api/v1/auth/me",
        "/api/v1/nothing-here",
        "/",
        "/docs/",
    ] {
        let response = app.get(path).send().await;
        let header = |name: &str| response.header(name).unwrap_or_default().to_owned();
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        if path.starts_with("/api/") || path == "/health" {
            assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
        }
    }
}

/// Issue 15, finding 1: a request's method used to become a label as sent, so
/// a few requests with invented 300 KB methods grew `/metrics` by megabytes.
/// A process of its own, so no other test's requests share its registry.
async fn invented_methods_and_paths_do_not_become_metric_series(tier: Tier) {
    let app = spawn_process(Backing::new(tier).await, &[]).await;
    let before = app.metrics().await.len();
    for i in 0..5 {
        let invented = format!("{}{i}", "X".repeat(20_000));
        let method = Method::from_bytes(invented.as_bytes()).unwrap();
        let answer = app.req(method, "/api/v1/coops").send().await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            answer.text
        );
        let unknown = format!("/api/v1/{}-{i}", "nothing".repeat(100));
        assert_eq!(app.get(&unknown).send().await.status, StatusCode::NOT_FOUND);
    }
    let text = app.metrics().await;
    assert!(!text.contains("XXXX"), "an invented method became a label");
    assert!(
        !text.contains("nothingnothing"),
        "a raw path became a label"
    );
    assert!(
        text.contains(
            r#"http_requests_total{method="other",route="/api/v1/coops",status="405"} 5"#
        ),
        "invented methods are counted as `other`:\n{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"} 5"#),
        "unknown paths are counted as `unmatched`:\n{text}"
    );
    assert!(
        text.len() < before + 20_000,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

async fn connect(app: &Endpoint) -> TcpStream {
    let address = app.address.strip_prefix("http://").unwrap();
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection (or `within` passes): how long
/// that took, or None if it stayed open.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one response with a Content-Length body; returns its head.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map_or(0, |v| v.parse().unwrap());
            if data.len() >= end + 4 + length {
                return head.to_owned();
            }
        }
    }
}

/// Reads `count` responses with Content-Length bodies (which may arrive in
/// one read); returns their heads.
async fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<String> {
    let mut data = Vec::new();
    let mut heads = Vec::new();
    let mut buf = [0u8; 4096];
    while heads.len() < count {
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map_or(0, |v| v.parse().unwrap());
            if data.len() >= end + 4 + length {
                data.drain(..end + 4 + length);
                heads.push(head);
                continue;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed after {} responses", heads.len());
        data.extend_from_slice(&buf[..n]);
    }
    heads
}

/// Issue 15, finding 7: a client sending its headers a byte at a time was
/// served after 65 s; now the head must be complete within
/// COOP_HEADER_READ_TIMEOUT however steadily the bytes come.
async fn a_connection_trickling_its_headers_is_closed(tier: Tier) {
    let app = spawn_app_on(
        Backing::new(tier).await,
        &["--header-read-timeout", "1s", "--idle-timeout", "30s"],
    )
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header byte every 100 ms: the connection is never silent.
    for byte in b"X-Slow: ".iter().cycle().take(100) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(100))
            .await
            .is_some()
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a trickling connection was still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    // A prompt client on a new connection is still served.
    assert_eq!(app.get("/health").send().await.status, StatusCode::OK);
}

/// Issue 15, finding 7: an idle keep-alive connection stayed open past 80 s;
/// now COOP_IDLE_TIMEOUT closes it, and not before (it is not the header
/// timeout in disguise).
async fn an_idle_keep_alive_connection_is_closed(tier: Tier) {
    let app = spawn_app_on(
        Backing::new(tier).await,
        &["--header-read-timeout", "1s", "--idle-timeout", "3s"],
    )
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let idle = closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("the idle connection was still open after 10 s");
    assert!(
        idle >= Duration::from_secs(2),
        "closed after {idle:?}: sooner than COOP_IDLE_TIMEOUT (3 s)"
    );
    // A connection in use is not idle: requests 1 s apart keep it open.
    let mut stream = connect(&app).await;
    for _ in 0..5 {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
}

/// Past COOP_MAX_CONNECTIONS a new connection waits (in the backlog) until
/// one closes, instead of costing the server another task and buffers.
async fn connections_past_the_cap_wait_for_a_free_slot(tier: Tier) {
    let app = spawn_app_on(
        Backing::new(tier).await,
        &["--max-connections", "2", "--header-read-timeout", "30s"],
    )
    .await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served with two open and a cap of two"
    );
    drop(first);
    let head = read_response(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// Issue 19: a keep-alive connection quiet for a moment gives hyper's
/// buffers back (it is parked) and gets them again with its next request.
/// Whatever arrives after a pause (a request in pieces, two requests in one
/// packet) must be served on the same connection, never with
/// `Connection: close`.
async fn a_parked_keep_alive_connection_serves_its_next_requests(tier: Tier) {
    let app = crate::support::spawn_app(tier).await;
    let mut stream = connect(&app).await;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut heads = Vec::new();
    stream.write_all(request).await.unwrap();
    heads.push(read_response(&mut stream).await);
    // Longer than the quiet time before parking (25 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(request).await.unwrap();
    heads.push(read_response(&mut stream).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A request in two pieces, the second after the parking delay.
    stream.write_all(&request[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&request[10..]).await.unwrap();
    heads.push(read_response(&mut stream).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two requests in one write (pipelined): two answers, in order.
    let mut two = request.to_vec();
    two.extend_from_slice(b"GET /api/v1/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(&two).await.unwrap();
    let both = read_responses(&mut stream, 2).await;
    heads.push(both[0].clone());
    let last = both[1].clone();
    assert!(last.starts_with("HTTP/1.1 404"), "{last}");
    for head in &heads {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    for head in heads.iter().chain([&last]) {
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
    // Still open, and still serving.
    stream.write_all(request).await.unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// Issue 19: tokio's `TcpListener::bind` listens with a backlog of 1,024, so
/// 10,000 users connecting at once had SYNs dropped and retried after 1 s.
/// With the server taking no connection (its one slot is held), every
/// connection the kernel completes waits in the accept queue: all 2,000 of a
/// burst must be completed, which a backlog of 1,024 cannot do (the rest
/// would hang in SYN retries until the timeout).
async fn a_burst_of_connections_waits_in_the_backlog_not_in_syn_retries(tier: Tier) {
    const BURST: usize = 2000;
    let app = spawn_app_on(
        Backing::new(tier).await,
        &["--max-connections", "1", "--header-read-timeout", "60s"],
    )
    .await;
    // The one slot, taken by a connection that has been served.
    let mut first = connect(&app).await;
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_response(&mut first).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let address = app.address.strip_prefix("http://").unwrap().to_owned();
    let attempts = (0..BURST).map(|_| {
        let address = address.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await
        })
    });
    let mut held = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        if let Ok(Ok(stream)) = attempt.await.unwrap() {
            held.push(stream);
        }
    }
    // The kernel keeps backlog + 1 completed connections; it caps the backlog
    // at net.core.somaxconn (4,096 by default since Linux 5.4).
    let backlog = coop_web::http::listener::effective_backlog(
        coop_web::http::listener::DEFAULT_BACKLOG,
        coop_web::http::listener::somaxconn(),
    ) as usize;
    let expected = BURST.min(backlog + 1);
    assert!(
        held.len() >= expected,
        "{} of {BURST} connections completed; the backlog should hold {expected} (net.core.somaxconn: {:?})",
        held.len(),
        coop_web::http::listener::somaxconn()
    );
    drop(held);
    drop(first);
}

/// Issue 15, finding 8: `/metrics` was public. Now it is served on the main
/// listener only with COOP_METRICS_TOKEN as a bearer token, on
/// COOP_METRICS_LISTEN (asking for the token if one is set), and answers 404
/// everywhere else, like a path that does not exist.
async fn metrics_are_served_only_where_the_operator_asks(tier: Tier) {
    let backing = Backing::new(tier).await;
    let bearer = format!("Bearer {METRICS_TOKEN}");

    // Neither setting: nobody reads them.
    let closed = spawn_app_as_configured(backing.clone(), &[]).await;
    assert!(closed.metrics_listener.is_none());
    for authorization in [None, Some(bearer.as_str())] {
        let mut request = closed.get("/metrics");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = request.send().await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        assert_eq!(answer.error_code(), "not_found");
    }
    closed.stop().await;

    // A token: the main listener serves a scraper that presents it, only.
    let with_token = spawn_app_on(backing.clone(), &[]).await;
    assert!(with_token.metrics().await.contains("http_requests_total"));
    for wrong in ["", "Bearer not-the-token-0123456789", "Basic dGVzdA=="] {
        let mut request = with_token.get("/metrics");
        if !wrong.is_empty() {
            request = request.header("authorization", wrong);
        }
        let answer = request.send().await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{wrong:?}: {}",
            answer.text
        );
        assert!(!answer.text.contains("http_requests_total"));
    }
    with_token.stop().await;

    // A separate listener: open there, 404 on the main one.
    let private = spawn_app_on(backing.clone(), &["--metrics-listen", "127.0.0.1:0"]).await;
    let listener = private
        .metrics_listener
        .as_ref()
        .expect("a metrics listener");
    let scraped = listener.get("/metrics").send().await;
    assert_eq!(scraped.status, StatusCode::OK, "{}", scraped.text);
    assert!(scraped.text.contains("http_requests_total"));
    assert_eq!(
        listener.get("/api/v1/auth/me").send().await.status,
        StatusCode::NOT_FOUND
    );
    let main = private.get("/metrics").send().await;
    assert_eq!(main.status, StatusCode::NOT_FOUND, "{}", main.text);
    private.stop().await;

    // Both: the listener asks for the token too.
    let both = spawn_app_on(
        backing,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-token",
            METRICS_TOKEN,
        ],
    )
    .await;
    let listener = both.metrics_listener.as_ref().expect("a metrics listener");
    let refused = listener.get("/metrics").send().await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.error_code(), "unauthenticated");
    assert!(listener.metrics().await.contains("http_requests_total"));
    assert!(both.metrics().await.contains("http_requests_total"));
}
