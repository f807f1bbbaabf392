//! `coop simulate` as an operator runs it: a trace in, a timeline and a chart out,
//! the auto-scaler reacting to the load in between.

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_coop");

/// Runs `coop` with no COOP_* variables from the caller's environment, so the
/// defaults are the documented ones.
fn coop(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run coop");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (seconds, instances, desired) of each timeline row.
fn instances(timeline: &str) -> Vec<(f64, u32, u32)> {
    let mut lines = timeline.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (s, i, d) = (col("seconds"), col("instances"), col("desired"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[s].parse().unwrap(),
                f[i].parse().unwrap(),
                f[d].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn simulate_scales_up_under_load_and_down_a_window_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    // 10 min quiet, 10 min at 1,500 rps (four instances' worth at 100 %), 15 min quiet.
    std::fs::write(
        &trace,
        "# step up, step down\nseconds,requests_per_second\n0,50\n600,50\n601,1500\n1200,1500\n1201,50\n2100,50\n",
    )
    .unwrap();
    let timeline = dir.path().join("timeline.csv");
    let chart = dir.path().join("chart.svg");
    let (ok, stdout, stderr) = coop(&[
        "simulate",
        path(&trace),
        "--timeline",
        path(&timeline),
        "--out",
        path(&chart),
        "--instances-max=12",
        "--capacity-rps=400",
    ]);
    assert!(ok, "coop simulate failed:\n{stderr}");
    assert!(
        stdout.contains("peak offered load:      1500 requests/s"),
        "{stdout}"
    );

    let rows = instances(&std::fs::read_to_string(&timeline).unwrap());
    assert_eq!(rows.len(), 140, "one row per 15 s over 2,100 s");
    let before = rows
        .iter()
        .filter(|r| r.0 <= 600.0)
        .map(|r| r.1)
        .max()
        .unwrap();
    assert_eq!(before, 1, "quiet: the minimum");
    let during = rows.iter().filter(|r| r.0 > 900.0 && r.0 <= 1200.0);
    assert!(
        during.clone().all(|r| r.1 >= 5),
        "1,500 rps within 10 % of 70 % CPU needs ≥ 5 instances"
    );
    // Down only once the 300 s window after the load dropped (at 1,200 s) has passed.
    let first_down = rows.iter().find(|r| r.0 > 1200.0 && r.2 < r.1).unwrap();
    assert!(
        (1500.0..=1530.0).contains(&first_down.0),
        "first scale-down at {}",
        first_down.0
    );
    assert_eq!(rows.last().unwrap().1, 1, "back to the minimum");

    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("p95 latency"),
        "{svg:.200}"
    );

    // The same timeline drawn again by --render (as for a real-cluster replay).
    let again = dir.path().join("again.svg");
    let (ok, _, stderr) = coop(&[
        "simulate",
        "--render",
        path(&timeline),
        "--out",
        path(&again),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), svg);
}

#[test]
fn a_bad_trace_is_refused_with_the_expected_format() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(&trace, "time,rate\n0,1\n").unwrap();
    let (ok, _, stderr) = coop(&["simulate", path(&trace)]);
    assert!(!ok);
    assert!(stderr.contains("seconds,requests_per_second"), "{stderr}");
    let (ok, _, stderr) = coop(&["simulate", path(&trace), "--instances-min=9"]);
    assert!(!ok);
    assert!(stderr.contains("COOP_INSTANCES_MIN"), "{stderr}");
}

#[test]
fn the_shipped_growth_trace_is_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("growth.csv");
    let (ok, _, stderr) = coop(&["simulate", "--make-growth-trace", path(&fresh)]);
    assert!(ok, "{stderr}");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/traces/growth.csv");
    assert!(
        std::fs::read_to_string(&shipped).unwrap() == std::fs::read_to_string(&fresh).unwrap(),
        "deploy/traces/growth.csv is stale: regenerate it with `coop simulate --make-growth-trace`"
    );
}
