//! Coop as separate processes (the real binary): for tests that need a
//! process of their own (its own metrics registry) or a kill.

use std::time::Duration;

use super::app::{Endpoint, client};
use super::poll::free_port;
use super::services::Backing;

/// Coop as a separate process (the real binary), for tests that need a
/// process of its own: its own metrics registry, or a kill.
pub struct ProcessApp {
    endpoint: Endpoint,
    child: std::process::Child,
    _backing: std::sync::Arc<Backing>,
}

pub async fn spawn_process(backing: std::sync::Arc<Backing>, env: &[(&str, &str)]) -> ProcessApp {
    let port = free_port();
    let child = coop_command("serve", &backing, ("COOP_LISTEN", port), env);
    let app = ProcessApp {
        endpoint: Endpoint {
            address: format!("http://127.0.0.1:{port}"),
            http: client(),
        },
        child,
        _backing: backing,
    };
    app.wait_until_ok("/ready", "coop serve").await;
    app
}

impl ProcessApp {
    /// The process id (for reading its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The value of one Prometheus series (0 when absent), summed over series
    /// whose labels contain every `label="value"` pair given.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        parse_metric(&self.metrics().await, name, labels)
    }
}

impl std::ops::Deref for ProcessApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for ProcessApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `coop COMMAND` (the real binary) on `backing`, listening on
/// 127.0.0.1:`port` through the `listen` variable, quiet but for warnings.
fn coop_command(
    command: &str,
    backing: &Backing,
    (listen, port): (&str, u16),
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_coop"));
    process
        .arg(command)
        .args(backing.args())
        .env(listen, format!("127.0.0.1:{port}"))
        .env("COOP_LOG", "json")
        .env("COOP_METRICS_TOKEN", super::app::METRICS_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (name, value) in env {
        process.env(name, value);
    }
    process
        .spawn()
        .unwrap_or_else(|e| panic!("start coop {command}: {e}"))
}

/// A `coop worker` process on the given storage.
pub struct WorkerProcess {
    child: std::process::Child,
    /// Serves the worker's `/health` and `/metrics`.
    pub probes: Endpoint,
}

pub async fn spawn_worker(backing: &Backing, env: &[(&str, &str)]) -> WorkerProcess {
    let port = free_port();
    let child = coop_command("worker", backing, ("COOP_WORKER_LISTEN", port), env);
    let worker = WorkerProcess {
        child,
        probes: Endpoint {
            address: format!("http://127.0.0.1:{port}"),
            http: client(),
        },
    };
    worker.probes.wait_until_ok("/health", "coop worker").await;
    worker
}

impl WorkerProcess {
    /// SIGKILL: the worker dies mid-job, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (None if it did not exit within `within`).
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// One Prometheus series from the worker (see `ProcessApp::metric`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        parse_metric(&self.probes.metrics().await, name, labels)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of the series of `name` whose labels contain every `label="value"`.
pub fn parse_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(name)
                && line[name.len()..].starts_with(['{', ' '])
                && labels.iter().all(|l| line.contains(l))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
