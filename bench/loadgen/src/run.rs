//! `run`: registration opens. Families arrive at a constant rate; each reads the
//! catalog, then for each child reads it again (one weekday, or all of it) and
//! enrolls the child, one think time apart. Browsing families read the catalog
//! at a second constant rate. Every request has an intended send time fixed in
//! advance, and its latency runs from that time to the end of its response.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::http::Api;
use crate::seed::WEEKDAYS;
use crate::util::{Result, Rng, fail, max_ms, own_cpu_ticks, quantile_ms};

#[derive(Args)]
pub struct RunArgs {
    /// Coop's base URL (one instance, or nginx in front of several): http://127.0.0.1:PORT.
    #[arg(long)]
    base: String,
    /// The state file written by `seed`.
    #[arg(long)]
    state: String,
    /// Families arriving per second (each enrolls its 1–3 children).
    #[arg(long)]
    rate: f64,
    /// Seconds during which families arrive (fewer if the seeded families run out).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Browsing catalog reads per second, as a multiple of --rate.
    #[arg(long, default_value_t = 2.0)]
    browse_per_family: f64,
    /// Pause between a family's steps, in milliseconds.
    #[arg(long, default_value_t = 250)]
    think_ms: u64,
    /// Share of the catalog reads that ask for one weekday (the rest read all classes).
    #[arg(long, default_value_t = 0.5)]
    weekday_share: f64,
    /// Share of the picks that go to the popular classes, full or not.
    #[arg(long, default_value_t = 0.3)]
    popular_share: f64,
    /// How many classes (the first seeded) are popular.
    #[arg(long, default_value_t = 25)]
    popular_classes: usize,
    /// Most requests in flight at once (more wait, and their wait counts).
    #[arg(long, default_value_t = 512)]
    max_inflight: usize,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Per-request timeout, seconds (counted as an error).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// After the arrivals end, seconds to wait for the last sessions.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Summary as JSON.
    #[arg(long)]
    out: Option<String>,
    /// Every placement: class child state position send_us done_us (tab-separated).
    #[arg(long)]
    placements: Option<String>,
}

struct Family {
    cookie: String,
    children: Vec<String>,
}

#[derive(Clone)]
struct Class {
    id: String,
    seats_left: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Catalog,
    Enroll,
}

struct Stats {
    hist: Histogram<u64>,
    sent: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    first_intended_us: u64,
    last_intended_us: u64,
    last_done_us: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 300_000_000, 3).expect("histogram bounds"),
            sent: 0,
            ok: 0,
            errors: BTreeMap::new(),
            samples: Vec::new(),
            first_intended_us: u64::MAX,
            last_intended_us: 0,
            last_done_us: 0,
        }
    }

    fn summary(&self) -> Value {
        let q = |p: f64| quantile_ms(&self.hist, p);
        json!({
            "sent": self.sent, "ok": self.ok,
            "errors": self.errors.values().sum::<u64>(), "errors_by_kind": self.errors,
            "error_samples": self.samples,
            "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "p999_ms": q(0.999),
            "max_ms": max_ms(&self.hist),
        })
    }
}

struct Shared {
    api: Api,
    start: Instant,
    slots: Semaphore,
    semester: String,
    classes: Vec<String>,
    popular: usize,
    popular_share: f64,
    weekday_share: f64,
    catalog: Mutex<Stats>,
    enroll: Mutex<Stats>,
    enrolled: AtomicU64,
    waitlisted: AtomicU64,
    placements: Mutex<Vec<String>>,
}

enum Outcome {
    Answered(crate::http::Answer),
    Failed,
}

impl Shared {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Sends one request at `intended` (or as soon after as a slot is free);
    /// latency from `intended` to the end of the response.
    async fn timed(
        &self,
        kind: Kind,
        intended: Instant,
        path: String,
        cookie: &str,
        body: Option<Value>,
    ) -> (Outcome, u64, u64) {
        tokio::time::sleep_until(intended).await;
        let _slot = self.slots.acquire().await.expect("semaphore open");
        let sent_at = Instant::now();
        let result = match &body {
            Some(b) => self.api.post(&path, Some(cookie), b).await,
            None => self.api.get(&path, Some(cookie)).await,
        };
        let done = Instant::now();
        let latency = done.saturating_duration_since(intended).as_micros() as u64;
        let stats = match kind {
            Kind::Catalog => &self.catalog,
            Kind::Enroll => &self.enroll,
        };
        let mut stats = stats.lock().unwrap();
        stats.sent += 1;
        let intended_us = self.micros(intended);
        stats.first_intended_us = stats.first_intended_us.min(intended_us);
        stats.last_intended_us = stats.last_intended_us.max(intended_us);
        let outcome = match result {
            Ok(answer) if (200..300).contains(&answer.status) => {
                stats.ok += 1;
                stats.hist.saturating_record(latency.max(1));
                stats.last_done_us = stats.last_done_us.max(self.micros(done));
                Outcome::Answered(answer)
            }
            Ok(answer) => {
                *stats
                    .errors
                    .entry(format!("http {}", answer.status))
                    .or_default() += 1;
                if stats.samples.len() < 5 {
                    stats
                        .samples
                        .push(format!("{} {path}: {}", answer.status, answer.snippet()));
                }
                Outcome::Failed
            }
            Err(err) => {
                let what = if format!("{err:?}").contains("TimedOut") {
                    "timeout"
                } else {
                    "transport"
                };
                *stats.errors.entry(what.to_owned()).or_default() += 1;
                if stats.samples.len() < 5 {
                    stats.samples.push(format!("{path}: {err}"));
                }
                Outcome::Failed
            }
        };
        (outcome, self.micros(sent_at), self.micros(done))
    }

    fn catalog_path(&self, rng: &mut Rng) -> String {
        if rng.unit() < self.weekday_share {
            format!(
                "/api/v1/semesters/{}/classes?weekday={}",
                self.semester,
                WEEKDAYS[rng.below(WEEKDAYS.len())]
            )
        } else {
            format!("/api/v1/semesters/{}/classes", self.semester)
        }
    }

    /// One catalog read; parsed only when the caller picks classes from it.
    async fn read_catalog(
        &self,
        intended: Instant,
        cookie: &str,
        rng: &mut Rng,
        parse: bool,
    ) -> Vec<Class> {
        let path = self.catalog_path(rng);
        match self
            .timed(Kind::Catalog, intended, path, cookie, None)
            .await
            .0
        {
            Outcome::Answered(answer) if parse => parse_catalog(&answer.json()),
            _ => Vec::new(),
        }
    }

    fn pick(&self, seen: &[Class], rng: &mut Rng, taken: &[String]) -> String {
        let fresh = |id: &String| !taken.contains(id);
        if rng.unit() < self.popular_share {
            return self.classes[rng.below(self.popular.min(self.classes.len()))].clone();
        }
        let open: Vec<&Class> = seen
            .iter()
            .filter(|c| c.seats_left > 0 && fresh(&c.id))
            .collect();
        if !open.is_empty() {
            return open[rng.below(open.len())].id.clone();
        }
        if !seen.is_empty() {
            return seen[rng.below(seen.len())].id.clone();
        }
        self.classes[rng.below(self.classes.len())].clone()
    }

    async fn family(self: Arc<Self>, family: Arc<Family>, t0: Instant, think: Duration, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut seen = self.read_catalog(t0, &family.cookie, &mut rng, true).await;
        let mut taken: Vec<String> = Vec::new();
        for (k, child) in family.children.iter().enumerate() {
            let k = k as u32;
            let read_at = t0 + think * (1 + 2 * k);
            let fresh = self
                .read_catalog(read_at, &family.cookie, &mut rng, true)
                .await;
            if !fresh.is_empty() {
                seen = fresh;
            }
            let class = self.pick(&seen, &mut rng, &taken);
            let enroll_at = t0 + think * (2 + 2 * k);
            let path = format!("/api/v1/classes/{class}/enrollments");
            let (outcome, sent_us, done_us) = self
                .timed(
                    Kind::Enroll,
                    enroll_at,
                    path,
                    &family.cookie,
                    Some(json!({"child_id": child})),
                )
                .await;
            if let Outcome::Answered(answer) = outcome {
                let placed = answer.json();
                let state = placed["state"].as_str().unwrap_or("?").to_owned();
                match state.as_str() {
                    "enrolled" => self.enrolled.fetch_add(1, Ordering::Relaxed),
                    "waitlisted" => self.waitlisted.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                let position = placed["position"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), |p| p.to_string());
                self.placements.lock().unwrap().push(format!(
                    "{class}\t{child}\t{state}\t{position}\t{sent_us}\t{done_us}\t{}",
                    answer.status
                ));
            }
            taken.push(class);
        }
    }
}

fn parse_catalog(catalog: &Value) -> Vec<Class> {
    catalog["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| {
                    Some(Class {
                        id: c["class_id"].as_str()?.to_owned(),
                        seats_left: c["seats_left"].as_i64().unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate <= 10_000.0) {
        return fail("--rate must be in (0, 10000]");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return fail("--duration must be in (0, 3600]");
    }
    let state: Value = serde_json::from_slice(&std::fs::read(&args.state)?)?;
    let semester = state["semester_id"].as_str().unwrap_or_default().to_owned();
    let classes: Vec<String> = state["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let families: Vec<Arc<Family>> = state["families"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(Arc::new(Family {
                cookie: f["cookie"].as_str()?.to_owned(),
                children: f["children"]
                    .as_array()?
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
            }))
        })
        .collect();
    if semester.is_empty() || classes.is_empty() || families.is_empty() {
        return fail(format!("{}: no semester, classes or families", args.state));
    }

    let api = Api::new(
        &args.base,
        args.max_inflight,
        Duration::from_secs(args.timeout),
    )?;
    // Open the connections before the clock starts (and check the base answers).
    {
        let probe = api
            .get(
                &format!("/api/v1/semesters/{semester}"),
                Some(&families[0].cookie),
            )
            .await?;
        if probe.status != 200 {
            return fail(format!(
                "GET /api/v1/semesters/{semester}: {} {}",
                probe.status,
                probe.snippet()
            ));
        }
        let warm: Vec<_> = (0..args.max_inflight.min(32))
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { api.get("/health", None).await.map(|a| a.status) })
            })
            .collect();
        for w in warm {
            let _ = w.await;
        }
    }

    let cpu_before = own_cpu_ticks();
    let arrivals = ((args.rate * args.duration).round() as usize).min(families.len());
    let arrival_secs = arrivals as f64 / args.rate;
    let browse_rate = args.rate * args.browse_per_family;
    let browses = (browse_rate * arrival_secs).round() as usize;
    let think = Duration::from_millis(args.think_ms);
    let start = Instant::now() + Duration::from_millis(200);
    let shared = Arc::new(Shared {
        api,
        start,
        slots: Semaphore::new(args.max_inflight.max(1)),
        semester,
        popular: args.popular_classes.max(1),
        popular_share: args.popular_share,
        weekday_share: args.weekday_share,
        classes,
        catalog: Mutex::new(Stats::new()),
        enroll: Mutex::new(Stats::new()),
        enrolled: AtomicU64::new(0),
        waitlisted: AtomicU64::new(0),
        placements: Mutex::new(Vec::new()),
    });
    eprintln!(
        "run: {arrivals} families at {}/s over {arrival_secs:.1}s, {browses} browsing catalog reads at {browse_rate:.1}/s, think {}ms",
        args.rate, args.think_ms
    );

    let mut tasks = tokio::task::JoinSet::new();
    for (i, family) in families.iter().take(arrivals).enumerate() {
        let t0 = start + Duration::from_secs_f64(i as f64 / args.rate);
        tasks.spawn(shared.clone().family(
            family.clone(),
            t0,
            think,
            args.seed.wrapping_mul(1_000_003) + i as u64,
        ));
    }
    for j in 0..browses {
        let intended = start + Duration::from_secs_f64(j as f64 / browse_rate);
        let shared = shared.clone();
        let mut rng = Rng::new(args.seed.wrapping_mul(7_777_777) + j as u64);
        let family = families[rng.below(families.len())].clone();
        tasks.spawn(async move {
            shared
                .read_catalog(intended, &family.cookie, &mut rng, false)
                .await;
        });
    }
    let deadline =
        start + Duration::from_secs_f64(arrival_secs) + think * 8 + Duration::from_secs(args.drain);
    let mut unfinished = 0usize;
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

    let enroll = shared.enroll.lock().unwrap();
    let catalog = shared.catalog.lock().unwrap();
    let enrolled = shared.enrolled.load(Ordering::Relaxed);
    let waitlisted = shared.waitlisted.load(Ordering::Relaxed);
    // Enrollments per second: successful enrollments over the time from the
    // first intended enrollment to the last successful answer.
    let window = (enroll.last_done_us.saturating_sub(enroll.first_intended_us)) as f64 / 1e6;
    let offered_window = (enroll
        .last_intended_us
        .saturating_sub(enroll.first_intended_us)) as f64
        / 1e6;
    let expected_enrolls: usize = families
        .iter()
        .take(arrivals)
        .map(|f| f.children.len())
        .sum();
    let summary = json!({
        "rate": args.rate,
        "families": arrivals,
        "arrival_secs": arrival_secs,
        "browse_rate": browse_rate,
        "think_ms": args.think_ms,
        "wall_secs": wall,
        "cpu_ticks": own_cpu_ticks().saturating_sub(cpu_before),
        "unfinished_sessions": unfinished,
        "expected_enrollments": expected_enrolls,
        "enrollments_per_sec": if window > 0.0 { enroll.ok as f64 / window } else { 0.0 },
        "offered_enrollments_per_sec": if offered_window > 0.0 { enroll.sent as f64 / offered_window } else { 0.0 },
        "enrolled": enrolled,
        "waitlisted": waitlisted,
        "enroll": enroll.summary(),
        "catalog": catalog.summary(),
    });
    let missing = expected_enrolls as u64 - enroll.sent.min(expected_enrolls as u64);
    if let Some(path) = &args.placements {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for line in shared.placements.lock().unwrap().iter() {
            writeln!(file, "{line}")?;
        }
        file.flush()?;
    }
    let text = serde_json::to_string_pretty(&summary)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &text)?;
    }
    println!("{text}");
    let errors = enroll.errors.values().sum::<u64>() + catalog.errors.values().sum::<u64>();
    if errors > 0 || unfinished > 0 || missing > 0 {
        eprintln!(
            "run: {errors} failed requests, {unfinished} sessions unfinished, {missing} enrollments never sent"
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
