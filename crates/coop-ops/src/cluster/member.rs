//! One supervised process: a `coop serve` instance or a `coop worker`, started
//! from this same binary with the cluster's environment, on a port of its own.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::process::{Child, Command};

use super::cgroup::CpuCap;
use super::child_process::{die_with_parent, signal};
use super::observe::{self, LatencyHistogram};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Instance,
    Worker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not yet answering `/ready` (not in nginx's list).
    Starting,
    /// Taking traffic (instances) or claiming jobs (workers).
    Running,
    /// Out of nginx's list, finishing what it has, then SIGTERM.
    Draining,
}

/// What the supervisor last measured of a member, shown by `coop cluster status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Load {
    /// CPU used over the last interval, as a fraction of the member's allowance.
    pub cpu: Option<f64>,
    /// p95 of its requests over the last interval, in milliseconds.
    pub p95_ms: Option<f64>,
    pub requests: f64,
    pub in_flight: f64,
    /// Ready jobs in the queue, as the worker last reported them.
    pub ready_jobs: Option<f64>,
}

pub struct Member {
    pub id: u32,
    pub role: Role,
    pub address: SocketAddr,
    pub state: State,
    pub started: Instant,
    pub healthy: bool,
    pub health_failures: u32,
    pub load: Load,
    child: Child,
    pid: u32,
    cap: Option<CpuCap>,
    cpu_allowance: f64,
    last_cpu: Option<(Instant, f64)>,
    last_latency: Option<LatencyHistogram>,
}

pub struct Spawn<'a> {
    pub coop_bin: &'a Path,
    pub state_dir: &'a Path,
    pub env: &'a [(String, String)],
    pub cpu_cap: Option<f64>,
    pub cluster_name: &'a str,
}

impl Member {
    pub fn spawn(spec: &Spawn<'_>, role: Role, id: u32) -> anyhow::Result<Self> {
        let port = free_port()?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let name = match role {
            Role::Instance => format!("instance-{id}"),
            Role::Worker => format!("worker-{id}"),
        };
        let log_path: PathBuf = spec.state_dir.join("logs").join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(spec.coop_bin);
        match role {
            Role::Instance => command
                .arg("serve")
                .env("COOP_LISTEN", address.to_string())
                // The load balancer is told first; the instance need not wait.
                .env("COOP_DRAIN_DELAY", "0s"),
            Role::Worker => command
                .arg("worker")
                .env("COOP_WORKER_LISTEN", address.to_string()),
        };
        if let (Role::Instance, Some(cpus)) = (role, spec.cpu_cap) {
            // A server with a quarter of a CPU runs one worker thread, not one
            // per core of the host: more threads than CPU only contend for the
            // quota and stall together when it runs out.
            command.env(
                "TOKIO_WORKER_THREADS",
                (cpus.ceil() as u32).max(1).to_string(),
            );
        }
        command
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("COOP_INSTANCE_ID", format!("{}-{name}", spec.cluster_name))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.coop_bin.display()))?;
        let pid = child.id().context("the new process has no pid")?;
        let cap = match (role, spec.cpu_cap) {
            (Role::Instance, Some(cpus)) => {
                let cap = CpuCap::create(&format!("{}-{name}", spec.cluster_name), cpus)?;
                cap.add(pid)?;
                Some(cap)
            }
            _ => None,
        };
        let cpu_allowance = match (role, spec.cpu_cap) {
            (Role::Instance, Some(cpus)) => cpus,
            _ => 1.0,
        };
        Ok(Self {
            id,
            role,
            address,
            state: State::Starting,
            started: Instant::now(),
            healthy: false,
            health_failures: 0,
            load: Load::default(),
            child,
            pid,
            cap,
            cpu_allowance,
            last_cpu: None,
            last_latency: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub async fn stop(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let _ = signal(self.pid, libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(
                    id = self.id,
                    pid = self.pid,
                    "did not stop in time; killing it"
                );
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// Samples CPU and the member's own metrics into `self.load`, and returns
    /// the latency observations since the previous sample (instances only).
    pub fn observe(&mut self, metrics_text: Option<&str>) -> Option<LatencyHistogram> {
        let now = Instant::now();
        if let Some(cpu) = observe::cpu_seconds(self.pid) {
            if let Some((then, before)) = self.last_cpu {
                let wall = now.duration_since(then).as_secs_f64();
                if wall > 0.0 {
                    self.load.cpu = Some((cpu - before) / wall / self.cpu_allowance);
                }
            }
            self.last_cpu = Some((now, cpu));
        }
        let text = metrics_text?;
        // The scrape that fetched `text` is itself a request in flight.
        self.load.in_flight =
            (observe::metric_sum(text, "http_requests_in_flight", None) - 1.0).max(0.0);
        if self.role == Role::Worker {
            self.load.ready_jobs = Some(observe::metric_sum(text, "jobs", Some("state=\"ready\"")));
            return None;
        }
        let latency = LatencyHistogram::parse(text);
        let delta = self
            .last_latency
            .as_ref()
            .map(|before| latency.since(before));
        self.last_latency = Some(latency);
        if let Some(delta) = &delta {
            self.load.requests = delta.count();
            self.load.p95_ms = delta.quantile(0.95).map(|s| s * 1000.0);
        }
        delta
    }

    pub fn throttled_seconds(&self) -> Option<f64> {
        self.cap.as_ref().and_then(CpuCap::throttled_seconds)
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
