//! Static assets over HTTP: hashed names linked from the pages, immutable caching,
//! ETag and 304, precompressed brotli and gzip chosen by Accept-Encoding. The assets
//! are compiled into the binary and the same on both tiers, so one tier is enough.

use std::io::Read;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::support::{TestApp, Tier, spawn_app};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request with raw bytes back: the test client decodes no content coding, so
/// the body is exactly what the server sent.
async fn fetch(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = app.http.request(method, format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request reaches the app");
    Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("response body").to_vec(),
    }
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Fetched {
    fetch(app, Method::GET, path, headers).await
}

/// The `/static/…` URL a page links with `attribute="…"` whose name ends in `suffix`.
fn linked(html: &str, suffix: &str) -> String {
    html.split('"')
        .find(|part| part.starts_with("/static/") && part.ends_with(suffix))
        .unwrap_or_else(|| panic!("no /static/…{suffix} link in:\n{html}"))
        .to_owned()
}

/// `coop.3f2a9c1b7d0e.css` → `3f2a9c1b7d0e`.
fn hash_in(url: &str) -> &str {
    let name = url.rsplit('/').next().unwrap();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(parts.len(), 3, "{url} is stem.hash.ext");
    parts[1]
}

async fn stylesheet_url(app: &TestApp) -> String {
    let home = app.get("/").send().await;
    assert_eq!(home.status, StatusCode::OK);
    linked(&home.text, ".css")
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("a valid brotli stream");
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

#[tokio::test]
async fn pages_link_hashed_assets_served_immutable_with_a_matching_hash() {
    let app = spawn_app(Tier::Sqlite).await;
    let css = stylesheet_url(&app).await;
    let hash = hash_in(&css);
    assert_eq!(hash.len(), 12, "{css}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{css}");

    let invite = app.get("/accept-invite").send().await;
    assert_eq!(invite.status, StatusCode::OK);
    assert_eq!(
        linked(&invite.text, ".css"),
        css,
        "both pages use one stylesheet"
    );

    let served = get(&app, &css, &[]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(
        served.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(served.header("cache-control"), Some(IMMUTABLE));
    assert_eq!(served.header("vary"), Some("accept-encoding"));
    assert_eq!(served.header("content-encoding"), None);
    let etag = served.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    assert_eq!(
        served.header("content-length"),
        Some(served.body.len().to_string().as_str())
    );
    assert!(String::from_utf8_lossy(&served.body).contains("font-family"));
    assert!(
        sha256_hex(&served.body).starts_with(hash),
        "the name's hash is the content's SHA-256"
    );

    let icon_url = linked(&app.get("/").send().await.text, ".svg");
    let icon = get(&app, &icon_url, &[]).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert_eq!(icon.header("cache-control"), Some(IMMUTABLE));
    assert!(sha256_hex(&icon.body).starts_with(hash_in(&icon_url)));
}

#[tokio::test]
async fn if_none_match_with_the_etag_answers_304_without_a_body() {
    let app = spawn_app(Tier::Sqlite).await;
    let css = stylesheet_url(&app).await;
    let first = get(&app, &css, &[]).await;
    let etag = first.header("etag").unwrap().to_owned();

    let again = get(&app, &css, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("cache-control"), Some(IMMUTABLE));

    let listed = format!("\"something-else\", W/{etag}");
    let weak = get(&app, &css, &[("if-none-match", &listed)]).await;
    assert_eq!(
        weak.status,
        StatusCode::NOT_MODIFIED,
        "weak comparison, lists"
    );

    let other = get(&app, &css, &[("if-none-match", "\"not-this-one\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, first.body);

    // Each coding is its own representation with its own tag: a brotli copy is
    // revalidated by the brotli tag, and the identity tag does not vouch for it.
    let br = get(&app, &css, &[("accept-encoding", "br")]).await;
    let br_etag = br.header("etag").unwrap().to_owned();
    assert_ne!(br_etag, etag);
    let br_again = get(
        &app,
        &css,
        &[("accept-encoding", "br"), ("if-none-match", &br_etag)],
    )
    .await;
    assert_eq!(br_again.status, StatusCode::NOT_MODIFIED);
    assert!(br_again.body.is_empty());
    let mixed = get(
        &app,
        &css,
        &[("accept-encoding", "br"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(mixed.status, StatusCode::OK);
    assert_eq!(mixed.header("content-encoding"), Some("br"));
}

#[tokio::test]
async fn brotli_and_gzip_variants_decode_to_the_identity_body() {
    let app = spawn_app(Tier::Sqlite).await;
    let css = stylesheet_url(&app).await;
    let identity = get(&app, &css, &[]).await;
    assert_eq!(identity.header("content-encoding"), None);

    let br = get(&app, &css, &[("accept-encoding", "br")]).await;
    assert_eq!(br.status, StatusCode::OK);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(br.header("cache-control"), Some(IMMUTABLE));
    assert_eq!(br.header("vary"), Some("accept-encoding"));
    assert_eq!(
        br.header("content-length"),
        Some(br.body.len().to_string().as_str())
    );
    assert!(br.body.len() < identity.body.len());
    assert_eq!(unbrotli(&br.body), identity.body);

    let gzip = get(&app, &css, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gzip.status, StatusCode::OK);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gzip.header("content-length"),
        Some(gzip.body.len().to_string().as_str())
    );
    assert!(gzip.body.len() < identity.body.len());
    assert_eq!(gunzip(&gzip.body), identity.body);
    let etags = [
        identity.header("etag"),
        br.header("etag"),
        gzip.header("etag"),
    ];
    assert!(
        etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
        "{etags:?}"
    );

    let browser = get(
        &app,
        &css,
        &[("accept-encoding", "gzip, deflate, br, zstd")],
    )
    .await;
    assert_eq!(
        browser.header("content-encoding"),
        Some("br"),
        "br beats gzip"
    );
    let refused = get(&app, &css, &[("accept-encoding", "br;q=0, gzip")]).await;
    assert_eq!(refused.header("content-encoding"), Some("gzip"));
    assert_eq!(refused.body, gzip.body);
    let nothing = get(&app, &css, &[("accept-encoding", "identity")]).await;
    assert_eq!(nothing.header("content-encoding"), None);
    assert_eq!(nothing.body, identity.body);
}

#[tokio::test]
async fn head_gives_the_headers_of_get_and_no_body() {
    let app = spawn_app(Tier::Sqlite).await;
    let css = stylesheet_url(&app).await;
    for coding in ["identity", "br", "gzip"] {
        let got = get(&app, &css, &[("accept-encoding", coding)]).await;
        let head = fetch(&app, Method::HEAD, &css, &[("accept-encoding", coding)]).await;
        assert_eq!(head.status, StatusCode::OK, "{coding}");
        assert!(head.body.is_empty(), "{coding}");
        for name in [
            "content-type",
            "content-length",
            "content-encoding",
            "etag",
            "cache-control",
            "vary",
        ] {
            assert_eq!(head.header(name), got.header(name), "{coding}: {name}");
        }
        assert_eq!(
            head.header("content-length"),
            Some(got.body.len().to_string().as_str()),
            "{coding}"
        );
    }
}

#[tokio::test]
async fn unknown_assets_answer_the_api_json_404() {
    let app = spawn_app(Tier::Sqlite).await;
    for path in [
        "/static/nope.css",
        "/static/coop.js",
        "/static/coop.12345.css",
        "/static/",
        "/static/a/b.css",
    ] {
        let missing = app.get(path).send().await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            missing
                .header("content-type")
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        assert_eq!(missing.error_code(), "not_found", "{path}");
    }
    let post = app
        .post("/static/coop.css", &serde_json::json!({}))
        .send()
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.error_code(), "method_not_allowed");
}

#[tokio::test]
async fn logical_and_other_version_names_are_served_but_always_revalidated() {
    let app = spawn_app(Tier::Sqlite).await;
    let css = stylesheet_url(&app).await;
    let hashed = get(&app, &css, &[]).await;

    // The unhashed name: same bytes and tag, but a cache must ask every time.
    let logical = get(&app, "/static/coop.css", &[]).await;
    assert_eq!(logical.status, StatusCode::OK);
    assert_eq!(logical.header("cache-control"), Some("no-cache"));
    assert_eq!(logical.header("etag"), hashed.header("etag"));
    assert_eq!(logical.body, hashed.body);
    let etag = logical.header("etag").unwrap().to_owned();
    let revalidated = get(&app, "/static/coop.css", &[("if-none-match", &etag)]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);

    // A name another build hashed (a page from the other side of a rolling
    // restart): this build's file, never cached as if it were that version.
    let other_version = "/static/coop.0123456789ab.css";
    assert_ne!(other_version, css);
    let other = get(&app, other_version, &[("accept-encoding", "br")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("cache-control"), Some("no-cache"));
    assert_eq!(other.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&other.body), hashed.body);
}
