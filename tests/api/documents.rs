//! Documents (issue 17), through HTTP on both tiers: files under the data
//! folder on the embedded tier, a real S3 server (SeaweedFS, see
//! `support::seaweed`) on the distributed one. Upload, list, download with
//! ranges, rename, delete; what is refused and why; who sees what. The
//! full suite adds two instances sharing a bucket, a store outage, a 200 MB
//! upload in bounded memory and an instance killed mid-upload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::courses::{a_class, app_with, family_account, open_semester};
use crate::support::fakes::smtp_sink::SmtpSink;
use crate::support::seaweed::Seaweed;
use crate::support::{Backing, Endpoint, TestApp, TestResponse, Tier, eventually};

/// Where a test's documents are stored, to check what is (and is not) there.
pub(crate) enum Store {
    /// The embedded tier: `COOP_DATA_DIR/objects`.
    Local(PathBuf),
    S3 {
        weed: Seaweed,
        bucket: String,
    },
}

impl Store {
    /// For `backing`: the data folder's objects, or a fresh bucket on a
    /// SeaweedFS of the test's own; and the arguments that say so.
    pub(crate) async fn for_backing(backing: &Backing) -> (Self, Vec<String>) {
        match backing {
            Backing::Sqlite(dir) => (Self::Local(dir.path().join("objects")), Vec::new()),
            _ => {
                let weed = Seaweed::start().await;
                let bucket = weed.bucket().await;
                let args = weed.app_args(&bucket);
                (Self::S3 { weed, bucket }, args)
            }
        }
    }

    /// Every stored key, the local store's staging files included.
    pub(crate) async fn keys(&self) -> Vec<String> {
        match self {
            Self::Local(root) => {
                let mut keys = Vec::new();
                walk(root, root, &mut keys);
                keys.sort();
                keys
            }
            Self::S3 { weed, bucket } => {
                let mut keys = weed.keys(bucket).await;
                keys.sort();
                keys
            }
        }
    }

    /// The settings that point a process at this store, as environment
    /// variables (none for the local store: the data folder says it).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::Local(_) => Vec::new(),
            Self::S3 { weed, bucket } => weed.app_env(bucket),
        }
    }

    pub(crate) fn weed(&mut self) -> &mut Seaweed {
        match self {
            Self::S3 { weed, .. } => weed,
            Self::Local(_) => panic!("the embedded tier has no S3 server"),
        }
    }
}

fn walk(root: &Path, dir: &Path, keys: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, keys);
        } else {
            keys.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// An app on `tier` with its store, fast jobs and an SMTP sink.
async fn docs_app(tier: Tier, extra: &[&str]) -> (TestApp, Store, SmtpSink) {
    let sink = SmtpSink::start().await;
    let backing = Backing::new(tier).await;
    let (store, mut args) = Store::for_backing(&backing).await;
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = app_with(backing, &sink, &args).await;
    (app, store, sink)
}

/// `%PDF-1.7` and then `len` bytes that compress to nothing (seeded).
pub(crate) fn pdf(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    bytes.extend((0..len).map(|_| rng.r#gen::<u8>()));
    bytes
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// `POST /api/v1/documents` with `fields` (in order) and then the file.
pub(crate) async fn upload(
    app: &Endpoint,
    session: &str,
    fields: &[(&str, &str)],
    file_name: &str,
    bytes: Vec<u8>,
) -> TestResponse {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    send_form(app, session, form, &[]).await
}

/// Uploads `bytes` as a document the whole co-op sees, which must be stored
/// (201): the new document.
pub(crate) async fn share_with_coop(
    app: &Endpoint,
    session: &str,
    file_name: &str,
    bytes: Vec<u8>,
) -> Value {
    let made = upload(app, session, &[("visibility", "coop")], file_name, bytes).await;
    assert_eq!(
        made.status,
        StatusCode::CREATED,
        "{file_name}: {}",
        made.text
    );
    made.json()
}

async fn send_form(
    app: &Endpoint,
    session: &str,
    form: reqwest::multipart::Form,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut request = app
        .http
        .post(format!("{}/api/v1/documents", app.address))
        .header("cookie", format!("coop_session={session}"))
        .multipart(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the upload reaches the app");
    TestResponse {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("response body"),
    }
}

/// A GET whose body is bytes.
pub(crate) async fn get_bytes(
    app: &Endpoint,
    session: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = app
        .http
        .get(format!("{}{path}", app.address))
        .header("cookie", format!("coop_session={session}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the download reaches the app");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

async fn list(app: &Endpoint, session: &str) -> Vec<Value> {
    let listed = app.get("/api/v1/documents").session(session).send().await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.json()["items"].as_array().unwrap().clone()
}

fn names(items: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = items
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn upload_download_ranges_rename_and_delete(tier: Tier) {
    let (app, store, _sink) = docs_app(tier, &[]).await;
    let c = app.coordinator().await;

    // Larger than one part of the object store's multipart writes (5 MiB).
    let handbook = pdf(6 * 1024 * 1024 + 123, 1);
    let uploaded = upload(
        &app,
        &c.session,
        &[("visibility", "coop")],
        "Handbook 2026.pdf",
        handbook.clone(),
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.text);
    let doc = uploaded.json();
    let id = doc["document_id"].as_str().unwrap().to_owned();
    assert_eq!(
        uploaded.header("location"),
        Some(format!("/api/v1/documents/{id}").as_str())
    );
    assert_eq!(doc["name"], "Handbook 2026.pdf");
    assert_eq!(doc["content_type"], "application/pdf");
    assert_eq!(doc["size_bytes"], handbook.len() as i64);
    assert_eq!(doc["sha256"], sha256_hex(&handbook));
    assert_eq!(doc["visibility"], "coop");
    assert_eq!(doc["owner_id"], c.user_id.as_str());
    crate::support::assert_utc_time(&doc["created_at"], "created_at");
    let content = format!("/api/v1/documents/{id}/content");
    assert_eq!(doc["content_path"], content.as_str());

    let items = list(&app, &c.session).await;
    assert_eq!(names(&items), ["Handbook 2026.pdf"]);

    // The whole file, byte for byte, with the headers a download needs.
    let (status, headers, body) = get_bytes(&app, &c.session, &content, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == handbook, "the download differs from the upload");
    assert_eq!(header(&headers, "content-type"), "application/pdf");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(
        header(&headers, "content-length"),
        handbook.len().to_string()
    );
    let etag = header(&headers, "etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&handbook)));
    assert!(
        header(&headers, "content-disposition")
            .starts_with("attachment; filename=\"Handbook 2026.pdf\""),
        "{headers:?}"
    );

    // Ranges: a slice across the first part's end, the tail, past the end.
    let at = 5 * 1024 * 1024 - 50;
    let (status, headers, body) = get_bytes(
        &app,
        &c.session,
        &content,
        &[("range", &format!("bytes={at}-{}", at + 99))],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &handbook[at..at + 100]);
    assert_eq!(
        header(&headers, "content-range"),
        format!("bytes {at}-{}/{}", at + 99, handbook.len())
    );
    let (status, _, body) = get_bytes(&app, &c.session, &content, &[("range", "bytes=-10")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &handbook[handbook.len() - 10..]);
    let past = format!("bytes={}-", handbook.len());
    let (status, headers, body) = get_bytes(&app, &c.session, &content, &[("range", &past)]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&headers, "content-range"),
        format!("bytes */{}", handbook.len())
    );
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "range_not_satisfiable");
    // An If-Range for another version: the whole (current) file.
    let (status, _, body) = get_bytes(
        &app,
        &c.session,
        &content,
        &[("range", "bytes=0-9"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, handbook.len()));
    // Revalidation by ETag.
    let (status, _, body) =
        get_bytes(&app, &c.session, &content, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());

    // An image gets a thumbnail from a job, shown in the list.
    let photo = share_with_coop(&app, &c.session, "field trip.png", png(600, 400)).await;
    let photo_id = photo["document_id"].as_str().unwrap().to_owned();
    let thumbnail_path = eventually("the thumbnail", Duration::from_secs(20), || async {
        list(&app, &c.session)
            .await
            .into_iter()
            .find(|d| d["document_id"] == photo_id.as_str())
            .and_then(|d| d["thumbnail_path"].as_str().map(str::to_owned))
    })
    .await;
    let (status, headers, body) = get_bytes(&app, &c.session, &thumbnail_path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "image/png");
    let thumbnail = image::load_from_memory(&body).expect("the thumbnail is a PNG");
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 171));
    // The PDF has none.
    let none = app
        .get(&format!("/api/v1/documents/{id}/thumbnail"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);

    // Rename: the name, and the download's file name.
    let renamed = app
        .req(reqwest::Method::PATCH, &format!("/api/v1/documents/{id}"))
        .json(&json!({"name": "  Family handbook.pdf "}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.json()["name"], "Family handbook.pdf");
    let (_, headers, _) = get_bytes(&app, &c.session, &content, &[("range", "bytes=0-0")]).await;
    assert!(header(&headers, "content-disposition").contains("Family handbook.pdf"));
    let blank = app
        .req(reqwest::Method::PATCH, &format!("/api/v1/documents/{id}"))
        .json(&json!({"name": " / "}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(
        blank.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        blank.text
    );

    // Three objects: the two documents and the thumbnail, under the co-op.
    let keys = store.keys().await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("documents/{}/", c.coop_id))),
        "{keys:?}"
    );

    // Delete: gone from the list at once, the object by a job.
    let deleted = app
        .delete(&format!("/api/v1/documents/{id}"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(names(&list(&app, &c.session).await), ["field trip.png"]);
    let (status, _, _) = get_bytes(&app, &c.session, &content, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let again = app
        .delete(&format!("/api/v1/documents/{id}"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
    let deleted = app
        .delete(&format!("/api/v1/documents/{photo_id}"))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    eventually("the objects deleted", Duration::from_secs(20), || async {
        store.keys().await.is_empty().then_some(())
    })
    .await;
}

async fn uploads_are_checked_as_they_stream(tier: Tier) {
    let (app, store, _sink) = docs_app(
        tier,
        &[
            "--document-max-bytes",
            "1MiB",
            "--document-quota-bytes",
            "3MiB",
        ],
    )
    .await;
    let c = app.coordinator().await;
    let coop = [("visibility", "coop")];

    // The name is made safe; the client's type is not believed.
    let kept = share_with_coop(
        &app,
        &c.session,
        "C:\\Users\\ann\\..\\evil\"name.pdf",
        pdf(900 * 1024, 2),
    )
    .await;
    assert_eq!(kept["name"], "evil_name.pdf");
    let text = share_with_coop(&app, &c.session, "notes.pdf", "Bring lunch.\n".into()).await;
    assert_eq!(text["content_type"], "text/plain");

    // Types from the content: an executable called a PDF, HTML, nothing.
    let elf = [&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0][..], &[0; 64]].concat();
    let refused = upload(&app, &c.session, &coop, "handbook.pdf", elf).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.error_code(), "type_not_allowed");
    assert!(
        refused.text.contains("application/x-executable"),
        "{}",
        refused.text
    );
    let html = upload(
        &app,
        &c.session,
        &coop,
        "a.txt",
        b"<html><script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(html.error_code(), "type_not_allowed", "{}", html.text);
    let empty = upload(&app, &c.session, &coop, "empty.pdf", Vec::new()).await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );
    assert_eq!(empty.error_code(), "empty_file");

    // Past the per-file limit: 413 with the numbers.
    let big = upload(&app, &c.session, &coop, "big.pdf", pdf(1024 * 1024, 3)).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text);
    assert_eq!(big.error_code(), "file_too_large");
    assert!(
        big.text.contains("1.0 MiB") && big.text.contains("1048576"),
        "{}",
        big.text
    );

    // The quota: two more fit, the next does not.
    for seed in 4..6 {
        share_with_coop(&app, &c.session, "fits.pdf", pdf(900 * 1024, seed)).await;
    }
    let over = upload(&app, &c.session, &coop, "over.pdf", pdf(900 * 1024, 7)).await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", over.text);
    assert_eq!(over.error_code(), "quota_exceeded");
    assert!(over.text.contains("3.0 MiB"), "{}", over.text);

    // The form itself.
    let no_visibility = upload(&app, &c.session, &[], "a.pdf", pdf(10, 8)).await;
    assert_eq!(no_visibility.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        no_visibility.json()["error"]["fields"]["visibility"].is_string(),
        "{}",
        no_visibility.text
    );
    let no_class = upload(
        &app,
        &c.session,
        &[("visibility", "class")],
        "a.pdf",
        pdf(10, 8),
    )
    .await;
    assert!(
        no_class.json()["error"]["fields"]["class_id"].is_string(),
        "{}",
        no_class.text
    );
    let unknown_class = upload(
        &app,
        &c.session,
        &[
            ("visibility", "class"),
            ("class_id", &uuid::Uuid::new_v4().to_string()),
        ],
        "a.pdf",
        pdf(10, 8),
    )
    .await;
    assert_eq!(
        unknown_class.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown_class.text
    );
    let no_file = send_form(
        &app,
        &c.session,
        reqwest::multipart::Form::new().text("visibility", "coop"),
        &[],
    )
    .await;
    assert_eq!(
        no_file.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_file.text
    );
    assert!(no_file.json()["error"]["fields"]["file"].is_string());
    let json_body = app
        .post("/api/v1/documents", &json!({"file": "x"}))
        .session(&c.session)
        .send()
        .await;
    assert_eq!(
        json_body.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        json_body.text
    );
    let keyed = send_form(
        &app,
        &c.session,
        reqwest::multipart::Form::new()
            .text("visibility", "coop")
            .part(
                "file",
                reqwest::multipart::Part::bytes(pdf(10, 9)).file_name("a.pdf"),
            ),
        &[("idempotency-key", "upload-1")],
    )
    .await;
    assert_eq!(
        keyed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        keyed.text
    );
    assert_eq!(keyed.error_code(), "idempotency_key_not_supported");
    let anonymous = app.get("/api/v1/documents").send().await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Nothing refused left anything behind: four documents, four objects.
    assert_eq!(list(&app, &c.session).await.len(), 4);
    let keys = store.keys().await;
    assert_eq!(keys.len(), 4, "{keys:?}");
}

async fn who_sees_what_and_another_coop_sees_nothing(tier: Tier) {
    let (app, _store, sink) = docs_app(tier, &[]).await;
    let c = app.verified_coordinator(&sink).await;
    let pupils = family_account(&app, &sink, &c.session, "The Smiths").await;
    let teachers = family_account(&app, &sink, &c.session, "The Joneses").await;
    let teacher_me = app
        .get("/api/v1/auth/me")
        .session(&teachers.session)
        .send()
        .await;
    let teacher_user = teacher_me.json()["user_id"].as_str().unwrap().to_owned();
    let semester = app.semester(&c.session, &open_semester()).await;
    let mut class_body = a_class("Botany", 5, "tuesday", "10:00");
    class_body["teacher_user_id"] = json!(teacher_user);
    let class = app.class(&c.session, &semester, &class_body).await;
    let child = app
        .child(&pupils.session, &pupils.id, "Ann", "2016-05-01")
        .await;
    let enrolled = app.enroll(&pupils.session, &class, &child).await;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{}", enrolled.text);

    let put = |session: &str, fields: Vec<(&'static str, String)>, name: &'static str| {
        let session = session.to_owned();
        let app = &app;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            upload(app, &session, &fields, name, pdf(100, 10)).await
        }
    };
    let vis = |v: &str| ("visibility", v.to_owned());
    for (fields, name) in [
        (vec![vis("coop")], "everyone.pdf"),
        (
            vec![vis("class"), ("class_id", class.clone())],
            "botany.pdf",
        ),
        (
            vec![vis("family"), ("family_id", pupils.id.clone())],
            "smiths.pdf",
        ),
    ] {
        let made = put(&c.session, fields, name).await;
        assert_eq!(made.status, StatusCode::CREATED, "{name}: {}", made.text);
    }
    // A parent: their own family (the default), and the class they teach.
    let own = put(&teachers.session, vec![vis("family")], "joneses.pdf").await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text);
    assert_eq!(own.json()["family_id"], teachers.id.as_str());
    let joneses_doc = own.json()["document_id"].as_str().unwrap().to_owned();
    let taught = put(
        &teachers.session,
        vec![vis("class"), ("class_id", class.clone())],
        "leaves.pdf",
    )
    .await;
    assert_eq!(taught.status, StatusCode::CREATED, "{}", taught.text);
    // …but not the co-op, another family, or a class they do not teach.
    for (fields, what) in [
        (vec![vis("coop")], "the whole co-op"),
        (
            vec![vis("family"), ("family_id", teachers.id.clone())],
            "another family",
        ),
        (
            vec![vis("class"), ("class_id", class.clone())],
            "a class they do not teach",
        ),
    ] {
        let refused = put(&pupils.session, fields, "nope.pdf").await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            refused.text
        );
    }

    let all = list(&app, &c.session).await;
    assert_eq!(
        names(&all),
        [
            "botany.pdf",
            "everyone.pdf",
            "joneses.pdf",
            "leaves.pdf",
            "smiths.pdf"
        ]
    );
    let id_of = |name: &str| {
        all.iter().find(|d| d["name"] == name).unwrap()["document_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        names(&list(&app, &pupils.session).await),
        ["botany.pdf", "everyone.pdf", "leaves.pdf", "smiths.pdf"]
    );
    assert_eq!(
        names(&list(&app, &teachers.session).await),
        ["botany.pdf", "everyone.pdf", "joneses.pdf", "leaves.pdf"]
    );
    // Not addressed to them: not found, on every route.
    let hidden = format!("/api/v1/documents/{joneses_doc}");
    for path in [
        hidden.clone(),
        format!("{hidden}/content"),
        format!("{hidden}/thumbnail"),
    ] {
        let seen = app.get(&path).session(&pupils.session).send().await;
        assert_eq!(seen.status, StatusCode::NOT_FOUND, "{path}: {}", seen.text);
    }
    // Seeing is not owning: only the uploader and coordinators change it.
    let everyone = id_of("everyone.pdf");
    let not_theirs = app
        .delete(&format!("/api/v1/documents/{everyone}"))
        .session(&pupils.session)
        .send()
        .await;
    assert_eq!(
        not_theirs.status,
        StatusCode::FORBIDDEN,
        "{}",
        not_theirs.text
    );
    let renamed = app
        .req(reqwest::Method::PATCH, &hidden)
        .json(&json!({"name": "Joneses' forms.pdf"}))
        .session(&teachers.session)
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.json()["name"], "Joneses_ forms.pdf");

    // A dropped child's family no longer sees the class's documents.
    let botany = id_of("botany.pdf");
    let (status, _, _) = get_bytes(
        &app,
        &pupils.session,
        &format!("/api/v1/documents/{botany}/content"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let dropped = app
        .delete(&format!("/api/v1/classes/{class}/enrollments/{child}"))
        .session(&pupils.session)
        .send()
        .await;
    assert!(dropped.status.is_success(), "{}", dropped.text);
    assert_eq!(
        names(&list(&app, &pupils.session).await),
        ["everyone.pdf", "smiths.pdf"]
    );
    let (status, _, _) = get_bytes(
        &app,
        &pupils.session,
        &format!("/api/v1/documents/{botany}/content"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another co-op's coordinator: nothing of this co-op exists.
    let other = app.coordinator().await;
    assert!(list(&app, &other.session).await.is_empty());
    let theirs = format!("/api/v1/documents/{everyone}");
    for path in [
        theirs.clone(),
        format!("{theirs}/content"),
        format!("{theirs}/thumbnail"),
    ] {
        let seen = app.get(&path).session(&other.session).send().await;
        assert_eq!(seen.status, StatusCode::NOT_FOUND, "{path}: {}", seen.text);
    }
    let renamed = app
        .req(reqwest::Method::PATCH, &theirs)
        .json(&json!({"name": "mine.pdf"}))
        .session(&other.session)
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::NOT_FOUND, "{}", renamed.text);
    let deleted = app.delete(&theirs).session(&other.session).send().await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND, "{}", deleted.text);
    let class_of_theirs = upload(
        &app,
        &other.session,
        &[("visibility", "class"), ("class_id", &class)],
        "x.pdf",
        pdf(10, 11),
    )
    .await;
    assert_eq!(
        class_of_theirs.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        class_of_theirs.text
    );
    assert_eq!(list(&app, &c.session).await.len(), 5, "nothing was changed");
}

crate::both_tiers!(
    upload_download_ranges_rename_and_delete,
    uploads_are_checked_as_they_stream,
    who_sees_what_and_another_coop_sees_nothing,
);

#[cfg(feature = "full-suite")]
mod full {
    use super::*;
    use crate::support::{ProcessApp, spawn_app_on, spawn_process};

    /// Two instances on one PostgreSQL and one bucket: either serves what
    /// the other stored (no instance keeps a file).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_see_each_others_uploads() {
        let backing = Backing::new(Tier::Postgres).await;
        let (store, mut args) = Store::for_backing(&backing).await;
        // The instances work the queue themselves (the deletion's job).
        args.extend(["--run-jobs", "on", "--job-poll", "50ms"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let one = spawn_app_on(backing.clone(), &args).await;
        let two = spawn_app_on(backing.clone(), &args).await;
        let c = one.coordinator().await;
        let bytes = pdf(2 * 1024 * 1024, 20);
        let made = share_with_coop(&one, &c.session, "shared.pdf", bytes.clone()).await;
        let id = made["document_id"].as_str().unwrap().to_owned();
        let (status, _, body) = get_bytes(
            &two,
            &c.session,
            &format!("/api/v1/documents/{id}/content"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == bytes, "instance two served other bytes");
        let deleted = two
            .delete(&format!("/api/v1/documents/{id}"))
            .session(&c.session)
            .send()
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
        assert!(list(&one, &c.session).await.is_empty());
        eventually("the object deleted", Duration::from_secs(30), || async {
            store.keys().await.is_empty().then_some(())
        })
        .await;
    }

    /// The store stopped: uploads and downloads answer 503 with
    /// Retry-After at once, everything else works; when it returns, so do
    /// documents.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_store_answers_503_and_documents_work_again_when_it_returns() {
        let backing = Backing::new(Tier::Postgres).await;
        let (mut store, mut args) = Store::for_backing(&backing).await;
        args.extend(["--breaker-open-for", "1s"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let app = spawn_app_on(backing.clone(), &args).await;
        let c = app.coordinator().await;
        let bytes = pdf(64 * 1024, 21);
        let made = share_with_coop(&app, &c.session, "before.pdf", bytes.clone()).await;
        let content = format!(
            "/api/v1/documents/{}/content",
            made["document_id"].as_str().unwrap()
        );

        store.weed().kill();
        for _ in 0..3 {
            let refused = upload(
                &app,
                &c.session,
                &[("visibility", "coop")],
                "during.pdf",
                bytes.clone(),
            )
            .await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                refused.text
            );
            assert_eq!(refused.header("retry-after"), Some("1"));
            assert_eq!(refused.error_code(), "service_unavailable");
            assert!(refused.text.contains("file store"), "{}", refused.text);
            let (status, headers, _) = get_bytes(&app, &c.session, &content, &[]).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(header(&headers, "retry-after"), "1");
        }
        // Nothing else broke: the list (rows), families, readiness.
        assert_eq!(names(&list(&app, &c.session).await), ["before.pdf"]);
        let families = app.get("/api/v1/families").session(&c.session).send().await;
        assert_eq!(families.status, StatusCode::OK, "{}", families.text);

        store.weed().restart().await;
        eventually("uploads to work again", Duration::from_secs(30), || async {
            let again = upload(
                &app,
                &c.session,
                &[("visibility", "coop")],
                "after.pdf",
                bytes.clone(),
            )
            .await;
            (again.status == StatusCode::CREATED).then_some(())
        })
        .await;
        // What was stored before the outage is served again (once the
        // server has loaded its volumes back).
        let body = eventually(
            "downloads to work again",
            Duration::from_secs(30),
            || async {
                let (status, _, body) = get_bytes(&app, &c.session, &content, &[]).await;
                (status == StatusCode::OK).then_some(body)
            },
        )
        .await;
        assert!(body == bytes, "the document came back different");
    }

    fn rss_kib(pid: u32, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// `len` bytes of a PDF generated as they are sent (never in memory
    /// whole), and their SHA-256.
    fn generated_pdf(len: u64) -> (reqwest::Body, String) {
        const CHUNK: usize = 256 * 1024;
        let mut hasher = Sha256::new();
        let header = b"%PDF-1.7\n".to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut chunks = vec![header];
        let mut left = len - 9;
        // The hash is computed by generating the same stream once first.
        let mut check_rng = rand::rngs::StdRng::seed_from_u64(42);
        hasher.update(b"%PDF-1.7\n");
        let mut check_left = left;
        let mut buf = vec![0u8; CHUNK];
        while check_left > 0 {
            let n = (check_left as usize).min(CHUNK);
            check_rng.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            check_left -= n as u64;
        }
        let stream = futures::stream::poll_fn(move |_| {
            if let Some(first) = chunks.pop() {
                return std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(first)));
            }
            if left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = (left as usize).min(CHUNK);
            let mut chunk = vec![0u8; n];
            rng.fill(&mut chunk[..]);
            left -= n as u64;
            std::task::Poll::Ready(Some(Ok(chunk)))
        });
        (
            reqwest::Body::wrap_stream(stream),
            format!("{:x}", hasher.finalize()),
        )
    }

    async fn login_on(app: &ProcessApp) -> crate::support::Coordinator {
        app.coordinator().await
    }

    /// 200 MB through one instance: its peak RSS grows by less than 32 MiB,
    /// and the bytes come back whole. On both stores.
    async fn a_200_mb_upload_in_bounded_memory(tier: Tier) {
        const SIZE: u64 = 200 * 1000 * 1000;
        let backing = Backing::new(tier).await;
        let (store, _) = Store::for_backing(&backing).await;
        let mut env: Vec<(String, String)> = vec![
            ("COOP_DOCUMENT_MAX_BYTES".into(), "300MB".into()),
            ("COOP_DOCUMENT_QUOTA_BYTES".into(), "1GB".into()),
        ];
        env.extend(store.env());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = spawn_process(backing, &env).await;
        let c = login_on(&app).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let pid = app.pid();
        // One 200 MB upload, streamed from a generator; its document and
        // how much the instance's peak RSS grew during it (the peak is
        // reset first: Linux's `5` into clear_refs).
        let big = |name: &'static str| {
            let http = http.clone();
            let address = app.address.clone();
            let session = c.session.clone();
            async move {
                std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
                    .expect("reset the peak RSS of coop serve");
                let baseline = rss_kib(pid, "VmHWM:");
                let (body, sha256) = generated_pdf(SIZE);
                let form = reqwest::multipart::Form::new()
                    .text("visibility", "coop")
                    .part(
                        "file",
                        reqwest::multipart::Part::stream_with_length(body, SIZE).file_name(name),
                    );
                let made = http
                    .post(format!("{address}/api/v1/documents"))
                    .header("cookie", format!("coop_session={session}"))
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(made.status(), StatusCode::CREATED);
                let doc: Value = made.json().await.unwrap();
                assert_eq!(doc["size_bytes"], SIZE);
                assert_eq!(doc["sha256"], sha256.as_str());
                let peak = rss_kib(pid, "VmHWM:");
                let grew_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
                println!(
                    "{tier:?}: {name}: RSS {} MiB before, peak {} MiB (+{grew_mib:.1} MiB)",
                    baseline / 1024,
                    peak / 1024
                );
                (doc, sha256, grew_mib)
            }
        };
        // Less than 32 MiB each (the bound), the first after start
        // too, which also grows the allocator's and runtime's pools
        // (measured: +13 to +21 MiB for the first, +2 to +15 for the second).
        let (_, _, first) = big("first.pdf").await;
        assert!(
            first < 32.0,
            "peak RSS grew by {first:.1} MiB during the first 200 MB upload"
        );
        let (doc, sha256, grew_mib) = big("second.pdf").await;
        assert!(
            grew_mib < 32.0,
            "peak RSS grew by {grew_mib:.1} MiB during a 200 MB upload"
        );

        // And back, streamed, hashed as it comes: the download's own peak
        // is measured the same way.
        std::fs::write(format!("/proc/{}/clear_refs", app.pid()), "5")
            .expect("reset the peak RSS of coop serve");
        let baseline = rss_kib(app.pid(), "VmHWM:");
        let mut response = http
            .get(format!(
                "{}{}",
                app.address,
                doc["content_path"].as_str().unwrap()
            ))
            .header("cookie", format!("coop_session={}", c.session))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        while let Some(chunk) = response.chunk().await.unwrap() {
            received += chunk.len() as u64;
            hasher.update(&chunk);
        }
        assert_eq!(received, SIZE);
        assert_eq!(format!("{:x}", hasher.finalize()), sha256);
        let peak = rss_kib(app.pid(), "VmHWM:");
        let grew_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
        println!("{tier:?}: peak RSS +{grew_mib:.1} MiB during the download");
        assert!(
            grew_mib < 32.0,
            "peak RSS grew by {grew_mib:.1} MiB during the download"
        );
    }

    crate::both_tiers!(a_200_mb_upload_in_bounded_memory);

    /// An instance SIGKILLed mid-upload: no document appears, and the
    /// upload's sweep (queued before its first byte) removes what it had
    /// written once the upload could no longer be running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_killed_mid_upload_leaves_no_document_and_the_sweep_cleans_up() {
        let backing = Backing::new(Tier::Sqlite).await;
        let (store, _) = Store::for_backing(&backing).await;
        let env = [
            ("COOP_UPLOAD_TIMEOUT", "2s"),
            ("COOP_DOCUMENT_SWEEP_AFTER", "3s"),
            ("COOP_JOB_POLL", "100ms"),
        ];
        let mut app = spawn_process(backing.clone(), &env).await;
        let c = app.coordinator().await;

        // 12 MiB of a PDF, then the client stalls: the instance has written
        // two parts to its staging file when it dies.
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
        let first = pdf(12 * 1024 * 1024, 40);
        tx.unbounded_send(Ok(first)).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("visibility", "coop")
            .part(
                "file",
                reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(rx))
                    .file_name("cut.pdf"),
            );
        let address = app.address.clone();
        let session = c.session.clone();
        let pending = tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{address}/api/v1/documents"))
                .header("cookie", format!("coop_session={session}"))
                .multipart(form)
                .send()
                .await
        });
        eventually(
            "the upload's bytes on disk",
            Duration::from_secs(20),
            || async {
                let keys = store.keys().await;
                (!keys.is_empty()).then_some(keys)
            },
        )
        .await;
        app.kill();
        assert!(
            pending.await.unwrap().is_err(),
            "the killed instance answered"
        );
        drop(tx);

        let app = spawn_process(backing, &env).await;
        assert!(
            list(&app, &c.session).await.is_empty(),
            "a half-written document is visible"
        );
        eventually(
            "the sweep to remove the upload's leftovers",
            Duration::from_secs(30),
            || async { store.keys().await.is_empty().then_some(()) },
        )
        .await;
        // The sweep counts itself once it has removed them: a moment later.
        eventually("the sweep counted", Duration::from_secs(10), || async {
            let sweeps = app.metric("document_sweeps_total", &[]).await;
            (sweeps > 0.0).then_some(())
        })
        .await;
        assert_eq!(
            app.metric("document_sweeps_total", &[]).await,
            1.0,
            "one sweep ran"
        );
    }
}
