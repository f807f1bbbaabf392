//! A CPU cap per instance: a cgroup with a CFS quota, so one host can stand in
//! for several small servers (0.25 CPU each, say) when measuring how Coop scales.
//! Works with cgroup v2 (`cpu.max`) and with v1's cpu controller
//! (`cpu.cfs_quota_us`); either way the folder must be writable (root, or a
//! delegated subtree).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const PERIOD_US: u64 = 100_000;

pub struct CpuCap {
    dir: PathBuf,
}

impl CpuCap {
    /// Creates (or reuses) the cgroup `name` limited to `cpus` CPUs.
    pub fn create(name: &str, cpus: f64) -> anyhow::Result<Self> {
        let quota_us = ((cpus * PERIOD_US as f64).round() as u64).max(1_000);
        let v2_root = Path::new("/sys/fs/cgroup");
        let v1_root = Path::new("/sys/fs/cgroup/cpu");
        if v2_root.join("cgroup.controllers").exists() {
            let dir = v2_root.join(name);
            make_dir(&dir)?;
            write(&dir.join("cpu.max"), &format!("{quota_us} {PERIOD_US}"))?;
            Ok(Self { dir })
        } else if v1_root.join("cpu.cfs_quota_us").exists() {
            let dir = v1_root.join(name);
            make_dir(&dir)?;
            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
            Ok(Self { dir })
        } else {
            bail!(
                "COOP_CLUSTER_INSTANCE_CPU needs the cgroup cpu controller (cgroup v2 at \
                 /sys/fs/cgroup or v1 at /sys/fs/cgroup/cpu), and this machine has neither"
            )
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// CPU seconds the cgroup's processes were held back by the quota.
    pub fn throttled_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        stat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            match key {
                "throttled_usec" => Some(value / 1e6),
                "throttled_time" => Some(value / 1e9),
                _ => None,
            }
        })
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Succeeds once the processes in it have exited; a leftover empty
        // folder is harmless and reused by the next cluster.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir(dir).with_context(|| {
        format!(
            "could not create the cgroup {} for COOP_CLUSTER_INSTANCE_CPU (run as root, or \
             leave the CPU cap unset)",
            dir.display()
        )
    })
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value} to {}", path.display()))
}
