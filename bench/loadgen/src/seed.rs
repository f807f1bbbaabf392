//! `seed`: a co-op with one semester, its classes, and families that each
//! accepted their own invite (so each has a real session) and added children.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::http::{Answer, Api, check_loopback};
use crate::smtp;
use crate::util::{Result, date, fail, rfc3339, unix_now};

pub const WEEKDAYS: [&str; 5] = ["monday", "tuesday", "wednesday", "thursday", "friday"];
const FAMILY_PASSWORD: &str = "family password 1";
/// The seeded coordinator's password (`users` signs coordinators in with it).
pub const COORDINATOR_PASSWORD: &str = "bench coordinator password";

#[derive(Args)]
pub struct SeedArgs {
    /// Coop's base URL: http://127.0.0.1:PORT.
    #[arg(long)]
    base: String,
    /// Where to receive Coop's emails (give Coop COOP_SMTP_URL=smtp://this).
    #[arg(long)]
    smtp_listen: String,
    #[arg(long, default_value_t = 5000)]
    families: usize,
    /// Children in all, spread 1–3 per family.
    #[arg(long, default_value_t = 10_000)]
    children: usize,
    #[arg(long, default_value_t = 250)]
    classes: usize,
    #[arg(long, default_value_t = 12)]
    capacity: u32,
    #[arg(long, default_value_t = 4500)]
    fee_cents: u32,
    /// Parallel connections for creating families, classes and children.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Parallel invite acceptances (each hashes a password with argon2id).
    #[arg(long, default_value_t = 4)]
    accept_concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The state file `run` reads (JSON).
    #[arg(long)]
    out: String,
}

/// 1–3 children per family (1, 2, 3, 1, 2, 3, …), adjusted to `total`.
fn child_counts(families: usize, total: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = (0..families).map(|i| 1 + i % 3).collect();
    let mut sum: usize = counts.iter().sum();
    let mut i = 0;
    while sum < total && counts.iter().any(|&c| c < 3) {
        if counts[i % families] < 3 {
            counts[i % families] += 1;
            sum += 1;
        }
        i += 1;
    }
    while sum > total && counts.iter().any(|&c| c > 1) {
        if counts[i % families] > 1 {
            counts[i % families] -= 1;
            sum -= 1;
        }
        i += 1;
    }
    counts
}

/// A POST, sent again (up to 3 times) when it fails before any answer: a
/// keep-alive connection the server closed just as the request went out. In
/// the rare case the server had processed it, a family gets a duplicate child
/// that the runs never use.
async fn post(api: &Api, path: &str, cookie: Option<&str>, body: &Value) -> Result<Answer> {
    let mut tries = 0;
    loop {
        match api.post(path, cookie, body).await {
            Ok(answer) => return Ok(answer),
            Err(err) if tries < 3 => {
                tries += 1;
                eprintln!("seed: POST {path}: {err:?}; sending it again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

fn expect(answer: &Answer, want: u16, what: &str) -> Result<Value> {
    if answer.status != want {
        return fail(format!(
            "{what}: expected {want}, got {}: {}",
            answer.status,
            answer.snippet()
        ));
    }
    Ok(answer.json())
}

fn field(value: &Value, pointer: &str, what: &str) -> Result<String> {
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(s) => Ok(s.to_owned()),
        None => fail(format!("{what}: no {pointer} in {value}")),
    }
}

pub async fn seed(args: SeedArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    if args.families == 0 || args.classes == 0 {
        return fail("--families and --classes must be positive");
    }
    if !args.smtp_listen.starts_with("127.0.0.1:") {
        return fail("--smtp-listen must be 127.0.0.1:PORT");
    }
    check_loopback(&args.base)?;
    let api = Api::new(&args.base, 64, Duration::from_secs(30))?;

    let listener = TcpListener::bind(&args.smtp_listen).await?;
    let (invite_tx, mut invite_rx) = mpsc::unbounded_channel();
    tokio::spawn(smtp::serve(listener, invite_tx));

    // The co-op and its coordinator.
    let run = format!(
        "{:08x}",
        crate::util::Rng::new(unix_now() as u64).next_u64() as u32
    );
    let coordinator_email = format!("coordinator-{run}@example.org");
    let password = COORDINATOR_PASSWORD;
    let created = api
        .post(
            "/api/v1/coops",
            None,
            &json!({"name": "Enrollment Day Co-op",
                    "coordinator": {"name": "Bench Coordinator", "email": coordinator_email,
                                    "password": password}}),
        )
        .await?;
    // 202: the co-op works at once, but its invites wait until the founder
    // confirms the address with the code the first email carries.
    expect(&created, 202, "POST /api/v1/coops")?;
    let code = loop {
        match tokio::time::timeout_at(deadline.into(), invite_rx.recv()).await {
            Ok(Some((to, code))) if to == coordinator_email => break code,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return fail("no confirmation email for the co-op's founder"),
        }
    };
    let confirmed = api
        .post("/api/v1/auth/verify-email", None, &json!({"token": code}))
        .await?;
    if confirmed.status != 204 {
        return fail(format!(
            "POST /api/v1/auth/verify-email: {} {}",
            confirmed.status,
            confirmed.snippet()
        ));
    }
    let login = api
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": coordinator_email, "password": password}),
        )
        .await?;
    let coop_id = field(
        &expect(&login, 200, "POST /api/v1/auth/login")?,
        "/user/coop_id",
        "co-op",
    )?;
    let Some(coordinator) = login.cookie.clone() else {
        return fail("login: no session cookie");
    };

    // A semester whose registration is open (since an hour ago).
    let now = unix_now();
    let semester = api
        .post(
            "/api/v1/semesters",
            Some(&coordinator),
            &json!({"name": "Fall (enrollment-day bench)",
                    "starts_on": date(now + 30 * 86_400),
                    "ends_on": date(now + 120 * 86_400),
                    "registration_opens_at": rfc3339(now - 3600),
                    "registration_closes_at": rfc3339(now + 10 * 86_400)}),
        )
        .await?;
    let semester_id = field(
        &expect(&semester, 201, "POST /api/v1/semesters")?,
        "/semester_id",
        "semester",
    )?;

    // The classes: spread over the weekdays and eight hours.
    let classes = Arc::new(Mutex::new(vec![Value::Null; args.classes]));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (api, classes, next, coordinator, semester_id) = (
            api.clone(),
            classes.clone(),
            next.clone(),
            coordinator.clone(),
            semester_id.clone(),
        );
        let (n, capacity, fee) = (args.classes, args.capacity, args.fee_cents);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), crate::util::Error>(());
                }
                let weekday = WEEKDAYS[i % WEEKDAYS.len()];
                let hour = 9 + (i / WEEKDAYS.len()) % 8;
                let body = json!({"title": format!("Class {i}"),
                    "description": "A class of the enrollment-day benchmark.",
                    "capacity": capacity, "fee_cents": fee, "currency": "usd",
                    "meetings": [{"weekday": weekday, "starts_at": format!("{hour:02}:00"),
                                  "minutes": 50, "room": format!("Room {}", i % 20)}]});
                let answer = post(
                    &api,
                    &format!("/api/v1/semesters/{semester_id}/classes"),
                    Some(&coordinator),
                    &body,
                )
                .await?;
                let class = expect(&answer, 201, "POST .../classes")?;
                let id = field(&class, "/class_id", "class")?;
                classes.lock().unwrap()[i] = json!({"id": id, "weekday": weekday});
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    eprintln!(
        "seed: co-op, semester and {} classes in {:.1}s",
        args.classes,
        started.elapsed().as_secs_f64()
    );

    // Families: the coordinator enrolls them; each welcome email's invite is
    // accepted as it arrives (a session per family), then the children added.
    let families_started = Instant::now();
    let counts = Arc::new(child_counts(args.families, args.children));
    let done: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::with_capacity(args.families)));
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (api, next, coordinator, run) =
            (api.clone(), next.clone(), coordinator.clone(), run.clone());
        let n = args.families;
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), crate::util::Error>(());
                }
                let body = json!({"family_name": format!("Family {i}"),
                                  "email": format!("family-{i}-{run}@example.org")});
                let answer = post(&api, "/api/v1/families", Some(&coordinator), &body).await?;
                expect(&answer, 201, "POST /api/v1/families")?;
            }
        }));
    }
    let invite_rx = Arc::new(tokio::sync::Mutex::new(invite_rx));
    let seen: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(HashSet::new()));
    let slot = Arc::new(AtomicUsize::new(0));
    let mut acceptors = Vec::new();
    for _ in 0..args.accept_concurrency.max(1) {
        let (api, invite_rx, seen, slot, counts, done) = (
            api.clone(),
            invite_rx.clone(),
            seen.clone(),
            slot.clone(),
            counts.clone(),
            done.clone(),
        );
        let n = args.families;
        acceptors.push(tokio::spawn(async move {
            loop {
                if slot.load(Ordering::Relaxed) >= n {
                    return Ok::<(), crate::util::Error>(());
                }
                let received = {
                    let mut rx = invite_rx.lock().await;
                    tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
                };
                let (email, token) = match received {
                    Ok(Some(invite)) => invite,
                    Ok(None) => return fail("the SMTP server stopped"),
                    Err(_) => continue,
                };
                if !email.starts_with("family-") || !seen.lock().unwrap().insert(email.clone()) {
                    continue; // a coordinator notice, or a second welcome
                }
                let k = slot.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok(());
                }
                let mut attempt = 0;
                let accepted = loop {
                    let answer = post(
                        &api,
                            "/api/v1/auth/accept-invite",
                            None,
                            &json!({"token": token, "password": FAMILY_PASSWORD}),
                        )
                        .await?;
                    attempt += 1;
                    if answer.status == 503 && attempt < 60 {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    break answer;
                };
                let me = expect(&accepted, 201, "POST /api/v1/auth/accept-invite")?;
                let family_id = field(&me, "/user/family_id", "accept-invite")?;
                let Some(cookie) = accepted.cookie.clone() else {
                    return fail("accept-invite: no session cookie");
                };
                let mut children = Vec::new();
                for c in 0..counts[k] {
                    // Born 2014–2019: ages 6–12 at the semester's start.
                    let body = json!({"first_name": format!("Child {k}.{c}"),
                                      "birth_date": format!("{}-0{}-15", 2014 + (k + c) % 6, 1 + c)});
                    let answer = post(
                        &api,
                            &format!("/api/v1/families/{family_id}/children"),
                            Some(&cookie),
                            &body,
                        )
                        .await?;
                    let child = expect(&answer, 201, "POST .../children")?;
                    children.push(Value::String(field(&child, "/child_id", "child")?));
                }
                done.lock().unwrap().push(
                    json!({"id": family_id, "email": email, "cookie": cookie, "children": children}),
                );
            }
        }));
    }
    let mut last_report = Instant::now();
    loop {
        let finished = done.lock().unwrap().len();
        if finished >= args.families {
            break;
        }
        // A task that ended early failed (or the families ran out): stop there.
        for tasks in [&mut creators, &mut acceptors] {
            let mut i = 0;
            while i < tasks.len() {
                if tasks[i].is_finished() {
                    tasks.swap_remove(i).await??;
                } else {
                    i += 1;
                }
            }
        }
        if Instant::now() > deadline {
            return fail(format!(
                "timed out after {}s with {finished} of {} families signed in",
                args.timeout, args.families
            ));
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "seed: {finished} of {} families signed in with their children ({:.0}s)",
                args.families,
                families_started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for task in acceptors {
        task.abort();
    }
    // Let the seeding's own jobs (coordinator notices, calendar entries) finish
    // while this SMTP server still takes their emails, so the runs start from
    // an idle queue.
    let mut idle_checks = 0;
    loop {
        let mut busy = 0;
        for state in ["ready", "running"] {
            let answer = api
                .get(
                    &format!("/api/v1/admin/jobs?state={state}&limit=500"),
                    Some(&coordinator),
                )
                .await?;
            let list = expect(&answer, 200, "GET /api/v1/admin/jobs")?;
            busy += list["items"].as_array().map_or(0, Vec::len);
        }
        if busy == 0 {
            idle_checks += 1;
            if idle_checks >= 2 {
                break;
            }
        } else {
            idle_checks = 0;
        }
        if Instant::now() > deadline {
            return fail(format!(
                "timed out waiting for the job queue to drain ({busy}+ jobs left)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let families = std::mem::take(&mut *done.lock().unwrap());
    if families.len() != args.families {
        return fail(format!(
            "only {} of {} families signed in",
            families.len(),
            args.families
        ));
    }
    let children: usize = families
        .iter()
        .map(|f| f["children"].as_array().map_or(0, Vec::len))
        .sum();
    let classes = std::mem::take(&mut *classes.lock().unwrap());
    let state = json!({
        "base": args.base,
        "coop_id": coop_id,
        "semester_id": semester_id,
        "coordinator_email": coordinator_email,
        "coordinator_cookie": coordinator,
        "capacity": args.capacity,
        "classes": classes,
        "families": families,
    });
    std::fs::write(&args.out, serde_json::to_vec(&state)?)?;
    println!(
        "seeded {} classes, {} families (each signed in with its own session), {children} children in {:.1}s (families and children {:.1}s)",
        args.classes,
        args.families,
        started.elapsed().as_secs_f64(),
        families_started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_one_to_three_summing_to_the_total() {
        for (families, total) in [(5000, 10_000), (10, 20), (7, 7), (4, 12), (3, 6)] {
            let counts = child_counts(families, total);
            assert_eq!(counts.iter().sum::<usize>(), total);
            assert!(counts.iter().all(|&c| (1..=3).contains(&c)));
        }
    }
}
