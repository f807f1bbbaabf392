use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

fn cpu_only(min: u32, max: u32) -> Policy {
    Policy {
        min,
        max,
        targets: vec![Target::new(Signal::Cpu, 0.70)],
        ..Policy::default()
    }
}

fn cpu(value: f64) -> Vec<Reading> {
    vec![Reading::new(Signal::Cpu, value)]
}

#[test]
fn within_tolerance_proposes_no_change() {
    // 1.09 × target: inside 10 %.
    assert_eq!(proposal(10, 0.70 * 1.09, 0.70, 0.10), 10);
    assert_eq!(proposal(10, 0.70 * 0.91, 0.70, 0.10), 10);
    // Exactly on the edge counts as inside, despite 0.77 / 0.7 = 1.1000000000000003.
    assert_eq!(proposal(10, 0.77, 0.70, 0.10), 10);
}

#[test]
fn beyond_tolerance_proposes_the_ceiling_of_the_ratio() {
    // 1.11 × target: ceil(10 × 1.11) = 12.
    assert_eq!(proposal(10, 0.70 * 1.11, 0.70, 0.10), 12);
    // ceil(10 × 0.89) = 9.
    assert_eq!(proposal(10, 0.70 * 0.89, 0.70, 0.10), 9);
    // An exact multiple is not rounded up by float error: 3 × 0.35 / 0.7 = 1.5 → 2; 4 × 0.5 → 2.
    assert_eq!(proposal(3, 0.35, 0.70, 0.10), 2);
    assert_eq!(proposal(4, 0.35, 0.70, 0.10), 2);
    assert_eq!(proposal(3, 1.4, 0.70, 0.10), 6);
    // 2.5 s of p95 against 500 ms from 2 instances: ×5.
    assert_eq!(proposal(2, 2.5, 0.5, 0.10), 10);
}

#[test]
fn zero_current_scales_from_one_and_huge_ratios_saturate() {
    assert_eq!(
        proposal(0, 5.0, 100.0, 0.10),
        1,
        "any work brings one member up"
    );
    assert_eq!(proposal(0, 250.0, 100.0, 0.10), 3);
    assert_eq!(proposal(0, 0.0, 100.0, 0.10), 0, "no work keeps it at zero");
    assert_eq!(
        proposal(0, 105.0, 100.0, 0.10),
        1,
        "one worker's worth of work, one worker"
    );
    assert_eq!(proposal(2, 1e300, 1e-300, 0.10), u32::MAX);
}

#[test]
fn the_tightest_signal_wins() {
    let mut scaler = Autoscaler::new("serve", Policy::default());
    let d = scaler.decide(
        S(0),
        4,
        &[
            Reading::new(Signal::Cpu, 0.35),       // wants 2
            Reading::new(Signal::P95Latency, 0.9), // wants ceil(4 × 1.8) = 8
        ],
    );
    assert_eq!(d.proposals.len(), 2);
    assert_eq!(d.proposals[0].desired, 2);
    assert_eq!(d.proposals[1].desired, 8);
    assert_eq!(d.recommended, Some(8));
    assert_eq!((d.desired, d.action()), (8, Action::Up));
    assert_eq!(d.reason, Reason::ScaleUp);
}

#[test]
fn results_are_clamped_to_the_bounds() {
    let mut scaler = Autoscaler::new("serve", cpu_only(2, 5));
    let d = scaler.decide(S(0), 4, &cpu(1.0)); // wants ceil(4 × 1.43) = 6
    assert_eq!((d.desired, d.reason.clone()), (5, Reason::ClampedToMax));

    let no_window = Policy {
        scale_down_stabilisation: Duration::ZERO,
        ..cpu_only(2, 5)
    };
    let mut scaler = Autoscaler::new("serve", no_window);
    let d = scaler.decide(S(0), 3, &cpu(0.0)); // wants 0, and no window to hold it
    assert_eq!((d.desired, d.reason.clone()), (2, Reason::ClampedToMin));

    // Below min with nothing to go on: brought up to min anyway.
    let mut scaler = Autoscaler::new("serve", cpu_only(2, 5));
    let d = scaler.decide(S(0), 0, &[]);
    assert_eq!((d.desired, d.reason), (2, Reason::ClampedToMin));
}

#[test]
fn no_usable_reading_holds() {
    let mut scaler = Autoscaler::new("serve", Policy::default());
    let d = scaler.decide(S(0), 3, &[]);
    assert_eq!((d.desired, d.reason.clone()), (3, Reason::NoReadings));
    let d = scaler.decide(
        S(15),
        3,
        &[
            Reading::new(Signal::Cpu, f64::NAN),
            Reading::new(Signal::QueueDepthPerWorker, 900.0), // not a target of this pool
        ],
    );
    assert_eq!((d.desired, d.reason), (3, Reason::NoReadings));
    assert!(d.proposals.is_empty());
}

#[test]
fn a_missing_p95_leaves_the_decision_to_cpu() {
    let mut scaler = Autoscaler::new("serve", Policy::default());
    let d = scaler.decide(S(0), 2, &cpu(1.0));
    assert_eq!(d.proposals.len(), 1);
    assert_eq!((d.desired, d.reason), (3, Reason::ScaleUp));
}

#[test]
fn workers_scale_from_zero_on_queue_depth() {
    let policy = Policy {
        min: 0,
        max: 8,
        targets: vec![Target::new(Signal::QueueDepthPerWorker, 100.0)],
        ..Policy::default()
    };
    let mut scaler = Autoscaler::new("worker", policy);
    let d = scaler.decide(S(0), 0, &[Reading::new(Signal::QueueDepthPerWorker, 0.0)]);
    assert_eq!((d.desired, d.reason), (0, Reason::WithinTolerance));
    let d = scaler.decide(
        S(15),
        0,
        &[Reading::new(Signal::QueueDepthPerWorker, 350.0)],
    );
    assert_eq!((d.desired, d.reason), (4, Reason::ScaleUp));
}

#[test]
fn a_second_scale_up_waits_for_the_cooldown() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 20));
    let d = scaler.decide(S(0), 2, &cpu(1.0));
    assert_eq!((d.desired, d.reason), (3, Reason::ScaleUp));

    let d = scaler.decide(S(45), 3, &cpu(1.0));
    assert_eq!(d.desired, 3, "45 s after a scale-up: held");
    assert_eq!(d.reason, Reason::UpCooldown { remaining: S(15) });
    assert_eq!(d.recommended, Some(5), "the proposal is still reported");

    let d = scaler.decide(S(60), 3, &cpu(1.0));
    assert_eq!(
        (d.desired, d.reason),
        (5, Reason::ScaleUp),
        "60 s after: allowed"
    );
}

#[test]
fn the_cooldown_does_not_block_the_bounds() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 20));
    scaler.decide(S(0), 2, &cpu(1.0));
    // Someone raised min (or a member died): min applies at once.
    scaler.policy.min = 4;
    let d = scaler.decide(S(15), 3, &cpu(1.0));
    assert_eq!((d.desired, d.reason), (4, Reason::ClampedToMin));
}

#[test]
fn one_scale_up_at_most_doubles_or_adds_four() {
    let mut scaler = Autoscaler::new(
        "serve",
        Policy {
            max: 100,
            ..Policy::default()
        },
    );
    // p95 at a 10 s timeout against 500 ms asks for 20× the pool.
    let p95 = |v| vec![Reading::new(Signal::P95Latency, v)];
    let d = scaler.decide(S(0), 2, &p95(10.0));
    assert_eq!(
        (d.desired, d.reason),
        (6, Reason::ScaleUpLimited { proposed: 40 })
    );
    let d = scaler.decide(S(60), 10, &p95(10.0));
    assert_eq!(
        (d.desired, d.reason),
        (20, Reason::ScaleUpLimited { proposed: 200 })
    );
}

#[test]
fn a_dip_shorter_than_the_window_does_not_scale_down() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 20));
    // Steady at 6 instances, on target.
    for t in (0..=300).step_by(15) {
        let d = scaler.decide(S(t), 6, &cpu(0.7));
        assert_eq!(d.desired, 6);
    }
    // Load falls to a third for 285 s (the 6 of t=300 leaves the window at 600).
    for t in (315..=585).step_by(15) {
        let d = scaler.decide(S(t), 6, &cpu(0.7 / 3.0));
        assert_eq!(d.recommended, Some(2));
        assert_eq!(
            (d.desired, d.reason.clone()),
            (6, Reason::Stabilising { highest: 6 }),
            "at {t}s"
        );
    }
    // It comes back before the window is over.
    let d = scaler.decide(S(600), 6, &cpu(0.7));
    assert_eq!((d.desired, d.reason), (6, Reason::WithinTolerance));
}

#[test]
fn sustained_low_load_scales_down_to_the_highest_recommendation_in_the_window() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 20));
    scaler.decide(S(0), 6, &cpu(0.7)); // recommends 6
    scaler.decide(S(15), 6, &cpu(0.45)); // ceil(6 × 0.643) = 4
    for t in (30..300).step_by(15) {
        let d = scaler.decide(S(t), 6, &cpu(0.2)); // ceil(6 × 0.286) = 2
        assert_eq!(d.desired, 6, "at {t}s the 6 from t=0 is in the window");
    }
    // t=300: the 6 has left the window; the 4 from t=15 has not.
    let d = scaler.decide(S(300), 6, &cpu(0.2));
    assert_eq!((d.desired, d.reason.clone()), (4, Reason::ScaleDown));
    assert_eq!(d.action(), Action::Down);
    // 4 instances at the same load (now 0.3 each) propose 2, but the window
    // (from t=15) still holds the 4 until t=315.
    let d = scaler.decide(S(314), 4, &cpu(0.3));
    assert_eq!(
        (d.desired, d.reason),
        (4, Reason::Stabilising { highest: 4 })
    );
    let d = scaler.decide(S(315), 4, &cpu(0.3));
    assert_eq!((d.desired, d.reason), (2, Reason::ScaleDown));
}

#[test]
fn scale_down_right_after_a_scale_up_is_held_by_the_window_not_the_cooldown() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 20));
    let d = scaler.decide(S(0), 2, &cpu(1.0));
    assert_eq!(d.desired, 3);
    // Load vanishes at once: no scale-down for a whole window after the scale-up.
    for t in (15..300).step_by(15) {
        let d = scaler.decide(S(t), 3, &cpu(0.05));
        assert_eq!((d.desired, d.action()), (3, Action::Hold), "at {t}s");
    }
    let d = scaler.decide(S(300), 3, &cpu(0.05));
    assert_eq!((d.desired, d.reason), (1, Reason::ScaleDown));
}

#[test]
fn decisions_serialise_and_display_every_input() {
    let mut scaler = Autoscaler::new("serve", Policy::default());
    let d = scaler.decide(
        S(30),
        2,
        &[
            Reading::new(Signal::Cpu, 0.95),
            Reading::new(Signal::P95Latency, 0.2),
        ],
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["at"], 30.0);
    assert_eq!(json["pool"], "serve");
    assert_eq!(json["desired"], 3);
    assert_eq!(json["reason"]["kind"], "scale_up");
    assert_eq!(json["proposals"][0]["signal"], "cpu");
    assert_eq!(json["proposals"][1]["signal"], "p95_latency");
    let line = d.to_string();
    assert!(line.contains("serve: 2 → 3 (scale_up)"), "{line}");
    assert!(line.contains("cpu=0.950/0.700→3"), "{line}");
    assert!(line.contains("p95_latency=0.200/0.500→1"), "{line}");
}

#[test]
fn metrics_are_exported_per_pool() {
    use metrics_exporter_prometheus::PrometheusBuilder;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut scaler = Autoscaler::new("serve", Policy::default());
    let d = scaler.decide(S(0), 2, &cpu(1.0));
    metrics::with_local_recorder(&recorder, || d.record_metrics());
    let text = handle.render();
    for expected in [
        r#"autoscaler_desired{pool="serve"} 3"#,
        r#"autoscaler_current{pool="serve"} 2"#,
        r#"autoscaler_signal{pool="serve",signal="cpu"} 1"#,
        r#"autoscaler_target{pool="serve",signal="cpu"} 0.7"#,
        r#"autoscaler_decisions_total{pool="serve",action="up",reason="scale_up"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[test]
fn a_pool_is_not_cut_down_before_a_whole_window_after_the_scaler_starts() {
    let mut scaler = Autoscaler::new("serve", cpu_only(1, 8));
    // Started with 4 and idle from the first reading on.
    let d = scaler.decide(S(15), 4, &cpu(0.05));
    assert_eq!(
        (d.desired, d.reason.clone()),
        (4, Reason::Stabilising { highest: 4 })
    );
    let d = scaler.decide(S(15 + 285), 4, &cpu(0.05));
    assert_eq!(d.desired, 4, "still inside the window: {d}");
    let d = scaler.decide(S(15 + 300), 4, &cpu(0.05));
    assert_eq!((d.desired, d.reason), (1, Reason::ScaleDown));
}
