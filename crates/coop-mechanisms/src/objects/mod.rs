//! Object storage: where documents' bytes live. One interface, the
//! `object_store` crate's (Apache Arrow), over two stores chosen once from
//! the configuration: files under `COOP_DATA_DIR/objects` for the embedded
//! tier, an S3-compatible bucket for the distributed one (no instance keeps
//! a file, so any instance serves any document).
//!
//! What this module adds to the crate:
//! - a circuit breaker per store (like the payment provider's): once the
//!   store fails often enough, calls are refused at once for a while, so an
//!   outage answers 503 + `Retry-After` quickly instead of a request per
//!   client waiting out timeouts;
//! - bounded memory per upload: bytes are written in parts (5 MiB, S3's
//!   minimum, or 1 MiB to a local file), the next filling only once the
//!   last is stored, whatever the size;
//! - metrics: bytes in and out, operations and errors by kind;
//! - explicit S3 credentials and endpoint, always (see `settings`): without
//!   keys the S3 client would ask the cloud metadata address for some.
//!
//! A failed or interrupted upload on the local store can leave a staging
//! file (`KEY#N`) that the crate's listing hides; [`Objects::discard`]
//! removes those too. On S3 an interrupted multipart upload leaves parts
//! that are no object at all (invisible, unlisted): a bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) removes them (see the README).

mod settings;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResultPayload, ObjectStore,
    ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

pub use settings::ObjectStoreSettings;

use crate::providers::breaker::{Breaker, BreakerConfig, Rejected};

/// The size of an upload's parts to S3: its minimum for all parts but the
/// last. An upload holds about one of these in memory.
pub const S3_PART_BYTES: usize = 5 * 1024 * 1024;

/// The size of an upload's parts to a local file: any size works, and a
/// smaller one keeps less in memory (measured: a 200 MB upload grew the
/// peak RSS by 32 MiB with 5 MiB parts, much less with 1 MiB).
pub const LOCAL_PART_BYTES: usize = 1024 * 1024;

/// Bytes read per chunk when streaming a local file.
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// What a call to the store can answer besides its result.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no such object")]
    NotFound,
    /// The store's circuit breaker is open: no call was made.
    #[error("the file store's circuit breaker is open after repeated failures")]
    Open { retry_after: Duration },
    /// The store failed (down, timed out, refused).
    #[error("the file store is unavailable: {reason}")]
    Unavailable { reason: String },
}

/// A byte stream read from the store.
pub type ObjectStream = Pin<Box<dyn Stream<Item = Result<Bytes, ObjectError>> + Send>>;

/// An object (or the part of it asked for) being read.
pub struct ObjectRead {
    /// The whole object's size.
    pub size: u64,
    /// The bytes returned (the range asked for, or everything).
    pub range: Range<u64>,
    pub stream: ObjectStream,
}

#[derive(Clone)]
pub struct Objects(Arc<Inner>);

struct Inner {
    store: Arc<dyn ObjectStore>,
    breaker: Breaker,
    /// `local` or `s3`: the `store` label of the metrics.
    kind: &'static str,
    /// The local store's folder (for staging leftovers).
    local_root: Option<PathBuf>,
}

impl Objects {
    /// The store the configuration names: S3 with an endpoint, else the
    /// folder `objects` under `data_dir` (created if missing).
    pub fn new(
        settings: &ObjectStoreSettings,
        data_dir: &std::path::Path,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let (store, kind, local_root): (Arc<dyn ObjectStore>, _, _) = match &settings.endpoint {
            Some(endpoint) => (Arc::new(s3(settings, endpoint)?), "s3", None),
            None => {
                let root = data_dir.join("objects");
                std::fs::create_dir_all(&root).with_context(|| {
                    format!(
                        "could not create the documents folder {} (COOP_DATA_DIR)",
                        root.display()
                    )
                })?;
                let local = LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("could not open {}", root.display()))?
                    .with_automatic_cleanup(true);
                (Arc::new(local), "local", Some(root))
            }
        };
        Ok(Self(Arc::new(Inner {
            store,
            breaker: Breaker::new("object_store", breaker),
            kind,
            local_root,
        })))
    }

    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.0.kind
    }

    pub fn breaker(&self) -> &Breaker {
        &self.0.breaker
    }

    fn part_bytes(&self) -> usize {
        match self.0.local_root {
            Some(_) => LOCAL_PART_BYTES,
            None => S3_PART_BYTES,
        }
    }

    /// Starts writing `key`; nothing is visible under it until
    /// [`Upload::finish`].
    pub async fn start_upload(&self, key: &str) -> Result<Upload, ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        let upload = self
            .call("upload", || async move { store.put_multipart(&path).await })
            .await?;
        Ok(Upload {
            objects: self.clone(),
            writer: Some(WriteMultipart::new_with_chunk_size(
                upload,
                self.part_bytes(),
            )),
            written: 0,
        })
    }

    /// Writes a small object in one call (thumbnails).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        let len = bytes.len() as u64;
        self.call("put", || async move {
            store.put(&path, PutPayload::from_bytes(bytes)).await
        })
        .await?;
        self.bytes("in", len);
        Ok(())
    }

    /// Reads `key`, or the bytes `range` of it (already checked against the
    /// size the caller knows). Streams: nothing is held beyond a chunk.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<ObjectRead, ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        let options = GetOptions::new().with_range(range.map(GetRange::Bounded));
        let result = self
            .call(
                "get",
                || async move { store.get_opts(&path, options).await },
            )
            .await?;
        let size = result.meta.size;
        let range = result.range.clone();
        let this = self.clone();
        let stream: ObjectStream = match result.payload {
            GetResultPayload::File(file, _) => local_chunks(file, range.clone()),
            GetResultPayload::Stream(stream) => Box::pin(stream.map(move |chunk| {
                chunk.map_err(|err| {
                    this.error("get", &err);
                    unavailable(&err)
                })
            })),
        };
        let this = self.clone();
        let stream = Box::pin(stream.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                this.bytes("out", chunk.len() as u64);
            }
        }));
        Ok(ObjectRead {
            size,
            range,
            stream,
        })
    }

    /// The whole of a small object, or `None` when it is larger than `max`
    /// (read from the store only when it fits).
    pub async fn get_small(&self, key: &str, max: u64) -> Result<Option<Bytes>, ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        let meta = self
            .call("head", || async move { store.head(&path).await })
            .await?;
        if meta.size > max {
            return Ok(None);
        }
        let mut read = self.get(key, None).await?;
        let mut out = Vec::with_capacity(meta.size as usize);
        while let Some(chunk) = read.stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Some(out.into()))
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        match self
            .call("head", || async move { store.head(&path).await })
            .await
        {
            Ok(_) => Ok(true),
            Err(ObjectError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Removes `key` (absent is fine), and on the local store any staging
    /// file an interrupted upload to it left.
    pub async fn discard(&self, key: &str) -> Result<(), ObjectError> {
        let path = Path::from(key);
        let store = self.0.store.clone();
        match self
            .call("delete", || async move { store.delete(&path).await })
            .await
        {
            Ok(()) | Err(ObjectError::NotFound) => {}
            Err(err) => return Err(err),
        }
        if let Some(root) = &self.0.local_root {
            remove_staged(root.join(key)).await;
        }
        Ok(())
    }

    /// One call to the store through the breaker.
    async fn call<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, ObjectError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let permit = self
            .0
            .breaker
            .try_acquire(Instant::now())
            .map_err(|rejected| self.rejected(op, rejected))?;
        let result = call().await;
        let succeeded = !matches!(&result, Err(err) if !is_not_found(err));
        self.0.breaker.record(permit, succeeded, Instant::now());
        metrics::counter!("object_store_operations_total", "store" => self.0.kind, "operation" => op)
            .increment(1);
        match result {
            Ok(value) => Ok(value),
            Err(err) if is_not_found(&err) => Err(ObjectError::NotFound),
            Err(err) => {
                self.error(op, &err);
                Err(unavailable(&err))
            }
        }
    }

    fn rejected(&self, op: &'static str, rejected: Rejected) -> ObjectError {
        metrics::counter!("object_store_errors_total", "store" => self.0.kind, "operation" => op, "reason" => "breaker_open")
            .increment(1);
        ObjectError::Open {
            retry_after: rejected.retry_at.saturating_duration_since(Instant::now()),
        }
    }

    fn error(&self, op: &'static str, err: &object_store::Error) {
        tracing::warn!(store = self.0.kind, operation = op, error = %err, "object store call failed");
        metrics::counter!("object_store_errors_total", "store" => self.0.kind, "operation" => op, "reason" => "failed")
            .increment(1);
    }

    /// A failure outside `call` (an upload's part): counted by the breaker
    /// like any other.
    fn part_failed(&self, err: &object_store::Error) -> ObjectError {
        if let Ok(permit) = self.0.breaker.try_acquire(Instant::now()) {
            self.0.breaker.record(permit, false, Instant::now());
        }
        self.error("upload", err);
        unavailable(err)
    }

    fn bytes(&self, direction: &'static str, n: u64) {
        metrics::counter!("object_store_bytes_total", "store" => self.0.kind, "direction" => direction)
            .increment(n);
    }
}

/// An object being written. Drop it without [`Upload::finish`] and nothing
/// appears under its key (call [`Upload::abort`] to free the parts now).
pub struct Upload {
    objects: Objects,
    writer: Option<WriteMultipart>,
    written: u64,
}

impl Upload {
    /// Adds `chunk`; waits while a part is in flight (the next fills only
    /// once it is stored), so memory stays about one part however fast the
    /// client sends.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ObjectError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer
            .wait_for_capacity(0)
            .await
            .map_err(|err| self.objects.part_failed(&err))?;
        writer.write(chunk);
        self.written += chunk.len() as u64;
        self.objects.bytes("in", chunk.len() as u64);
        Ok(())
    }

    /// Makes the object visible under its key.
    pub async fn finish(mut self) -> Result<u64, ObjectError> {
        let Some(writer) = self.writer.take() else {
            return Ok(self.written);
        };
        match writer.finish().await {
            Ok(_) => {
                if let Ok(permit) = self.objects.0.breaker.try_acquire(Instant::now()) {
                    self.objects.0.breaker.record(permit, true, Instant::now());
                }
                Ok(self.written)
            }
            Err(err) => Err(self.objects.part_failed(&err)),
        }
    }

    /// Gives up: frees what was written (best effort; on failure the
    /// upload's sweep job or the bucket's lifecycle rule does it).
    pub async fn abort(mut self) {
        if let Some(writer) = self.writer.take()
            && let Err(err) = writer.abort().await
        {
            tracing::info!(error = %err, "aborting an upload failed; its sweep will clean up");
        }
    }
}

fn s3(
    settings: &ObjectStoreSettings,
    endpoint: &str,
) -> anyhow::Result<object_store::aws::AmazonS3> {
    // reqwest 0.13 is built with rustls but no crypto provider (aws-lc is
    // kept out of the build): ring's, installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (Some(key), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) else {
        anyhow::bail!("COOP_OBJECT_STORE_ENDPOINT needs keys (see ObjectStoreSettings::validate)");
    };
    let client = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(settings.timeout);
    // A few quick retries: a store that is down must answer 503 within
    // seconds, not after the crate's default three minutes of retrying.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    };
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_access_key_id(key)
        .with_secret_access_key(secret)
        .with_allow_http(endpoint.starts_with("http://"))
        // Path-style (`ENDPOINT/BUCKET/KEY`): what S3-compatible servers serve.
        .with_virtual_hosted_style_request(false)
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .context("configuring the S3 client (COOP_OBJECT_STORE_*)")
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

fn unavailable(err: &object_store::Error) -> ObjectError {
    ObjectError::Unavailable {
        reason: err.to_string(),
    }
}

/// Streams `range` of a local file in chunks of [`LOCAL_READ_BYTES`]
/// (the crate's own stream reads 8 KiB at a time, each on the blocking
/// pool: too slow for large files).
fn local_chunks(file: std::fs::File, range: Range<u64>) -> ObjectStream {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let state = (
        tokio::fs::File::from_std(file),
        range.start,
        range.end,
        false,
    );
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut file, at, end, seeked)| async move {
            if at >= end {
                return None;
            }
            if !seeked && let Err(err) = file.seek(std::io::SeekFrom::Start(at)).await {
                return Some((Err(io_error(err)), (file, end, end, true)));
            }
            let want = ((end - at) as usize).min(LOCAL_READ_BYTES);
            let mut buf = vec![0; want];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, at + n as u64, end, true)))
                }
                Err(err) => Some((Err(io_error(err)), (file, end, end, true))),
            }
        },
    ))
}

fn io_error(err: std::io::Error) -> ObjectError {
    ObjectError::Unavailable {
        reason: format!("reading the file failed: {err}"),
    }
}

/// Removes `PATH#N` staging files the local store leaves when an upload to
/// `PATH` is interrupted by a crash.
async fn remove_staged(path: PathBuf) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}#", name.to_string_lossy());
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> Objects {
        let settings = ObjectStoreSettings {
            endpoint: None,
            bucket: "coop".into(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            timeout: Duration::from_secs(5),
        };
        Objects::new(&settings, dir, BreakerConfig::default()).unwrap()
    }

    async fn read_all(mut read: ObjectRead) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = read.stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn an_upload_in_parts_reads_back_whole_and_by_range() {
        let dir = std::env::temp_dir().join(format!("coop-objects-{}", uuid::Uuid::new_v4()));
        let objects = local(&dir);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut upload = objects.start_upload("documents/c/one").await.unwrap();
        for chunk in data.chunks(70_001) {
            upload.write(chunk).await.unwrap();
        }
        assert!(
            !objects.exists("documents/c/one").await.unwrap(),
            "visible before finish"
        );
        assert_eq!(upload.finish().await.unwrap(), data.len() as u64);

        let whole = objects.get("documents/c/one", None).await.unwrap();
        assert_eq!(whole.size, data.len() as u64);
        assert!(read_all(whole).await == data);
        // Across a part boundary, and a chunk boundary of the local reader.
        let at = (LOCAL_PART_BYTES - 10) as u64;
        let part = objects
            .get("documents/c/one", Some(at..at + 300_000))
            .await
            .unwrap();
        assert_eq!(part.range, at..at + 300_000);
        assert!(read_all(part).await == data[at as usize..at as usize + 300_000]);

        objects.discard("documents/c/one").await.unwrap();
        assert!(!objects.exists("documents/c/one").await.unwrap());
        // Absent is fine: a job's rerun.
        objects.discard("documents/c/one").await.unwrap();
        assert!(matches!(
            objects.get("documents/c/one", None).await,
            Err(ObjectError::NotFound)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn discard_removes_what_a_crashed_upload_left() {
        let dir = std::env::temp_dir().join(format!("coop-objects-{}", uuid::Uuid::new_v4()));
        let objects = local(&dir);
        let mut upload = objects.start_upload("documents/c/cut").await.unwrap();
        upload.write(&vec![7; LOCAL_PART_BYTES * 2]).await.unwrap();
        // A process killed here runs no destructor: neither may the test.
        std::mem::forget(upload);
        let folder = dir.join("objects/documents/c");
        let staged = || {
            std::fs::read_dir(&folder)
                .map(|entries| entries.count())
                .unwrap_or(0)
        };
        assert_eq!(staged(), 1, "the staging file of the cut upload");
        assert!(!objects.exists("documents/c/cut").await.unwrap());
        objects.discard("documents/c/cut").await.unwrap();
        assert_eq!(staged(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
