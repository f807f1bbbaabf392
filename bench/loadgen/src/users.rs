//! `users`: N people using Coop at once, each on their own device — their own
//! session and their own keep-alive connection — with a think time between
//! requests (exponential, mean `--think-ms`, so each user sends about one
//! request per `--think-ms` and the N users together about N per second).
//!
//! Open loop: a user's intended send times are drawn in advance, not after
//! each answer, so a slow answer never slows the arrivals down. A request
//! whose intended time has come while the user's previous one is still
//! running waits for it (one connection, as a browser tab does), and its
//! latency still runs from its intended time: queueing anywhere (in the
//! kernel's accept queue, in Coop, in this generator) shows in the figures.
//! A user connects at its first intended send, so that first request's
//! latency includes the TCP handshake: a burst of connections that overflows
//! the server's accept queue shows as the 1 s SYN retransmission.
//!
//! Why a generator of our own and not oha: oha spreads one request template
//! over its connections; it cannot give each connection its own session
//! and a sequence of different requests (a family reading its own record,
//! enrolling its own child). oha stays useful as a second opinion for one
//! route. Why hyper's client connection and not reqwest: one bare HTTP/1.1
//! connection per user is exactly the shape wanted, without a pool, and
//! with 10,000 users the generator's own CPU and memory must stay small
//! beside the server's (the run reports its CPU).
//!
//! The mix: most users are families (`--coordinators` are not), who open
//! their home page, read the catalog (half the time one weekday's classes),
//! read their family's record or its enrollments, and now and then
//! (`--write-share`) enroll a child in a class or drop it again.
//! Coordinators list the families and open one.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, COOKIE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::{Api, check_loopback};
use crate::seed::{COORDINATOR_PASSWORD, WEEKDAYS};
use crate::util::{Result, Rng, fail, max_ms, own_cpu_ticks, quantile_ms};

#[derive(Args)]
pub struct UsersArgs {
    /// Coop's base URL (one instance, or nginx in front of several): http://127.0.0.1:PORT.
    #[arg(long)]
    base: String,
    /// The state file written by `seed` (one family session per family user).
    #[arg(long)]
    state: String,
    /// Users at once, each with its own session and connection.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Of them, coordinators (each signs in for a session of its own before
    /// the clock starts). Default: 1 in 100, at least 1.
    #[arg(long)]
    coordinators: Option<usize>,
    /// Seconds of arrivals.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Mean think time between a user's requests, in milliseconds (exponential).
    #[arg(long, default_value_t = 1000)]
    think_ms: u64,
    /// Share of a family's requests that enroll a child or drop it again.
    #[arg(long, default_value_t = 0.05)]
    write_share: f64,
    /// The target is not Coop (nginx serving a static file, the ceiling):
    /// coordinators do not sign in, and nobody writes.
    #[arg(long)]
    static_target: bool,
    /// Per-request timeout, seconds (counted as an error; the user reconnects).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Summary as JSON.
    #[arg(long)]
    out: Option<String>,
}

/// What a request is, for the per-kind figures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Home,
    Catalog,
    Family,
    Enrollments,
    Enroll,
    Drop,
    FamilyList,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Home,
        Kind::Catalog,
        Kind::Family,
        Kind::Enrollments,
        Kind::Enroll,
        Kind::Drop,
        Kind::FamilyList,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Home => "home page (GET /home)",
            Kind::Catalog => "catalog (GET /api/v1/semesters/{id}/classes)",
            Kind::Family => "family record (GET /api/v1/families/{id})",
            Kind::Enrollments => "family's enrollments (GET /api/v1/families/{id}/enrollments)",
            Kind::Enroll => "enroll (POST /api/v1/classes/{id}/enrollments)",
            Kind::Drop => "drop (DELETE /api/v1/classes/{id}/enrollments/{child})",
            Kind::FamilyList => "coordinator's family list (GET /api/v1/families)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Home => "home",
            Kind::Catalog => "catalog",
            Kind::Family => "family",
            Kind::Enrollments => "enrollments",
            Kind::Enroll => "enroll",
            Kind::Drop => "drop",
            Kind::FamilyList => "family_list",
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// Figures for one kind of request (or all of them).
struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    fn summary(&self) -> Value {
        let q = |p: f64| quantile_ms(&self.hist, p);
        json!({
            "ok": self.ok,
            "errors": self.errors.values().sum::<u64>(),
            "errors_by_kind": self.errors,
            "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "p999_ms": q(0.999),
            "max_ms": max_ms(&self.hist),
        })
    }
}

/// What every user shares: the target and the figures.
struct Shared {
    address: String,
    host: String,
    semester: String,
    classes: Vec<String>,
    write_share: f64,
    timeout: Duration,
    /// Per kind, merged into `all` at the end. One lock per kind: with 10,000
    /// requests a second a record takes well under a microsecond.
    stats: Vec<Mutex<Stats>>,
    connects: Mutex<Histogram<u64>>,
    /// Successful requests again, from when each was actually sent: the
    /// difference to the main figures is time spent waiting to be sent
    /// (the user's previous request, the timer's 1 ms grain, this generator).
    from_send: Mutex<Histogram<u64>>,
    samples: Mutex<Vec<String>>,
    open: Arc<AtomicUsize>,
    max_open: AtomicUsize,
    connections: AtomicU64,
    /// Requests sent more than 5 ms after their intended time: the user's
    /// previous request was still running (or this generator fell behind).
    late: AtomicU64,
}

/// One user: a family (its cookie, id and children) or a coordinator.
struct User {
    cookie: String,
    role: Role,
}

enum Role {
    Family {
        id: String,
        /// Each child, with the class it is enrolled in by this run (if any).
        children: Vec<(String, Option<String>)>,
    },
    Coordinator {
        families: Arc<Vec<String>>,
    },
}

struct Call {
    kind: Kind,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    /// For an enroll or a drop: the child, and its class before the call
    /// (what to go back to if the call fails).
    undo: Option<(usize, Option<String>)>,
}

impl User {
    fn next_call(&mut self, shared: &Shared, rng: &mut Rng) -> Call {
        let get = |kind, path: String| Call {
            kind,
            method: Method::GET,
            path,
            body: None,
            undo: None,
        };
        match &mut self.role {
            Role::Coordinator { families } => {
                if rng.unit() < 0.7 {
                    get(Kind::FamilyList, "/api/v1/families?limit=50".to_owned())
                } else {
                    let id = &families[rng.below(families.len())];
                    get(Kind::Family, format!("/api/v1/families/{id}"))
                }
            }
            Role::Family { id, children } => {
                if !children.is_empty() && rng.unit() < shared.write_share {
                    let k = rng.below(children.len());
                    let (child, enrolled) = &mut children[k];
                    return match enrolled.take() {
                        Some(class) => Call {
                            kind: Kind::Drop,
                            method: Method::DELETE,
                            path: format!("/api/v1/classes/{class}/enrollments/{child}"),
                            body: None,
                            undo: Some((k, Some(class))),
                        },
                        None => {
                            let class = shared.classes[rng.below(shared.classes.len())].clone();
                            let call = Call {
                                kind: Kind::Enroll,
                                method: Method::POST,
                                path: format!("/api/v1/classes/{class}/enrollments"),
                                body: Some(
                                    serde_json::to_vec(&json!({"child_id": child}))
                                        .unwrap_or_default(),
                                ),
                                undo: Some((k, None)),
                            };
                            *enrolled = Some(class);
                            call
                        }
                    };
                }
                let pick = rng.unit();
                if pick < 0.25 {
                    get(Kind::Home, "/home".to_owned())
                } else if pick < 0.60 {
                    let path = if rng.unit() < 0.5 {
                        format!(
                            "/api/v1/semesters/{}/classes?weekday={}",
                            shared.semester,
                            WEEKDAYS[rng.below(WEEKDAYS.len())]
                        )
                    } else {
                        format!("/api/v1/semesters/{}/classes", shared.semester)
                    };
                    get(Kind::Catalog, path)
                } else if pick < 0.80 {
                    get(Kind::Family, format!("/api/v1/families/{id}"))
                } else {
                    get(
                        Kind::Enrollments,
                        format!("/api/v1/families/{id}/enrollments"),
                    )
                }
            }
        }
    }

    /// A call that failed did not change what is enrolled: undo the guess.
    fn failed(&mut self, call: &Call) {
        if let (Role::Family { children, .. }, Some((k, before))) = (&mut self.role, &call.undo) {
            children[*k].1 = before.clone();
        }
    }
}

/// Exponential with mean `mean` (inverse transform), capped at 20 means.
fn exponential(rng: &mut Rng, mean: Duration) -> Duration {
    let u = 1.0 - rng.unit(); // (0, 1]
    mean.mul_f64((-u.ln()).min(20.0))
}

impl Shared {
    fn record(&self, kind: Kind, latency_us: u64, outcome: std::result::Result<(), String>) {
        let mut stats = self.stats[kind as usize].lock().unwrap();
        match outcome {
            Ok(()) => {
                stats.ok += 1;
                stats.hist.saturating_record(latency_us.max(1));
            }
            Err(what) => {
                let key = what.split(':').next().unwrap_or("error").to_owned();
                *stats.errors.entry(key).or_default() += 1;
                drop(stats);
                let mut samples = self.samples.lock().unwrap();
                if samples.len() < 10 {
                    samples.push(format!("{}: {what}", kind.key()));
                }
            }
        }
    }

    async fn connect(&self) -> std::result::Result<SendRequest<Full<Bytes>>, String> {
        let started = Instant::now();
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| format!("handshake: {err}"))?;
        self.connects
            .lock()
            .unwrap()
            .saturating_record((started.elapsed().as_micros() as u64).max(1));
        self.connections.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_open.fetch_max(open, Ordering::Relaxed);
        let open = self.open.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(sender)
    }

    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        cookie: &str,
        call: &Call,
    ) -> std::result::Result<(), String> {
        sender
            .ready()
            .await
            .map_err(|err| format!("transport: {err}"))?;
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header(HOST, &self.host)
            .header(COOKIE, cookie)
            .header(ACCEPT, "application/json");
        if call.body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(
                call.body.clone().unwrap_or_default(),
            )))
            .map_err(|err| format!("request: {err}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("transport: {err}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("transport: {err}"))?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "http {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    }

    /// One user's session: requests at its intended times until `end`.
    async fn user(
        self: Arc<Self>,
        mut user: User,
        start: Instant,
        end: Instant,
        think: Duration,
        seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        // A random phase within one think time: the users' first requests
        // (and connections) spread over the first second, not all at once.
        let mut intended = start + think.mul_f64(rng.unit());
        let mut sender: Option<SendRequest<Full<Bytes>>> = None;
        while intended < end {
            let call = user.next_call(&self, &mut rng);
            tokio::time::sleep_until(intended).await;
            let sent_at = Instant::now();
            if sent_at.saturating_duration_since(intended) > Duration::from_millis(5) {
                self.late.fetch_add(1, Ordering::Relaxed);
            }
            let attempt = async {
                if sender.as_ref().is_none_or(SendRequest::is_closed) {
                    sender = Some(self.connect().await?);
                }
                let connection = sender.as_mut().expect("connected above");
                self.send(connection, &user.cookie, &call).await
            };
            let outcome = match tokio::time::timeout(self.timeout, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err("timeout".to_owned()),
            };
            if outcome.is_err() {
                user.failed(&call);
                if outcome.as_ref().is_err_and(|e| !e.starts_with("http ")) {
                    // The connection's state is unknown: start a new one.
                    sender = None;
                }
            }
            let done = Instant::now();
            if outcome.is_ok() {
                let service = done.saturating_duration_since(sent_at).as_micros() as u64;
                self.from_send
                    .lock()
                    .unwrap()
                    .saturating_record(service.max(1));
            }
            let latency = done.saturating_duration_since(intended).as_micros() as u64;
            self.record(call.kind, latency, outcome);
            intended += exponential(&mut rng, think);
        }
    }
}

pub async fn users(args: UsersArgs) -> Result<ExitCode> {
    if args.users == 0 || args.users > 100_000 {
        return fail("--users must be in 1..=100000");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return fail("--duration must be in (0, 3600]");
    }
    if !(0.0..=1.0).contains(&args.write_share) {
        return fail("--write-share must be in [0, 1]");
    }
    let base = check_loopback(&args.base)?;
    let host = base.trim_start_matches("http://").to_owned();
    let address = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:80")
    };
    let state: Value = serde_json::from_slice(&std::fs::read(&args.state)?)?;
    let semester = state["semester_id"].as_str().unwrap_or_default().to_owned();
    let classes: Vec<String> = state["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let families: Vec<&Value> = state["families"].as_array().into_iter().flatten().collect();
    let family_ids: Arc<Vec<String>> = Arc::new(
        families
            .iter()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect(),
    );
    let coordinators = args
        .coordinators
        .unwrap_or((args.users / 100).max(1))
        .min(args.users);
    let family_users = args.users - coordinators;
    if semester.is_empty() || classes.is_empty() || family_ids.is_empty() {
        return fail(format!("{}: no semester, classes or families", args.state));
    }
    if families.len() < family_users {
        return fail(format!(
            "{}: {} families with sessions, {family_users} family users asked for (seed more)",
            args.state,
            families.len()
        ));
    }
    let mut users: Vec<User> = Vec::with_capacity(args.users);
    for family in families.iter().take(family_users) {
        let (Some(cookie), Some(id)) = (family["cookie"].as_str(), family["id"].as_str()) else {
            return fail(format!("{}: a family without cookie or id", args.state));
        };
        let children = family["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(|c| (c.to_owned(), None)))
            .collect();
        users.push(User {
            cookie: cookie.to_owned(),
            role: Role::Family {
                id: id.to_owned(),
                children,
            },
        });
    }

    // Coordinators sign in now, each for a session of its own (an argon2
    // verification each: done before the clock starts).
    let email = state["coordinator_email"].as_str().unwrap_or_default();
    let api = Api::new(&base, 4, Duration::from_secs(60))?;
    let mut logins = tokio::task::JoinSet::new();
    if args.static_target {
        for _ in 0..coordinators {
            users.push(User {
                cookie: format!("{}=static-target", crate::http::SESSION_COOKIE),
                role: Role::Coordinator {
                    families: family_ids.clone(),
                },
            });
        }
    }
    for _ in 0..if args.static_target { 0 } else { coordinators } {
        let api = api.clone();
        let body = json!({"email": email, "password": COORDINATOR_PASSWORD});
        logins.spawn(async move { api.post("/api/v1/auth/login", None, &body).await });
        while logins.len() >= 4 {
            push_coordinator(&mut users, &family_ids, logins.join_next().await)?;
        }
    }
    while let Some(done) = logins.join_next().await {
        push_coordinator(&mut users, &family_ids, Some(done))?;
    }
    drop(api);

    let shared = Arc::new(Shared {
        address,
        host,
        semester,
        classes,
        write_share: if args.static_target {
            0.0
        } else {
            args.write_share
        },
        timeout: Duration::from_secs(args.timeout),
        stats: Kind::ALL.iter().map(|_| Mutex::new(Stats::new())).collect(),
        connects: Mutex::new(histogram()),
        from_send: Mutex::new(histogram()),
        samples: Mutex::new(Vec::new()),
        open: Arc::new(AtomicUsize::new(0)),
        max_open: AtomicUsize::new(0),
        connections: AtomicU64::new(0),
        late: AtomicU64::new(0),
    });
    let think = Duration::from_millis(args.think_ms.max(1));
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + Duration::from_secs_f64(args.duration);
    eprintln!(
        "users: {} users ({family_users} families, {coordinators} coordinators), think {} ms, about {:.0} requests/s for {}s",
        args.users,
        args.think_ms,
        args.users as f64 * 1000.0 / think.as_millis() as f64,
        args.duration
    );
    let cpu_before = own_cpu_ticks();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in users.into_iter().enumerate() {
        tasks.spawn(shared.clone().user(
            user,
            start,
            end,
            think,
            args.seed.wrapping_mul(1_000_003) + i as u64,
        ));
    }
    let deadline = end + Duration::from_secs(args.timeout + 5);
    let mut unfinished = 0;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                unfinished = tasks.len();
                tasks.abort_all();
                break;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_ticks = own_cpu_ticks().saturating_sub(cpu_before);
    let clk_tck = 100.0; // Linux's USER_HZ for /proc/*/stat on every common platform

    let mut all = Stats::new();
    let mut kinds = serde_json::Map::new();
    for kind in Kind::ALL {
        let stats = shared.stats[kind as usize].lock().unwrap();
        if stats.ok == 0 && stats.errors.is_empty() {
            continue;
        }
        all.hist.add(&stats.hist).expect("same bounds");
        all.ok += stats.ok;
        for (k, v) in &stats.errors {
            *all.errors.entry(k.clone()).or_default() += v;
        }
        let mut summary = stats.summary();
        summary["what"] = json!(kind.name());
        kinds.insert(kind.key().to_owned(), summary);
    }
    let connects = shared.connects.lock().unwrap();
    let from_send = shared.from_send.lock().unwrap();
    let ms = quantile_ms;
    let sent = all.ok + all.errors.values().sum::<u64>();
    let summary = json!({
        "users": args.users,
        "family_users": family_users,
        "coordinators": coordinators,
        "think_ms": args.think_ms,
        "duration_secs": args.duration,
        "write_share": args.write_share,
        "wall_secs": wall,
        "sent": sent,
        "requests_per_sec": sent as f64 / args.duration,
        "all": all.summary(),
        "kinds": kinds,
        "connections_opened": shared.connections.load(Ordering::Relaxed),
        "max_open_connections": shared.max_open.load(Ordering::Relaxed),
        "from_send_p50_ms": ms(&from_send, 0.5),
        "from_send_p99_ms": ms(&from_send, 0.99),
        "from_send_p999_ms": ms(&from_send, 0.999),
        "connect_p50_ms": ms(&connects, 0.5),
        "connect_p99_ms": ms(&connects, 0.99),
        "connect_max_ms": ms(&connects, 1.0),
        "late_sends": shared.late.load(Ordering::Relaxed),
        "unfinished_users": unfinished,
        "loadgen_cpu_pct": cpu_ticks as f64 / clk_tck / wall * 100.0,
        "error_samples": *shared.samples.lock().unwrap(),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &text)?;
    }
    println!("{text}");
    let errors = all.errors.values().sum::<u64>();
    if errors > 0 || unfinished > 0 {
        eprintln!("users: {errors} failed requests, {unfinished} users unfinished");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn push_coordinator(
    users: &mut Vec<User>,
    families: &Arc<Vec<String>>,
    done: Option<std::result::Result<Result<crate::http::Answer>, tokio::task::JoinError>>,
) -> Result<()> {
    let Some(done) = done else { return Ok(()) };
    let answer = done??;
    if answer.status != 200 {
        return fail(format!(
            "coordinator login: {} {}",
            answer.status,
            answer.snippet()
        ));
    }
    let Some(cookie) = answer.cookie else {
        return fail("coordinator login: no session cookie");
    };
    users.push(User {
        cookie,
        role: Role::Coordinator {
            families: families.clone(),
        },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times_average_their_mean() {
        let mut rng = Rng::new(7);
        let mean = Duration::from_millis(1000);
        let n = 100_000;
        let total: f64 = (0..n)
            .map(|_| exponential(&mut rng, mean).as_secs_f64())
            .sum();
        let average = total / n as f64;
        assert!((0.97..1.03).contains(&average), "{average}");
    }
}
