//! Documents: files a co-op shares (the handbook, class materials, forms a
//! family hands in), each visible to the whole co-op, one class or one
//! family (see `coop_domain::Visibility`; coordinators see all).
//!
//! Never half-written: an upload first queues its own sweep job (due after
//! COOP_DOCUMENT_SWEEP_AFTER), then streams the bytes to a new key in the
//! object store, and only then commits the row. An instance that dies in
//! between leaves an object no row names; the sweep removes it. Deleting
//! removes the row at once and queues the job that deletes the object.
//!
//! Bounded: the bytes pass through in chunks (the object store writes parts
//! of a few MiB), the size and the co-op's quota are checked as they come,
//! and the quota once more in the transaction that inserts the row, so
//! concurrent uploads cannot pass it together.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use coop_domain::{DocumentName, DocumentType, Role, SNIFF_BYTES, Visibility};
use coop_mechanisms::data::Data;
use coop_mechanisms::objects::{ObjectError, ObjectRead, Objects, Upload};
use coop_mechanisms::store::documents::{self, DocumentRow, Inserted, Viewer};
use coop_mechanisms::store::jobs::now_ms;
use coop_mechanisms::store::{courses, families};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::document_settings::DocumentSettings;
use crate::{Ctx, Error, Result, jobs};

pub type Document = DocumentRow;

/// Most documents one list returns.
pub const MAX_LIST: u32 = 1000;

#[derive(Clone)]
pub struct Documents {
    data: Data,
    objects: Objects,
    settings: DocumentSettings,
    job_max_attempts: u32,
}

/// Where a document's bytes are: under its co-op, so a co-op's objects can
/// be found (and removed) together.
pub fn object_key(coop_id: Uuid, id: Uuid) -> String {
    format!("documents/{coop_id}/{id}")
}

pub fn thumbnail_key(coop_id: Uuid, id: Uuid) -> String {
    format!("documents/{coop_id}/{id}.thumbnail.png")
}

impl Documents {
    pub(crate) fn new(
        data: Data,
        objects: Objects,
        settings: DocumentSettings,
        job_max_attempts: u32,
    ) -> Self {
        Self {
            data,
            objects,
            settings,
            job_max_attempts,
        }
    }

    /// How long an upload may take (the HTTP layer's bound for uploads).
    pub fn upload_timeout(&self) -> Duration {
        self.settings.upload_timeout
    }

    /// Stores `body` as a new document named after `file_name`, visible as
    /// `visibility`. `body` is read as it comes; memory stays bounded.
    pub async fn upload<S>(
        &self,
        ctx: &Ctx,
        visibility: Visibility,
        file_name: &str,
        body: S,
    ) -> Result<Document>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        self.may_upload(ctx, visibility).await?;
        let coop_id = ctx.coop_id();
        let primary = self.data.primary();
        let limits = Limits {
            max_bytes: self.settings.max_bytes,
            quota_bytes: self.settings.quota_bytes,
            used: documents::used_bytes(primary, coop_id).await?.max(0) as u64,
        };
        if limits.used >= limits.quota_bytes {
            return Err(limits.quota_error(0));
        }
        let id = Uuid::now_v7();
        let key = object_key(coop_id, id);
        // Committed before the first byte is stored: whatever happens to
        // this instance from here on, the sweep will look at this key.
        let sweep_at = now_ms().saturating_add(self.settings.sweep_after().as_millis() as i64);
        let sweep = jobs::sweep_upload_job(
            coop_id,
            id,
            vec![key.clone(), thumbnail_key(coop_id, id)],
            sweep_at,
            self.job_max_attempts,
        );
        documents::enqueue(primary, &sweep).await?;

        let (kind, size, sha256) = self.store(&key, body, &limits).await?;
        let now = now_ms();
        let row = DocumentRow {
            id,
            coop_id,
            owner_id: ctx.caller.user_id,
            visibility: visibility.as_str().into(),
            class_id: visibility.class_id(),
            family_id: visibility.family_id(),
            name: DocumentName::sanitize(file_name).into_inner(),
            content_type: kind.mime.into(),
            size_bytes: size as i64,
            sha256,
            object_key: key.clone(),
            thumbnail_key: None,
            created_at: now,
            updated_at: now,
        };
        let then: Vec<_> = thumbnailable(kind)
            .then(|| jobs::thumbnail_job(coop_id, id, self.job_max_attempts))
            .into_iter()
            .collect();
        let quota = i64::try_from(limits.quota_bytes).unwrap_or(i64::MAX);
        let inserted = documents::insert(primary, &row, quota, &then).await;
        match inserted {
            Ok(Inserted::Done) => {}
            Ok(Inserted::OverQuota { used }) => {
                self.discard_now(&key).await;
                let limits = Limits {
                    used: used.max(0) as u64,
                    ..limits
                };
                return Err(limits.quota_error(size));
            }
            Err(err) => {
                // The row is not there; the sweep would remove the object
                // later, but it can go now.
                self.discard_now(&key).await;
                return Err(err.into());
            }
        }
        metrics::counter!("documents_uploaded_total").increment(1);
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(row)
    }

    /// Streams `body` to `key`: its type from the first bytes, its size
    /// and hash as it passes. Any failure aborts the object.
    async fn store<S>(
        &self,
        key: &str,
        mut body: S,
        limits: &Limits,
    ) -> Result<(DocumentType, u64, String)>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        // The first bytes decide the type before anything is stored.
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut first: Vec<Bytes> = Vec::new();
        while head.len() < SNIFF_BYTES {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    let room = SNIFF_BYTES - head.len();
                    head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    first.push(chunk);
                }
                None => break,
            }
        }
        let kind = DocumentType::sniff(&head).map_err(|found| match found {
            _ if head.is_empty() => Error::Unprocessable {
                code: "empty_file",
                message: "the file is empty; choose a file with something in it".into(),
            },
            Some(mime) => Error::Unprocessable {
                code: "type_not_allowed",
                message: format!(
                    "the file's content is {mime}, which cannot be shared here; allowed: {}",
                    DocumentType::allowed_list()
                ),
            },
            None => Error::Unprocessable {
                code: "type_not_allowed",
                message: format!(
                    "the file's content is of no type that can be shared here; allowed: {}",
                    DocumentType::allowed_list()
                ),
            },
        })?;

        let mut upload = self.objects.start_upload(key).await.map_err(unavailable)?;
        let mut progress = Progress {
            size: 0,
            hasher: Sha256::new(),
        };
        let streamed = async {
            for chunk in first {
                progress.feed(&mut upload, &chunk, limits).await?;
            }
            while let Some(chunk) = body.next().await {
                progress.feed(&mut upload, &chunk?, limits).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = streamed {
            upload.abort().await;
            return Err(err);
        }
        upload.finish().await.map_err(unavailable)?;
        let sha256 = format!("{:x}", progress.hasher.finalize());
        Ok((kind, progress.size, sha256))
    }

    /// The documents the caller may see, newest first.
    pub async fn list(&self, ctx: &Ctx) -> Result<Vec<Document>> {
        let coop_id = ctx.coop_id();
        let viewer = viewer(ctx)?;
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                documents::list(&db, coop_id, viewer, MAX_LIST).await
            })
            .await?)
    }

    /// One document the caller may see (another co-op's, or one not
    /// addressed to them, is not found).
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Document> {
        let coop_id = ctx.coop_id();
        let viewer = viewer(ctx)?;
        self.data
            .read(&ctx.read_after, |db| async move {
                documents::get(&db, coop_id, id, viewer).await
            })
            .await?
            .ok_or_else(not_found)
    }

    /// The document's bytes, or `range` of them (checked by the caller
    /// against the document's size).
    pub async fn open(&self, document: &Document, range: Option<Range<u64>>) -> Result<ObjectRead> {
        self.objects
            .get(&document.object_key, range)
            .await
            .map_err(|err| match err {
                ObjectError::NotFound => missing(),
                other => unavailable(other),
            })
    }

    /// The thumbnail of an image document, once its job made it.
    pub async fn thumbnail(&self, ctx: &Ctx, id: Uuid) -> Result<ObjectRead> {
        let document = self.get(ctx, id).await?;
        let Some(key) = document.thumbnail_key else {
            return Err(Error::NotFound(
                "this document has no thumbnail (only PNG and JPEG images get one, a moment \
                 after their upload)"
                    .into(),
            ));
        };
        self.objects.get(&key, None).await.map_err(|err| match err {
            ObjectError::NotFound => missing(),
            other => unavailable(other),
        })
    }

    /// Renames a document (its owner and coordinators).
    pub async fn rename(&self, ctx: &Ctx, id: Uuid, name: &DocumentName) -> Result<Document> {
        let document = self.get_for_change(ctx, id).await?;
        let now = now_ms();
        if !documents::rename(self.data.primary(), ctx.coop_id(), id, name.as_str(), now).await? {
            return Err(not_found());
        }
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(DocumentRow {
            name: name.as_str().into(),
            updated_at: now,
            ..document
        })
    }

    /// Deletes a document (its owner and coordinators): the row at once,
    /// the object by a job queued in the same commit.
    pub async fn delete(&self, ctx: &Ctx, id: Uuid) -> Result<()> {
        let document = self.get_for_change(ctx, id).await?;
        let job = jobs::delete_objects_job(
            ctx.coop_id(),
            id,
            vec![
                document.object_key.clone(),
                thumbnail_key(ctx.coop_id(), id),
            ],
            self.job_max_attempts,
        );
        if !documents::delete(self.data.primary(), ctx.coop_id(), id, &job).await? {
            return Err(not_found());
        }
        metrics::counter!("documents_deleted_total").increment(1);
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(())
    }

    /// The document from the primary, if the caller may change it.
    async fn get_for_change(&self, ctx: &Ctx, id: Uuid) -> Result<Document> {
        let document = documents::get(self.data.primary(), ctx.coop_id(), id, viewer(ctx)?)
            .await?
            .ok_or_else(not_found)?;
        if ctx.caller.role != Role::Coordinator && document.owner_id != ctx.caller.user_id {
            return Err(Error::Forbidden(
                "only the person who uploaded a document, or a coordinator, may rename or \
                 delete it"
                    .into(),
            ));
        }
        Ok(document)
    }

    /// Coordinators may address anyone in their co-op; a parent their own
    /// family, and a class they teach.
    async fn may_upload(&self, ctx: &Ctx, visibility: Visibility) -> Result<()> {
        let coop_id = ctx.coop_id();
        let primary = self.data.primary();
        match ctx.caller.role {
            Role::Operator => {
                return Err(Error::Forbidden(
                    "operators do not share documents in a co-op".into(),
                ));
            }
            Role::Coordinator => {}
            Role::Family => match visibility {
                Visibility::Coop => {
                    return Err(Error::Forbidden(
                        "only a coordinator may share a document with the whole co-op; \
                         share it with your family, or a class you teach"
                            .into(),
                    ));
                }
                Visibility::Family(family) if ctx.caller.family_id != Some(family) => {
                    return Err(Error::Forbidden(
                        "you may share documents with your own family only".into(),
                    ));
                }
                Visibility::Family(_) => {}
                Visibility::Class(class) => {
                    if !documents::teaches(primary, coop_id, class, ctx.caller.user_id).await? {
                        return Err(Error::Forbidden(
                            "only the class's teacher or a coordinator may share a document \
                             with a class"
                                .into(),
                        ));
                    }
                }
            },
        }
        match visibility {
            Visibility::Coop => {}
            Visibility::Class(class) => {
                if courses::get_class(primary, coop_id, class).await?.is_none() {
                    return Err(Error::Invalid(coop_domain::Invalid::field(
                        "class_id",
                        "no class with that id in your co-op",
                    )));
                }
            }
            Visibility::Family(family) => {
                if families::get(primary, coop_id, family).await?.is_none() {
                    return Err(Error::Invalid(coop_domain::Invalid::field(
                        "family_id",
                        "no family with that id in your co-op",
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes an object this request stored and will not use (best
    /// effort: its sweep job removes it otherwise).
    async fn discard_now(&self, key: &str) {
        if let Err(err) = self.objects.discard(key).await {
            tracing::info!(error = %err, "removing an unused upload failed; its sweep will");
        }
    }
}

/// The size limits, and what the co-op used before this upload.
struct Limits {
    max_bytes: u64,
    quota_bytes: u64,
    used: u64,
}

impl Limits {
    fn quota_error(&self, size: u64) -> Error {
        Error::TooLarge {
            code: "quota_exceeded",
            message: format!(
                "your co-op's documents may take {quota} in all; {used} are used, and this \
                 file ({size_text}) does not fit. Delete documents you no longer need, or ask \
                 the operator for a larger quota",
                quota = human(self.quota_bytes),
                used = human(self.used),
                size_text = if size == 0 {
                    "any size".to_owned()
                } else {
                    format!("at least {}", human(size))
                },
            ),
        }
    }
}

struct Progress {
    size: u64,
    hasher: Sha256,
}

impl Progress {
    async fn feed(&mut self, upload: &mut Upload, chunk: &[u8], limits: &Limits) -> Result<()> {
        self.size += chunk.len() as u64;
        if self.size > limits.max_bytes {
            return Err(Error::TooLarge {
                code: "file_too_large",
                message: format!(
                    "the file is larger than {} ({} bytes), the most one document may be",
                    human(limits.max_bytes),
                    limits.max_bytes
                ),
            });
        }
        if limits.used.saturating_add(self.size) > limits.quota_bytes {
            return Err(limits.quota_error(self.size));
        }
        self.hasher.update(chunk);
        upload.write(chunk).await.map_err(unavailable)
    }
}

fn viewer(ctx: &Ctx) -> Result<Viewer> {
    match ctx.caller.role {
        Role::Coordinator => Ok(Viewer::Coordinator),
        Role::Family => Ok(Viewer::Member {
            user_id: ctx.caller.user_id,
            family_id: ctx.caller.family_id,
        }),
        Role::Operator => Err(Error::Forbidden(
            "operators do not see a co-op's documents".into(),
        )),
    }
}

/// PNG and JPEG: the decoders built in (see `jobs::effects`).
fn thumbnailable(kind: DocumentType) -> bool {
    matches!(kind.mime, "image/png" | "image/jpeg")
}

/// `123 bytes`, `4.5 MiB`, `5.0 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub(crate) fn unavailable(err: ObjectError) -> Error {
    match err {
        ObjectError::NotFound => missing(),
        other => Error::Unavailable {
            dependency: "the file store",
            source: anyhow::anyhow!(other.to_string()),
        },
    }
}

fn missing() -> Error {
    Error::Gone {
        code: "document_missing",
        message: "this document's file is missing from storage; upload it again".into(),
    }
}

fn not_found() -> Error {
    Error::NotFound("no document with that id that you can see in your co-op".into())
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(100 << 20), "100.0 MiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
