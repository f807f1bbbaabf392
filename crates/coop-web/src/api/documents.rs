//! `/api/v1/documents`: a co-op's files. Uploads are `multipart/form-data`
//! (the visibility fields first, then the `file` part) and are streamed to
//! the object store; downloads are streamed back with `Content-Disposition`,
//! an ETag (the content's SHA-256) and single-range `Range` support.

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::{DocumentName, DocumentType, Visibility, clock};
use coop_services::documents::Document as DocumentRow;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::path_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::http::range::{ByteRange, parse_range};
use crate::state::AppState;

/// Longest value of a text field of the upload form (ids and a word).
const MAX_FIELD_BYTES: usize = 1024;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentVisibility {
    /// Everyone in the co-op.
    Coop,
    /// The class's teacher and the families with a child enrolled in it.
    Class,
    /// That family (and the coordinators, who see every document).
    Family,
}

#[derive(Serialize, ToSchema)]
pub struct Document {
    pub document_id: Uuid,
    /// The file's name, made safe (no path, no quotes or control characters).
    pub name: String,
    /// The type found in the content itself.
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the content (the download's ETag).
    pub sha256: String,
    pub visibility: DocumentVisibility,
    /// With `visibility: class`.
    pub class_id: Option<Uuid>,
    /// With `visibility: family`.
    pub family_id: Option<Uuid>,
    /// Who uploaded it.
    pub owner_id: Uuid,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Where to download it.
    pub content_path: String,
    /// A small PNG of an image (PNG or JPEG), once made (shortly after the upload).
    pub thumbnail_path: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DocumentList {
    pub items: Vec<Document>,
}

/// The upload form. Send the visibility fields before the `file` part: the
/// upload is checked before its bytes are stored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// Who may see it.
    visibility: DocumentVisibility,
    /// The class, with `visibility=class`.
    class_id: Option<Uuid>,
    /// The family, with `visibility=family` (a family's own when omitted by one).
    family_id: Option<Uuid>,
    /// The file; its name becomes the document's name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Deserialize, ToSchema)]
pub struct Rename {
    /// The new name (1–200 characters; paths and quotes are removed).
    pub name: String,
}

pub fn view(row: DocumentRow) -> Document {
    let visibility = match row.visibility.as_str() {
        "class" => DocumentVisibility::Class,
        "family" => DocumentVisibility::Family,
        _ => DocumentVisibility::Coop,
    };
    Document {
        document_id: row.id,
        content_path: format!("/api/v1/documents/{}/content", row.id),
        thumbnail_path: row
            .thumbnail_key
            .as_ref()
            .map(|_| format!("/api/v1/documents/{}/thumbnail", row.id)),
        name: row.name,
        content_type: row.content_type,
        size_bytes: row.size_bytes,
        sha256: row.sha256,
        visibility,
        class_id: row.class_id,
        family_id: row.family_id,
        owner_id: row.owner_id,
        created_at: clock::from_unix_ms(row.created_at),
        updated_at: clock::from_unix_ms(row.updated_at),
    }
}

/// Upload a document (`multipart/form-data`): the type is taken from the
/// content (PDF, images, office documents, plain text), the size and the
/// co-op's quota are checked as the bytes arrive. Coordinators may address
/// anyone; a parent their own family or a class they teach.
/// `Idempotency-Key` is not accepted here (see 422).
#[utoipa::path(post, path = "/api/v1/documents", tag = "documents",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Document, description = "Stored; `Location` names it"),
              (status = 400, body = ErrorBody, description = "Not a readable multipart form"),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Not allowed to address that visibility"),
              (status = 413, body = ErrorBody, description = "Larger than the per-file limit, or past the co-op's quota (the message has the numbers)"),
              (status = 415, body = ErrorBody, description = "Not multipart/form-data"),
              (status = 422, body = ErrorBody, description = "Visibility fields missing or wrong, no `file` part, a type that is not allowed, an empty file, or an Idempotency-Key"),
              (status = 503, body = ErrorBody, description = "The file store is unavailable; retry after Retry-After")))]
pub async fn upload(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    if headers.contains_key(crate::http::idempotency::HEADER) {
        return Err(ApiError::Unprocessable {
            code: "idempotency_key_not_supported",
            message: "uploads take no Idempotency-Key (the body is too large to keep for a \
                      replay); send it without one. A failed upload stores nothing, and the \
                      list shows whether an interrupted one arrived"
                .into(),
        });
    }
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::UnsupportedMediaType(format!(
            "send the upload as multipart/form-data with a `file` part ({})",
            rejection.body_text()
        ))
    })?;
    let mut visibility: Option<String> = None;
    let mut class_id: Option<String> = None;
    let mut family_id: Option<String> = None;
    while let Some(field) = multipart.next_field().await.map_err(bad_form)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let visibility = Visibility::parse(
                    visibility.as_deref(),
                    class_id.as_deref(),
                    family_id.as_deref(),
                    ctx.caller.family_id,
                )?;
                let file_name = field.file_name().unwrap_or_default().to_owned();
                let body = field.map(|chunk| chunk.map_err(interrupted)).boxed();
                let row = state
                    .services
                    .documents
                    .upload(&ctx, visibility, &file_name, body)
                    .await?;
                let location = format!("/api/v1/documents/{}", row.id);
                return Ok((
                    StatusCode::CREATED,
                    [(header::LOCATION, location)],
                    ApiJson(view(row)),
                )
                    .into_response());
            }
            "visibility" => visibility = Some(text(field).await?),
            "class_id" => class_id = Some(text(field).await?),
            "family_id" => family_id = Some(text(field).await?),
            // Unknown fields are read and ignored (a form may carry more).
            _ => {
                text(field).await?;
            }
        }
    }
    Err(ApiError::field(
        "file",
        "attach the file as a part named `file` (after the visibility fields)",
    ))
}

/// A text field, bounded.
async fn text(mut field: Field<'_>) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FIELD_BYTES {
            return Err(ApiError::field(
                &name,
                format!("at most {MAX_FIELD_BYTES} bytes"),
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| ApiError::field(&name, "must be text (UTF-8)"))
}

fn bad_form(err: MultipartError) -> ApiError {
    ApiError::bad_request(
        "malformed_multipart",
        format!("the multipart form could not be read: {}", err.body_text()),
    )
}

fn interrupted(err: MultipartError) -> coop_services::Error {
    coop_services::Error::Unprocessable {
        code: "upload_interrupted",
        message: format!(
            "the file did not arrive whole ({}); nothing was stored, send it again",
            err.body_text()
        ),
    }
}

/// The documents you may see, newest first: coordinators see all; others
/// the co-op's, their family's, and those of classes they teach or have a
/// child enrolled in.
#[utoipa::path(get, path = "/api/v1/documents", tag = "documents",
    responses((status = 200, body = DocumentList), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Operators have no documents")))]
pub async fn list(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
) -> Result<ApiJson<DocumentList>, ApiError> {
    let rows = state.services.documents.list(&ctx).await?;
    Ok(ApiJson(DocumentList {
        items: rows.into_iter().map(view).collect(),
    }))
}

/// One document's details.
#[utoipa::path(get, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Document), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Operators have no documents"),
              (status = 404, body = ErrorBody, description = "No such document that you may see")))]
pub async fn get(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Document>, ApiError> {
    let id = path_id(&id, not_found)?;
    Ok(ApiJson(view(state.services.documents.get(&ctx, id).await?)))
}

/// Rename a document (its uploader and coordinators).
#[utoipa::path(patch, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path)),
    request_body = Rename,
    responses((status = 200, body = Document), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Neither its uploader nor a coordinator"),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "No usable name")))]
pub async fn rename(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Rename>,
) -> Result<ApiJson<Document>, ApiError> {
    let id = path_id(&id, not_found)?;
    let name =
        DocumentName::parse(&body.name).map_err(|problem| ApiError::field("name", problem))?;
    Ok(ApiJson(view(
        state.services.documents.rename(&ctx, id, &name).await?,
    )))
}

/// Delete a document (its uploader and coordinators): gone from lists at
/// once; its file is removed by a background job.
#[utoipa::path(delete, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Neither its uploader nor a coordinator"),
              (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, not_found)?;
    state.services.documents.delete(&ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The path of [`content`], as the OpenAPI document names it.
const CONTENT_PATH: &str = "/api/v1/documents/{id}/content";

/// Lists, in the OpenAPI document, every type a download can carry (the
/// allow-list of uploads, from the domain, so the two cannot drift) under
/// the file's 200 and 206: a download is served with its own type, which
/// the annotation alone can only call `application/octet-stream`.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    let Some(operation) = openapi
        .paths
        .paths
        .get_mut(CONTENT_PATH)
        .and_then(|item| item.get.as_mut())
    else {
        return;
    };
    for status in ["200", "206"] {
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status)
            && let Some(bytes) = response.content.get("application/octet-stream").cloned()
        {
            for media_type in DocumentType::served_media_types() {
                response
                    .content
                    .insert(media_type.to_string(), bytes.clone());
            }
        }
    }
}

/// Download a document, streamed. `Range: bytes=START-END` (one range)
/// answers 206; `If-None-Match` with its ETag answers 304.
#[utoipa::path(get, path = "/api/v1/documents/{id}/content", tag = "documents",
    params(("id" = Uuid, Path),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
           ("If-None-Match" = Option<String>, Header, description = "The ETag you have")),
    responses((status = 200, content_type = "application/octet-stream", description = "The whole file (its own Content-Type; Content-Disposition: attachment)"),
              (status = 206, content_type = "application/octet-stream", description = "The range asked for (Content-Range)"),
              (status = 304, description = "Unchanged since the ETag you have"),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Operators have no documents"),
              (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody, description = "Its file is missing from storage"),
              (status = 416, body = ErrorBody, description = "The range is outside the file (Content-Range: bytes */SIZE)"),
              (status = 503, body = ErrorBody, description = "The file store is unavailable; retry after Retry-After")))]
pub async fn content(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&id, not_found)?;
    let documents = &state.services.documents;
    let document = documents.get(&ctx, id).await?;
    let etag = format!("\"{}\"", document.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, CACHE.into())],
        )
            .into_response());
    }
    let size = document.size_bytes.max(0) as u64;
    // If-Range with another ETag: the client's part is stale, send it all.
    let range_applies = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(raw) if range_applies => match parse_range(raw, size) {
            ByteRange::Whole => None,
            ByteRange::Part(range) => Some(range),
            ByteRange::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
        },
        _ => None,
    };
    let read = documents.open(&document, range.clone()).await?;
    let kind = DocumentType::from_stored(&document.content_type);
    let mut response =
        Response::new(Body::from_stream(read.stream.map(|chunk| {
            chunk.map_err(|err| std::io::Error::other(err.to_string()))
        })));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(read.range.end - read.range.start),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&document.name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    if range.is_some()
        && let Ok(value) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{}",
            read.range.start,
            read.range.end.saturating_sub(1),
            read.size
        ))
    {
        h.insert(header::CONTENT_RANGE, value);
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

/// The thumbnail of an image document (PNG), once made.
#[utoipa::path(get, path = "/api/v1/documents/{id}/thumbnail", tag = "documents",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "image/png", description = "At most 256 pixels on its longer side"),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "Operators have no documents"),
              (status = 404, body = ErrorBody, description = "No such document, or no thumbnail (yet)"),
              (status = 410, body = ErrorBody, description = "Its file is missing from storage"),
              (status = 503, body = ErrorBody, description = "The file store is unavailable; retry after Retry-After")))]
pub async fn thumbnail(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, not_found)?;
    let read = state.services.documents.thumbnail(&ctx, id).await?;
    let body = Body::from_stream(
        read.stream
            .map(|chunk| chunk.map_err(|err| std::io::Error::other(err.to_string()))),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// Private (it is one person's to see), revalidated by ETag.
const CACHE: &str = "private, no-cache";

/// `attachment` with the name twice: a plain ASCII fallback, and the exact
/// name in UTF-8 (RFC 6266 / RFC 8187), which browsers prefer.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

fn not_found() -> ApiError {
    ApiError::NotFound("no document with that id that you can see in your co-op".into())
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn names_are_safe_in_the_header_and_exact_in_utf8() {
        assert_eq!(
            content_disposition("Handbook 2026.pdf"),
            "attachment; filename=\"Handbook 2026.pdf\"; filename*=UTF-8''Handbook%202026.pdf"
        );
        assert_eq!(
            content_disposition("Füße.txt"),
            "attachment; filename=\"F__e.txt\"; filename*=UTF-8''F%C3%BC%C3%9Fe.txt"
        );
    }
}
