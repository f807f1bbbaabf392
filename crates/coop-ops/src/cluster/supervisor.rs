//! Keeps the cluster's processes in the shape asked for: replaces members that
//! die, applies the auto-scaler's decisions, and performs rolling restarts.
//!
//! The order of every membership change is what makes it safe under load:
//! - a new instance joins nginx's list only once it answers `/ready`;
//! - an instance leaves the list (nginx reload) first, then the nginx workers
//!   that ran the old list are waited out (they finish their requests and close
//!   their connections), and only then does the instance get SIGTERM, which it
//!   answers by finishing whatever it still has;
//! - a dead instance is taken out at once; requests that hit it meanwhile are
//!   retried by nginx on another instance (see the template's proxy_next_upstream).
//!
//! Membership changes are serialised by one async lock (`ops`); the health and
//! scaling loops take it only to change something.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::args::ClusterArgs;
use super::member::{Load, Member, Role, Spawn, State};
use super::nginx::{self, Layout, Nginx};
use super::observe::LatencyHistogram;
use crate::autoscale::{Autoscaler, Reading, Signal};

/// How often processes are checked for life and health.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive failed `/health` probes after which a running member is replaced.
const HEALTH_FAILURES: u32 = 3;
/// Longest wait for nginx workers running an old upstream list to finish.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(35);
/// SIGTERM → exit, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(35);
/// Decisions kept for `coop cluster status`.
const DECISIONS_KEPT: usize = 20;

pub struct Settings {
    pub coop_bin: PathBuf,
    pub nginx_bin: PathBuf,
    pub state_dir: PathBuf,
    pub database_url: String,
    pub redis_url: String,
    pub args: ClusterArgs,
}

pub struct Cluster {
    settings: Settings,
    env: Vec<(String, String)>,
    name: String,
    started: Instant,
    members: Mutex<Vec<Member>>,
    nginx: Mutex<Option<Nginx>>,
    ops: tokio::sync::Mutex<()>,
    next_id: AtomicU32,
    desired: Mutex<Desired>,
    decisions: Mutex<VecDeque<serde_json::Value>>,
    http: reqwest::Client,
    /// What the members ask of a `/metrics` scraper (COOP_METRICS_TOKEN).
    metrics_token: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Desired {
    pub instances: u32,
    pub workers: u32,
}

/// 24 random bytes in hex, from the kernel (no dependency for one token).
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom for a metrics token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the cluster's token where `coop cluster status` and `restart`
/// find it, readable by this account only (a file left by an earlier run is
/// replaced, never written through: it could be a link someone else made).
fn write_token_file(state_dir: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(super::args::TOKEN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("replacing {}", path.display())),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing the cluster's token to {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok(())
}

/// The cluster's token, for the control API to check.
impl Cluster {
    pub fn token(&self) -> &str {
        &self.metrics_token
    }
}

/// Runs the cluster until `shutdown`, then stops nginx (finishing requests in
/// flight) and every member. `control` serves the control API on the listener
/// bound to `--control` until its stop flag turns true (the caller passes
/// `control::serve`).
pub async fn run<Control, Serving>(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    control: Control,
) -> anyhow::Result<()>
where
    Control: FnOnce(
        tokio::net::TcpListener,
        Arc<Cluster>,
        tokio::sync::watch::Receiver<bool>,
    ) -> Serving,
    Serving: std::future::Future<Output = ()> + Send + 'static,
{
    let policy_serve = settings.args.scaling.serve_policy();
    let policy_worker = settings.args.scaling.worker_policy();
    let desired = Desired {
        instances: settings
            .args
            .instances
            .clamp(policy_serve.min.max(1), policy_serve.max.max(1)),
        workers: settings
            .args
            .workers
            .clamp(policy_worker.min, policy_worker.max),
    };
    // Members serve /metrics only to a scraper with this token (issue 15):
    // nginx never passes /metrics on, and the supervisor scrapes the members
    // directly, with the token.
    let metrics_token = match settings.args.metrics_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => token.to_owned(),
        _ => random_token()?,
    };
    write_token_file(&settings.state_dir, &metrics_token)?;
    let mut env = vec![
        (
            "COOP_DATABASE_URL".to_owned(),
            settings.database_url.clone(),
        ),
        ("COOP_REDIS_URL".to_owned(), settings.redis_url.clone()),
        ("COOP_METRICS_TOKEN".to_owned(), metrics_token.clone()),
        // The operations page of each instance asks the control API for the
        // other instances and the scaler's decisions (with the token above).
        (
            "COOP_CLUSTER_CONTROL".to_owned(),
            settings.args.control.to_string(),
        ),
    ];
    // Every request reaches the members through our nginx on loopback: its
    // X-Forwarded-For names the client, for per-address rate limits.
    if std::env::var_os("COOP_TRUSTED_PROXIES").is_none() {
        env.push((
            "COOP_TRUSTED_PROXIES".to_owned(),
            "127.0.0.1,::1".to_owned(),
        ));
    }
    let cluster = Arc::new(Cluster {
        name: format!("coop-cluster-{}", std::process::id()),
        env,
        started: Instant::now(),
        members: Mutex::new(Vec::new()),
        nginx: Mutex::new(None),
        ops: tokio::sync::Mutex::new(()),
        next_id: AtomicU32::new(1),
        desired: Mutex::new(desired),
        decisions: Mutex::new(VecDeque::new()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?,
        metrics_token,
        settings,
    });

    // Bind the control port before starting anything, so a port clash is
    // reported before processes are spawned.
    let control_listener = tokio::net::TcpListener::bind(cluster.settings.args.control)
        .await
        .with_context(|| {
            format!(
                "could not listen on {} (COOP_CLUSTER_CONTROL)",
                cluster.settings.args.control
            )
        })?;

    let layout = Layout {
        listen: cluster.settings.args.listen,
        state_dir: cluster.settings.state_dir.clone(),
        worker_processes: cluster.settings.args.nginx_workers.clone(),
        access_log: cluster.settings.args.access_log,
    };
    for sub in ["logs", "tmp", "cache"] {
        std::fs::create_dir_all(cluster.settings.state_dir.join(sub))?;
    }
    {
        let _op = cluster.ops.lock().await;
        cluster
            .start_members(Role::Instance, desired.instances)
            .await?;
        let upstreams = cluster.upstreams();
        let nginx = Nginx::start(cluster.settings.nginx_bin.clone(), layout, &upstreams).await?;
        *cluster.nginx.lock().expect("nginx lock") = Some(nginx);
        cluster.start_members(Role::Worker, desired.workers).await?;
    }
    tracing::info!(
        listen = %cluster.settings.args.listen,
        control = %cluster.settings.args.control,
        instances = desired.instances,
        workers = desired.workers,
        state_dir = %cluster.settings.state_dir.display(),
        "Coop cluster is serving: open http://{}/",
        cluster.settings.args.listen
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = tokio::spawn(cluster.clone().health_loop(stop_rx.clone()));
    let scaling = tokio::spawn(cluster.clone().scaling_loop(
        stop_rx.clone(),
        Autoscaler::new("serve", policy_serve),
        Autoscaler::new("worker", policy_worker),
    ));
    let control_server = tokio::spawn(control(control_listener, cluster.clone(), stop_rx));

    shutdown.await;
    tracing::info!("stopping the cluster: nginx first, then instances and workers");
    let _ = stop_tx.send(true);
    let _ = health.await;
    let _ = scaling.await;
    let _ = control_server.await;
    // Wait for an operation in progress (a restart, a scale-in) to finish.
    let _op = cluster.ops.lock().await;
    let nginx = cluster.nginx.lock().expect("nginx lock").take();
    if let Some(nginx) = nginx {
        nginx.stop().await;
    }
    let members: Vec<Member> = std::mem::take(&mut *cluster.members.lock().expect("members"));
    futures_util::future::join_all(members.into_iter().map(|m| m.stop(STOP_GRACE))).await;
    Ok(())
}

impl Cluster {
    /// Instances in nginx's list.
    fn upstreams(&self) -> Vec<SocketAddr> {
        self.members
            .lock()
            .expect("members")
            .iter()
            .filter(|m| m.role == Role::Instance && m.state == State::Running)
            .map(|m| m.address)
            .collect()
    }

    fn spawn_spec(&self) -> Spawn<'_> {
        Spawn {
            coop_bin: &self.settings.coop_bin,
            state_dir: &self.settings.state_dir,
            env: &self.env,
            cpu_cap: self.settings.args.instance_cpu,
            cluster_name: &self.name,
        }
    }

    /// Starts `count` members of `role` and waits until they are ready; ready
    /// instances join nginx's list in one reload. Call with `ops` held.
    async fn start_members(&self, role: Role, count: u32) -> anyhow::Result<Vec<u32>> {
        let ready = self.launch(role, count).await?;
        if role == Role::Instance && !ready.is_empty() {
            self.reload_nginx(false).await?;
        }
        Ok(ready)
    }

    /// Starts `count` members and waits for them; the ready ones are marked
    /// running (the caller reloads nginx), the others stopped.
    async fn launch(&self, role: Role, count: u32) -> anyhow::Result<Vec<u32>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut started = Vec::new();
        for _ in 0..count {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let member = Member::spawn(&self.spawn_spec(), role, id)?;
            tracing::info!(id, role = ?role, address = %member.address, pid = member.pid(), "starting");
            started.push((id, member.address));
            self.members.lock().expect("members").push(member);
        }
        let probe = match role {
            Role::Instance => "/ready",
            Role::Worker => "/health",
        };
        let waits = started
            .iter()
            .map(|(id, address)| self.wait_ready(*id, *address, probe));
        let results = futures_util::future::join_all(waits).await;
        let mut ready = Vec::new();
        let mut failed = Vec::new();
        for ((id, _), result) in started.iter().zip(results) {
            match result {
                Ok(()) => ready.push(*id),
                Err(err) => {
                    tracing::error!(id, error = %err, "a new process did not become ready");
                    failed.push(*id);
                }
            }
        }
        {
            let mut members = self.members.lock().expect("members");
            for member in members.iter_mut().filter(|m| ready.contains(&m.id)) {
                member.state = State::Running;
                member.healthy = true;
            }
        }
        for member in self.take_members(&failed) {
            let _ = member.stop(Duration::from_secs(5)).await;
        }
        if ready.is_empty() {
            bail!(
                "no new {role:?} became ready; see the logs in {}",
                self.settings.state_dir.join("logs").display()
            );
        }
        Ok(ready)
    }

    /// Replaces member `old` by a new one: the new one is ready, then one nginx
    /// reload swaps them (each reload makes nginx retire its workers, which
    /// closes their idle client connections, so fewer reloads disturb clients
    /// less), then the old one is stopped once nginx sends it nothing more.
    async fn replace_one(&self, role: Role, old: u32) -> anyhow::Result<()> {
        self.launch(role, 1).await?;
        if role == Role::Instance {
            self.set_state(&[old], State::Draining);
            self.reload_nginx(true).await?;
        }
        let leaving = self.take_members(&[old]);
        futures_util::future::join_all(leaving.into_iter().map(|m| m.stop(STOP_GRACE))).await;
        Ok(())
    }

    fn set_state(&self, ids: &[u32], state: State) {
        let mut members = self.members.lock().expect("members");
        for member in members.iter_mut().filter(|m| ids.contains(&m.id)) {
            member.state = state;
        }
    }

    async fn wait_ready(&self, id: u32, address: SocketAddr, probe: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.settings.args.start_timeout;
        let url = format!("http://{address}{probe}");
        loop {
            if let Some(status) = self.exit_status(id) {
                bail!("process {id} exited during start-up ({status})");
            }
            if let Ok(response) = self.http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "process {id} did not answer {url} within {:?}",
                    self.settings.args.start_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exit_status(&self, id: u32) -> Option<std::process::ExitStatus> {
        let mut members = self.members.lock().expect("members");
        members.iter_mut().find(|m| m.id == id)?.exited()
    }

    fn take_members(&self, ids: &[u32]) -> Vec<Member> {
        let mut members = self.members.lock().expect("members");
        let (taken, kept): (Vec<Member>, Vec<Member>) = std::mem::take(&mut *members)
            .into_iter()
            .partition(|m| ids.contains(&m.id));
        *members = kept;
        taken
    }

    /// Rewrites nginx's upstream list from the running instances and reloads.
    /// With `wait`, returns only once no nginx worker runs the previous list.
    async fn reload_nginx(&self, wait: bool) -> anyhow::Result<()> {
        let upstreams = self.upstreams();
        let old_workers = {
            let nginx = self.nginx.lock().expect("nginx lock");
            match nginx.as_ref() {
                Some(nginx) => nginx.reload(&upstreams)?,
                None => return Ok(()),
            }
        };
        metrics::counter!("cluster_nginx_reloads_total").increment(1);
        if wait && !nginx::wait_retired(&old_workers, RETIRE_TIMEOUT).await {
            tracing::warn!("nginx workers with the old upstream list are still running");
        }
        Ok(())
    }

    /// Takes instances out of nginx's list, waits until nginx sends them nothing
    /// more, then stops them (they finish what they hold). Workers are simply
    /// stopped: SIGTERM makes them finish or release their jobs. Call with `ops` held.
    async fn drain(&self, ids: &[u32]) -> anyhow::Result<()> {
        let mut any_instance = false;
        {
            let mut members = self.members.lock().expect("members");
            for member in members.iter_mut().filter(|m| ids.contains(&m.id)) {
                any_instance |= member.role == Role::Instance;
                member.state = State::Draining;
            }
        }
        if any_instance {
            self.reload_nginx(true).await?;
        }
        let leaving = self.take_members(ids);
        for member in &leaving {
            tracing::info!(id = member.id, role = ?member.role, "drained; stopping");
        }
        let stops = leaving.into_iter().map(|m| m.stop(STOP_GRACE));
        futures_util::future::join_all(stops).await;
        Ok(())
    }

    /// Replaces every instance and then every worker, one at a time: the new
    /// one is ready (and in nginx's list) before the old one is drained.
    pub async fn rolling_restart(&self) -> anyhow::Result<RestartReport> {
        let _op = self.ops.lock().await;
        let begun = Instant::now();
        let mut replaced = 0;
        for role in [Role::Instance, Role::Worker] {
            let old: Vec<u32> = self
                .members
                .lock()
                .expect("members")
                .iter()
                .filter(|m| m.role == role && m.state == State::Running)
                .map(|m| m.id)
                .collect();
            for id in old {
                self.replace_one(role, id).await?;
                replaced += 1;
                tracing::info!(replaced, id, role = ?role, "replaced");
            }
        }
        metrics::counter!("cluster_restarts_total").increment(1);
        Ok(RestartReport {
            replaced,
            seconds: begun.elapsed().as_secs_f64(),
        })
    }

    async fn health_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let dead = self.check_health().await;
            if !dead.is_empty()
                && let Err(err) = self.replace(&dead).await
            {
                tracing::error!(error = %err, "could not replace failed processes");
            }
            let nginx_gone = self
                .nginx
                .lock()
                .expect("nginx lock")
                .as_mut()
                .is_some_and(Nginx::has_exited);
            if nginx_gone {
                tracing::error!("nginx has exited; see its log in the state folder");
            }
        }
    }

    /// Probes every running member; returns the ids of those that exited or
    /// failed `HEALTH_FAILURES` probes in a row.
    async fn check_health(&self) -> Vec<u32> {
        let probes = self.get_running("/health", Duration::from_secs(1)).await;
        let mut members = self.members.lock().expect("members");
        let mut dead = Vec::new();
        for member in members.iter_mut() {
            if let Some(status) = member.exited() {
                tracing::error!(id = member.id, role = ?member.role, %status, "process exited");
                dead.push(member.id);
                continue;
            }
            let Some((_, answer)) = probes.iter().find(|(id, _)| *id == member.id) else {
                continue;
            };
            if answer.is_some() {
                member.healthy = true;
                member.health_failures = 0;
            } else {
                member.healthy = false;
                member.health_failures += 1;
                if member.health_failures >= HEALTH_FAILURES {
                    tracing::error!(id = member.id, "failed its health checks; replacing it");
                    dead.push(member.id);
                }
            }
        }
        dead
    }

    /// Removes dead members (out of nginx's list at once, without waiting) and
    /// starts replacements up to the desired counts.
    async fn replace(&self, dead: &[u32]) -> anyhow::Result<()> {
        let _op = self.ops.lock().await;
        let removed = self.take_members(dead);
        let lost_instance = removed.iter().any(|m| m.role == Role::Instance);
        for member in removed {
            metrics::counter!("cluster_members_lost_total", "role" => role_label(member.role))
                .increment(1);
            // Already dead, or unhealthy: don't wait long for it.
            tokio::spawn(member.stop(Duration::from_secs(2)));
        }
        if lost_instance {
            self.reload_nginx(false).await?;
        }
        self.converge().await
    }

    /// Starts or drains members until the counts match `desired`.
    async fn converge(&self) -> anyhow::Result<()> {
        let desired = *self.desired.lock().expect("desired");
        for (role, want) in [
            (Role::Instance, desired.instances),
            (Role::Worker, desired.workers),
        ] {
            let (have, newest): (u32, Vec<u32>) = {
                let members = self.members.lock().expect("members");
                let mut ids: Vec<u32> = members
                    .iter()
                    .filter(|m| m.role == role && m.state != State::Draining)
                    .map(|m| m.id)
                    .collect();
                ids.sort_unstable_by(|a, b| b.cmp(a));
                (ids.len() as u32, ids)
            };
            if want > have {
                self.start_members(role, want - have).await?;
            } else if have > want {
                let leaving: Vec<u32> = newest.into_iter().take((have - want) as usize).collect();
                self.drain(&leaving).await?;
            }
        }
        Ok(())
    }

    async fn scaling_loop(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut serve_scaler: Autoscaler,
        mut worker_scaler: Autoscaler,
    ) {
        let interval = self.settings.args.scaling.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let readings = self.observe().await;
            self.export_member_metrics();
            if self.settings.args.no_autoscale {
                continue;
            }
            let now = self.started.elapsed();
            let current = *self.desired.lock().expect("desired");
            let serve = serve_scaler.decide(now, current.instances, &readings.serve);
            let worker = worker_scaler.decide(now, current.workers, &readings.worker);
            for decision in [&serve, &worker] {
                decision.log();
                decision.record_metrics();
                let mut kept = self.decisions.lock().expect("decisions");
                if let Ok(value) = serde_json::to_value(decision) {
                    kept.push_front(value);
                }
                kept.truncate(DECISIONS_KEPT);
            }
            if serve.desired == current.instances && worker.desired == current.workers {
                continue;
            }
            *self.desired.lock().expect("desired") = Desired {
                instances: serve.desired,
                workers: worker.desired,
            };
            // A restart in progress holds `ops`; converging waits for it.
            let _op = self.ops.lock().await;
            if let Err(err) = self.converge().await {
                tracing::error!(error = %err, "could not apply the auto-scaler's decision");
            }
        }
    }

    /// `GET path` on every running member at once: (member id, body of a 2xx
    /// answer within `timeout`, else None). The members lock is not held
    /// across the requests.
    async fn get_running(&self, path: &str, timeout: Duration) -> Vec<(u32, Option<String>)> {
        let targets: Vec<(u32, SocketAddr)> = self
            .members
            .lock()
            .expect("members")
            .iter()
            .filter(|m| m.state == State::Running)
            .map(|m| (m.id, m.address))
            .collect();
        let answers = futures_util::future::join_all(targets.iter().map(|(_, address)| {
            let request = self
                .http
                .get(format!("http://{address}{path}"))
                .bearer_auth(&self.metrics_token);
            async move {
                let response = tokio::time::timeout(timeout, request.send())
                    .await
                    .ok()?
                    .ok()?;
                if !response.status().is_success() {
                    return None;
                }
                tokio::time::timeout(timeout, response.text())
                    .await
                    .ok()?
                    .ok()
            }
        }))
        .await;
        targets.into_iter().map(|(id, _)| id).zip(answers).collect()
    }

    /// Scrapes every running member and returns the pools' signals.
    async fn observe(&self) -> PoolReadings {
        let scrapes = self.get_running("/metrics", Duration::from_secs(2)).await;
        let mut members = self.members.lock().expect("members");
        let mut latency = LatencyHistogram::default();
        let mut cpu = Vec::new();
        let mut ready_jobs: Option<f64> = None;
        let mut workers = 0u32;
        for member in members.iter_mut() {
            let Some((_, text)) = scrapes.iter().find(|(id, _)| *id == member.id) else {
                continue;
            };
            let delta = member.observe(text.as_deref());
            match member.role {
                Role::Instance => {
                    if let Some(delta) = delta {
                        latency.add(&delta);
                    }
                    if let Some(c) = member.load.cpu {
                        cpu.push(c);
                    }
                }
                Role::Worker => {
                    workers += 1;
                    // Every worker reports the same shared queue.
                    if let Some(jobs) = member.load.ready_jobs {
                        ready_jobs = Some(ready_jobs.unwrap_or(0.0).max(jobs));
                    }
                }
            }
        }
        let mut serve = Vec::new();
        if !cpu.is_empty() {
            serve.push(Reading::new(
                Signal::Cpu,
                cpu.iter().sum::<f64>() / cpu.len() as f64,
            ));
        }
        if let Some(p95) = latency.quantile(0.95) {
            serve.push(Reading::new(Signal::P95Latency, p95));
        }
        let mut worker = Vec::new();
        if let Some(jobs) = ready_jobs {
            worker.push(Reading::new(
                Signal::QueueDepthPerWorker,
                jobs / f64::from(workers.max(1)),
            ));
        }
        PoolReadings { serve, worker }
    }

    fn export_member_metrics(&self) {
        let members = self.members.lock().expect("members");
        for role in [Role::Instance, Role::Worker] {
            for state in [State::Starting, State::Running, State::Draining] {
                let n = members
                    .iter()
                    .filter(|m| m.role == role && m.state == state)
                    .count();
                metrics::gauge!(
                    "cluster_members",
                    "role" => role_label(role),
                    "state" => state_label(state)
                )
                .set(n as f64);
            }
        }
    }

    /// What `coop cluster status` shows.
    pub fn status(&self) -> Status {
        let members = self.members.lock().expect("members");
        let describe = |role: Role| -> Vec<MemberStatus> {
            members
                .iter()
                .filter(|m| m.role == role)
                .map(|m| MemberStatus {
                    id: m.id,
                    address: m.address,
                    pid: m.pid(),
                    state: m.state,
                    healthy: m.healthy,
                    uptime_seconds: m.started.elapsed().as_secs(),
                    load: m.load.clone(),
                    throttled_seconds: m.throttled_seconds(),
                })
                .collect()
        };
        Status {
            listen: self.settings.args.listen,
            nginx_pid: self
                .nginx
                .lock()
                .expect("nginx lock")
                .as_ref()
                .and_then(Nginx::pid),
            autoscale: !self.settings.args.no_autoscale,
            instance_cpu: self.settings.args.instance_cpu,
            desired: *self.desired.lock().expect("desired"),
            instances: describe(Role::Instance),
            workers: describe(Role::Worker),
            decisions: self
                .decisions
                .lock()
                .expect("decisions")
                .iter()
                .cloned()
                .collect(),
        }
    }
}

struct PoolReadings {
    serve: Vec<Reading>,
    worker: Vec<Reading>,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Instance => "instance",
        Role::Worker => "worker",
    }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Starting => "starting",
        State::Running => "running",
        State::Draining => "draining",
    }
}

#[derive(Serialize)]
pub struct RestartReport {
    pub replaced: u32,
    pub seconds: f64,
}

#[derive(Serialize)]
pub struct MemberStatus {
    pub id: u32,
    pub address: SocketAddr,
    pub pid: u32,
    pub state: State,
    pub healthy: bool,
    pub uptime_seconds: u64,
    pub load: Load,
    pub throttled_seconds: Option<f64>,
}

#[derive(Serialize)]
pub struct Status {
    pub listen: SocketAddr,
    pub nginx_pid: Option<u32>,
    pub autoscale: bool,
    pub instance_cpu: Option<f64>,
    pub desired: Desired,
    pub instances: Vec<MemberStatus>,
    pub workers: Vec<MemberStatus>,
    /// Newest first.
    pub decisions: Vec<serde_json::Value>,
}
