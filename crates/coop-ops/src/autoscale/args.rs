//! The auto-scaler's settings, from flags and `COOP_*` variables (flattened into
//! `coop cluster` and `coop simulate`). The defaults are the issue's: CPU 70 %,
//! p95 500 ms, 100 ready jobs per worker, 10 % tolerance, 60 s scale-up
//! cooldown, 300 s scale-down stabilisation, 1–8 members per pool.

use std::time::Duration;

use clap::Args;

use super::{Policy, Signal, Target};
use coop_runtime::values::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct ScalingArgs {
    /// Fewest `coop serve` instances.
    #[arg(
        long = "instances-min",
        env = "COOP_INSTANCES_MIN",
        value_name = "COOP_INSTANCES_MIN",
        default_value_t = 1
    )]
    pub instances_min: u32,

    /// Most `coop serve` instances.
    #[arg(long = "instances-max", env = "COOP_INSTANCES_MAX", value_name = "COOP_INSTANCES_MAX",
          default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub instances_max: u32,

    /// Mean CPU utilisation to hold instances at, in % of each instance's allowance.
    #[arg(long = "target-cpu", env = "COOP_TARGET_CPU", value_name = "COOP_TARGET_CPU",
          default_value = "70%", value_parser = parse_percent)]
    pub target_cpu: f64,

    /// 95th-percentile request latency to hold instances under.
    #[arg(long = "target-p95", env = "COOP_TARGET_P95", value_name = "COOP_TARGET_P95",
          default_value = "500ms", value_parser = parse_positive_duration)]
    pub target_p95: Duration,

    /// Fewest `coop worker` processes.
    #[arg(
        long = "workers-min",
        env = "COOP_WORKERS_MIN",
        value_name = "COOP_WORKERS_MIN",
        default_value_t = 1
    )]
    pub workers_min: u32,

    /// Most `coop worker` processes.
    #[arg(long = "workers-max", env = "COOP_WORKERS_MAX", value_name = "COOP_WORKERS_MAX",
          default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers_max: u32,

    /// Ready jobs per worker to hold the queue at.
    #[arg(long = "target-queue-per-worker", env = "COOP_TARGET_QUEUE_PER_WORKER",
          value_name = "COOP_TARGET_QUEUE_PER_WORKER", default_value = "100",
          value_parser = parse_positive)]
    pub target_queue_per_worker: f64,

    /// A signal within this fraction of its target proposes no change.
    #[arg(long = "scale-tolerance", env = "COOP_SCALE_TOLERANCE",
          value_name = "COOP_SCALE_TOLERANCE", default_value = "0.10", value_parser = parse_tolerance)]
    pub tolerance: f64,

    /// No second scale-up within this time after one.
    #[arg(long = "scale-up-cooldown", env = "COOP_SCALE_UP_COOLDOWN",
          value_name = "COOP_SCALE_UP_COOLDOWN", default_value = "60s", value_parser = parse_duration)]
    pub scale_up_cooldown: Duration,

    /// Scale-down follows the highest recommendation over this window, so load
    /// must stay low this long before members go.
    #[arg(long = "scale-down-stabilisation", alias = "scale-down-stabilization",
          env = "COOP_SCALE_DOWN_STABILISATION", value_name = "COOP_SCALE_DOWN_STABILISATION",
          default_value = "300s", value_parser = parse_duration)]
    pub scale_down_stabilisation: Duration,

    /// One scale-up at most multiplies a pool by this...
    #[arg(long = "scale-up-max-ratio", env = "COOP_SCALE_UP_MAX_RATIO",
          value_name = "COOP_SCALE_UP_MAX_RATIO", default_value = "2", value_parser = parse_ratio)]
    pub scale_up_max_ratio: f64,

    /// ...or adds this many members, whichever is more.
    #[arg(long = "scale-up-max-step", env = "COOP_SCALE_UP_MAX_STEP",
          value_name = "COOP_SCALE_UP_MAX_STEP", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub scale_up_max_step: u32,

    /// How often the scaler reads the signals and decides.
    #[arg(long = "scale-interval", env = "COOP_SCALE_INTERVAL", value_name = "COOP_SCALE_INTERVAL",
          default_value = "15s", value_parser = parse_positive_duration)]
    pub interval: Duration,
}

impl Default for ScalingArgs {
    fn default() -> Self {
        Self {
            instances_min: 1,
            instances_max: 8,
            target_cpu: 0.70,
            target_p95: Duration::from_millis(500),
            workers_min: 1,
            workers_max: 8,
            target_queue_per_worker: 100.0,
            tolerance: 0.10,
            scale_up_cooldown: Duration::from_secs(60),
            scale_down_stabilisation: Duration::from_secs(300),
            scale_up_max_ratio: 2.0,
            scale_up_max_step: 4,
            interval: Duration::from_secs(15),
        }
    }
}

impl ScalingArgs {
    /// Checks what flags cannot check one by one. Call it at start.
    pub fn validate(&self) -> Result<(), String> {
        if self.instances_min > self.instances_max {
            return Err(format!(
                "COOP_INSTANCES_MIN ({}) is above COOP_INSTANCES_MAX ({})",
                self.instances_min, self.instances_max
            ));
        }
        if self.workers_min > self.workers_max {
            return Err(format!(
                "COOP_WORKERS_MIN ({}) is above COOP_WORKERS_MAX ({})",
                self.workers_min, self.workers_max
            ));
        }
        Ok(())
    }

    /// `coop serve` instances: CPU and p95 latency.
    pub fn serve_policy(&self) -> Policy {
        self.policy(
            self.instances_min,
            self.instances_max,
            vec![
                Target::new(Signal::Cpu, self.target_cpu),
                Target::new(Signal::P95Latency, self.target_p95.as_secs_f64()),
            ],
        )
    }

    /// `coop worker` processes: ready jobs per worker.
    pub fn worker_policy(&self) -> Policy {
        self.policy(
            self.workers_min,
            self.workers_max,
            vec![Target::new(
                Signal::QueueDepthPerWorker,
                self.target_queue_per_worker,
            )],
        )
    }

    fn policy(&self, min: u32, max: u32, targets: Vec<Target>) -> Policy {
        Policy {
            min,
            max,
            tolerance: self.tolerance,
            scale_up_cooldown: self.scale_up_cooldown,
            scale_down_stabilisation: self.scale_down_stabilisation,
            up_max_ratio: self.scale_up_max_ratio,
            up_max_step: self.scale_up_max_step,
            targets,
        }
    }
}

/// `70%` or `70` → 0.70. Fractions are refused rather than guessed at: is `0.7`
/// 0.7 % or 70 %?
fn parse_percent(value: &str) -> Result<f64, String> {
    let number = value.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if (1.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!(
            "COOP_TARGET_CPU expects a percentage from 1 to 100 such as 70%, got {value:?}"
        )),
    }
}

fn parse_positive(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a number above 0, got {value:?}")),
    }
}

fn parse_tolerance(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "COOP_SCALE_TOLERANCE expects a fraction from 0 to below 1 such as 0.10, got {value:?}"
        )),
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 1.0 => Ok(v),
        _ => Err(format!(
            "COOP_SCALE_UP_MAX_RATIO expects a number above 1 such as 2, got {value:?}"
        )),
    }
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err(format!("expected a duration above zero, got {value:?}")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scaling: ScalingArgs,
    }

    fn parse(args: &[&str]) -> Result<ScalingArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("coop").chain(args.iter().copied())).map(|c| c.scaling)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let args = parse(&[]).unwrap();
        let defaults = ScalingArgs::default();
        assert_eq!(args.serve_policy(), defaults.serve_policy());
        assert_eq!(args.worker_policy(), defaults.worker_policy());
        assert_eq!(args.interval, Duration::from_secs(15));
        assert_eq!(args.serve_policy(), Policy::default());
        let worker = args.worker_policy();
        assert_eq!((worker.min, worker.max), (1, 8));
        assert_eq!(
            worker.targets,
            vec![Target::new(Signal::QueueDepthPerWorker, 100.0)]
        );
    }

    #[test]
    fn flags_set_the_policies() {
        let args = parse(&[
            "--instances-min=2",
            "--instances-max=50",
            "--target-cpu=60%",
            "--target-p95=250ms",
            "--scale-tolerance=0.05",
            "--scale-up-cooldown=2m",
            "--scale-down-stabilization=10m",
            "--target-queue-per-worker=20",
        ])
        .unwrap();
        let serve = args.serve_policy();
        assert_eq!((serve.min, serve.max, serve.tolerance), (2, 50, 0.05));
        assert_eq!(serve.scale_up_cooldown, Duration::from_secs(120));
        assert_eq!(serve.scale_down_stabilisation, Duration::from_secs(600));
        assert_eq!(
            serve.targets,
            vec![
                Target::new(Signal::Cpu, 0.60),
                Target::new(Signal::P95Latency, 0.25)
            ]
        );
        assert_eq!(args.worker_policy().targets[0].value, 20.0);
    }

    #[test]
    fn nonsense_is_refused_naming_the_variable() {
        for bad in ["--target-cpu=0.7", "--target-cpu=150%"] {
            let err = parse(&[bad]).err().unwrap().to_string();
            assert!(err.contains("COOP_TARGET_CPU"), "{bad}: {err}");
        }
        assert!(parse(&["--scale-tolerance=1.5"]).is_err());
        assert!(parse(&["--target-p95=0s"]).is_err());
        assert!(parse(&["--instances-max=0"]).is_err());
        let args = parse(&["--instances-min=5", "--instances-max=3"]).unwrap();
        assert!(args.validate().unwrap_err().contains("COOP_INSTANCES_MIN"));
        assert!(parse(&[]).unwrap().validate().is_ok());
    }
}
