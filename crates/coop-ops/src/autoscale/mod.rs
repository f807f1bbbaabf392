//! The auto-scaler: how many members (serve instances, or workers) a pool should
//! have, from what the pool reports. It is Kubernetes' Horizontal Pod Autoscaler
//! rule, written so that `coop cluster` on one host and an HPA on many machines
//! behave alike:
//!
//! * per signal, `desired = ceil(current × value / target)`, and no change while
//!   `|value / target − 1| ≤ tolerance` (10 %), so noise does not flap the pool;
//! * the largest proposal wins (the pool is sized for its tightest resource);
//! * scale-down is stabilised: the pool goes to the *highest* recommendation seen
//!   over the last window (300 s), so load must stay low for the whole window
//!   before members go, and then only as far as the window allows;
//! * scale-up happens at once, but is not repeated within a cooldown (60 s) after
//!   the previous one: new members need time to start and to pull the signals
//!   down, and deciding again on the old readings would overshoot;
//! * one scale-up adds at most `max(current × up_max_ratio, current + up_max_step)`
//!   members (Kubernetes' default scale-up policies: +100 % or +4 per period). A
//!   latency signal is not proportional to load: at saturation p95 sits at the
//!   timeout and the rule alone would jump straight to `max`;
//! * the result is clamped to `[min, max]`, last, so bounds win over everything.
//!
//! Why the cooldown does not also block scale-down: the recommendation that caused
//! a scale-up is in the stabilisation window, so no scale-down can follow a
//! scale-up for a whole window anyway (this is also how the HPA works).
//!
//! `current = 0` is scaled from a base of one member: any reading above zero
//! brings one up (a pool of workers can start from nothing when jobs arrive); a
//! reading of zero keeps it at zero (or at `min`). A missing reading (no p95
//! when no request was served, NaN) just takes that signal out of this decision;
//! with no usable reading at all the pool holds (within its bounds).
//!
//! The scaler is pure and deterministic: the caller passes the time, so it is
//! tested, and replayed by the simulator, without sleeping. See `sim` for the
//! simulator and `args` for the command-line settings.

pub mod args;
pub mod chart;
pub mod sim;
pub mod timeline;
pub mod trace;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use args::ScalingArgs;

/// Floating-point slack, so that `0.77 / 0.7` counts as exactly 10 % above
/// target and `ceil(3 × 0.5 / 0.5)` as 3, not 4.
const EPSILON: f64 = 1e-9;

/// What a pool reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Mean utilisation over the pool's members, as a fraction of each member's
    /// CPU allowance (0.7 = 70 %).
    Cpu,
    /// 95th-percentile request latency over the evaluation interval, in seconds.
    P95Latency,
    /// Jobs ready to run per current worker. With no worker, pass the whole
    /// depth (divide by `max(current, 1)`): the rule scales from a base of one.
    QueueDepthPerWorker,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::P95Latency => "p95_latency",
            Self::QueueDepthPerWorker => "queue_depth_per_worker",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement of a signal over the last evaluation interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub signal: Signal,
    pub value: f64,
}

impl Reading {
    pub fn new(signal: Signal, value: f64) -> Self {
        Self { signal, value }
    }
}

/// The value a signal should sit at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    pub signal: Signal,
    pub value: f64,
}

impl Target {
    pub fn new(signal: Signal, value: f64) -> Self {
        Self { signal, value }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min: u32,
    pub max: u32,
    /// Relative distance from a target within which a signal proposes no change.
    pub tolerance: f64,
    /// No second scale-up within this time after a scale-up.
    pub scale_up_cooldown: Duration,
    /// Scale-down goes to the highest recommendation over this window.
    pub scale_down_stabilisation: Duration,
    /// One scale-up reaches at most `current × up_max_ratio`...
    pub up_max_ratio: f64,
    /// ...or `current + up_max_step`, whichever is larger.
    pub up_max_step: u32,
    pub targets: Vec<Target>,
}

impl Default for Policy {
    /// The defaults of `coop cluster` for serve instances: 1–8, CPU 70 %, p95 500 ms.
    fn default() -> Self {
        Self {
            min: 1,
            max: 8,
            tolerance: 0.10,
            scale_up_cooldown: Duration::from_secs(60),
            scale_down_stabilisation: Duration::from_secs(300),
            up_max_ratio: 2.0,
            up_max_step: 4,
            targets: vec![
                Target::new(Signal::Cpu, 0.70),
                Target::new(Signal::P95Latency, 0.5),
            ],
        }
    }
}

/// What one signal asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub signal: Signal,
    pub value: f64,
    pub target: f64,
    pub desired: u32,
}

/// Why the pool gets `desired` members.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// No signal had a usable reading; the pool holds.
    NoReadings,
    /// Every signal is within tolerance of its target (or proposes `current`).
    WithinTolerance,
    ScaleUp,
    /// Scaled up, but by less than proposed (the per-step limit).
    ScaleUpLimited {
        proposed: u32,
    },
    ScaleDown,
    /// More members were proposed, but the last scale-up was too recent.
    UpCooldown {
        #[serde(serialize_with = "seconds")]
        remaining: Duration,
    },
    /// Fewer members were proposed, but a higher recommendation is still in the
    /// stabilisation window.
    Stabilising {
        highest: u32,
    },
    /// The recommendation was below `min`.
    ClampedToMin,
    /// The recommendation was above `max`.
    ClampedToMax,
}

impl Reason {
    /// A short stable label (timeline CSV, logs).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoReadings => "no_readings",
            Self::WithinTolerance => "within_tolerance",
            Self::ScaleUp => "scale_up",
            Self::ScaleUpLimited { .. } => "scale_up_limited",
            Self::ScaleDown => "scale_down",
            Self::UpCooldown { .. } => "up_cooldown",
            Self::Stabilising { .. } => "stabilising",
            Self::ClampedToMin => "clamped_to_min",
            Self::ClampedToMax => "clamped_to_max",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpCooldown { remaining } => {
                write!(f, "up_cooldown ({:.0}s left)", remaining.as_secs_f64())
            }
            Self::Stabilising { highest } => write!(f, "stabilising (window holds {highest})"),
            Self::ScaleUpLimited { proposed } => {
                write!(f, "scale_up_limited (proposed {proposed})")
            }
            other => f.write_str(other.label()),
        }
    }
}

/// Up, down or hold: what the caller has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Up,
    Down,
    Hold,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Hold => "hold",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    pub pool: String,
    pub current: u32,
    /// The largest proposal, before stabilisation, cooldown, limits and bounds.
    pub recommended: Option<u32>,
    pub desired: u32,
    pub proposals: Vec<Proposal>,
    pub reason: Reason,
}

impl Decision {
    pub fn action(&self) -> Action {
        match self.desired.cmp(&self.current) {
            std::cmp::Ordering::Greater => Action::Up,
            std::cmp::Ordering::Less => Action::Down,
            std::cmp::Ordering::Equal => Action::Hold,
        }
    }

    /// One info line with every input and the outcome.
    pub fn log(&self) {
        tracing::info!(
            pool = %self.pool,
            at_s = self.at.as_secs_f64(),
            current = self.current,
            recommended = ?self.recommended,
            desired = self.desired,
            action = self.action().as_str(),
            reason = %self.reason,
            proposals = %ProposalList(&self.proposals),
            "autoscaler decision"
        );
    }

    /// Gauges of the inputs and the outcome, and a counter of decisions by action.
    pub fn record_metrics(&self) {
        let pool = self.pool.clone();
        metrics::gauge!("autoscaler_current", "pool" => pool.clone()).set(self.current);
        metrics::gauge!("autoscaler_desired", "pool" => pool.clone()).set(self.desired);
        for p in &self.proposals {
            let signal = p.signal.as_str();
            metrics::gauge!("autoscaler_signal", "pool" => pool.clone(), "signal" => signal)
                .set(p.value);
            metrics::gauge!("autoscaler_target", "pool" => pool.clone(), "signal" => signal)
                .set(p.target);
            metrics::gauge!("autoscaler_proposal", "pool" => pool.clone(), "signal" => signal)
                .set(p.desired);
        }
        metrics::counter!(
            "autoscaler_decisions_total",
            "pool" => pool.clone(),
            "action" => self.action().as_str(),
            "reason" => self.reason.label()
        )
        .increment(1);
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:.0}s] {}: {} → {} ({}); {}",
            self.at.as_secs_f64(),
            self.pool,
            self.current,
            self.desired,
            self.reason,
            ProposalList(&self.proposals)
        )
    }
}

struct ProposalList<'a>(&'a [Proposal]);

impl fmt::Display for ProposalList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no readings");
        }
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{}={:.3}/{:.3}→{}",
                p.signal, p.value, p.target, p.desired
            )?;
        }
        Ok(())
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The HPA rule for one signal: `ceil(current × value / target)`, or `current`
/// within tolerance. `current = 0` scales from a base of one (see module docs).
pub fn proposal(current: u32, value: f64, target: f64, tolerance: f64) -> u32 {
    let ratio = value / target;
    if (ratio - 1.0).abs() <= tolerance + EPSILON {
        // On target: keep the pool; from zero, that is one member's worth of work.
        return current.max(1);
    }
    let base = f64::from(current.max(1));
    let desired = (base * ratio - EPSILON).ceil();
    // Saturating: a p95 of an hour against 1 ms must not wrap around.
    if desired >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        desired.max(0.0) as u32
    }
}

/// One pool's scaler. Call `decide` every evaluation interval.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    pool: String,
    policy: Policy,
    /// (when, recommendation) over the stabilisation window, oldest first.
    recommendations: VecDeque<(Duration, u32)>,
    last_scale_up: Option<Duration>,
    /// Whether the window has been seeded with the size the pool started at.
    seeded: bool,
}

impl Autoscaler {
    pub fn new(pool: impl Into<String>, policy: Policy) -> Self {
        Self {
            pool: pool.into(),
            policy,
            recommendations: VecDeque::new(),
            last_scale_up: None,
            seeded: false,
        }
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What the pool of `current` members should become, given the readings of
    /// the last interval. `now` is any monotonic time (since the cluster started,
    /// or simulated); it must not go backwards between calls. The scaler assumes
    /// its decisions are carried out: a scale-up starts the cooldown.
    pub fn decide(&mut self, now: Duration, current: u32, readings: &[Reading]) -> Decision {
        let policy = &self.policy;
        let proposals: Vec<Proposal> = policy
            .targets
            .iter()
            .filter_map(|target| {
                let reading = readings
                    .iter()
                    .find(|r| r.signal == target.signal && r.value.is_finite() && r.value >= 0.0)?;
                Some(Proposal {
                    signal: target.signal,
                    value: reading.value,
                    target: target.value,
                    desired: proposal(current, reading.value, target.value, policy.tolerance),
                })
            })
            .collect();
        let recommended = proposals.iter().map(|p| p.desired).max();

        // The pool's size at the first decision counts as a recommendation (as
        // the HPA controller seeds its window): a pool started at 4 is not cut
        // down on its first reading, before a whole window of low load.
        if !self.seeded {
            self.recommendations.push_back((now, current));
            self.seeded = true;
        }
        // Forget recommendations that left the window; remember this one.
        while let Some(&(at, _)) = self.recommendations.front() {
            if now.saturating_sub(at) >= policy.scale_down_stabilisation {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        if let Some(rec) = recommended {
            self.recommendations.push_back((now, rec));
        }

        let (wanted, mut reason) = match recommended {
            None => (current, Reason::NoReadings),
            Some(rec) if rec > current => self.up(now, current, rec),
            Some(rec) if rec < current => {
                let highest = self
                    .recommendations
                    .iter()
                    .map(|&(_, r)| r)
                    .max()
                    .unwrap_or(rec);
                if highest >= current {
                    (current, Reason::Stabilising { highest })
                } else {
                    (highest, Reason::ScaleDown)
                }
            }
            Some(_) => (current, Reason::WithinTolerance),
        };

        let desired = wanted.clamp(policy.min, policy.max.max(policy.min));
        if desired > wanted {
            reason = Reason::ClampedToMin;
        } else if desired < wanted {
            reason = Reason::ClampedToMax;
        }
        if desired > current {
            self.last_scale_up = Some(now);
        }
        Decision {
            at: now,
            pool: self.pool.clone(),
            current,
            recommended,
            desired,
            proposals,
            reason,
        }
    }

    fn up(&self, now: Duration, current: u32, rec: u32) -> (u32, Reason) {
        let policy = &self.policy;
        if let Some(last) = self.last_scale_up {
            let since = now.saturating_sub(last);
            if since < policy.scale_up_cooldown {
                return (
                    current,
                    Reason::UpCooldown {
                        remaining: policy.scale_up_cooldown - since,
                    },
                );
            }
        }
        let by_ratio = (f64::from(current) * policy.up_max_ratio - EPSILON).ceil();
        let by_ratio = if by_ratio >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            by_ratio.max(0.0) as u32
        };
        let limit = by_ratio
            .max(current.saturating_add(policy.up_max_step))
            .max(current.saturating_add(1));
        if rec > limit {
            (limit, Reason::ScaleUpLimited { proposed: rec })
        } else {
            (rec, Reason::ScaleUp)
        }
    }
}

#[cfg(test)]
mod tests;
