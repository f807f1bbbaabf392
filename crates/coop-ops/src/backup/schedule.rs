//! The embedded tier backs itself up: `coop serve` on SQLite writes a backup
//! into `COOP_DATA_DIR/backups` every `COOP_BACKUP_INTERVAL` (a day by
//! default) and keeps the newest `COOP_BACKUP_KEEP`. The first one is due one
//! interval after the newest backup already there (within a minute when there
//! is none), so restarts neither skip nor pile up backups.
//!
//! Each outcome is recorded for `/ready`'s details (coop_runtime::backup_status)
//! and as metrics: `coop_backup_last_success_timestamp_seconds` (alert when it
//! is older than two intervals) and `coop_backups_total{result}`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use coop_runtime::backup_status;
use coop_runtime::values::parse_duration;

use super::{Source, write_backup};

/// Backups are folders named `coop-<UTC time>`, so names sort by age.
const PREFIX: &str = "coop-";

/// When there is no backup yet, the first is taken within this long.
const FIRST_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// How often `coop serve` backs the embedded tier up into
    /// COOP_DATA_DIR/backups (`off`: never). PostgreSQL is backed up with
    /// `coop backup` (pg_dump) from outside.
    #[arg(long = "backup-interval", env = "COOP_BACKUP_INTERVAL", value_name = "COOP_BACKUP_INTERVAL",
          default_value = "24h", value_parser = parse_interval)]
    pub backup_interval: Interval,

    /// Scheduled backups kept; older ones are removed after a new one succeeds.
    #[arg(long = "backup-keep", env = "COOP_BACKUP_KEEP", value_name = "COOP_BACKUP_KEEP",
          default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub backup_keep: u32,
}

/// `None`: scheduled backups are off.
#[derive(Debug, Clone, Copy)]
pub struct Interval(pub Option<Duration>);

fn parse_interval(value: &str) -> Result<Interval, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Interval(None));
    }
    let every = parse_duration(value).map_err(|e| format!("COOP_BACKUP_INTERVAL: {e}, or off"))?;
    if every < Duration::from_secs(1) {
        return Err("COOP_BACKUP_INTERVAL must be at least 1s (or off)".into());
    }
    Ok(Interval(Some(every)))
}

/// Runs forever (until the task is dropped with the server).
pub async fn run(data_dir: PathBuf, database: PathBuf, args: ScheduleArgs) {
    let Interval(Some(every)) = args.backup_interval else {
        return;
    };
    let folder = data_dir.join("backups");
    backup_status::enable(folder.display().to_string());
    let source = Source::Sqlite {
        file: database,
        data_dir,
    };
    let newest_age = newest(&folder).and_then(|(_, at)| SystemTime::now().duration_since(at).ok());
    // With none yet: soon, but not at once, so a process that lives a few
    // seconds (a test, a crash loop) does not write one at every start.
    let mut wait = match newest_age {
        Some(age) => every.saturating_sub(age),
        None => every.min(FIRST_WITHIN),
    };
    loop {
        tokio::time::sleep(wait).await;
        wait = every;
        let to = folder.join(format!("{PREFIX}{}", stamp()));
        match write_backup(&source, &to).await {
            Ok(manifest) => {
                tracing::info!(folder = %to.display(), bytes = manifest.bytes, "backup taken");
                backup_status::record_success(manifest.taken_at);
                metrics::gauge!("coop_backup_last_success_timestamp_seconds").set(unix_now());
                metrics::counter!("coop_backups_total", "result" => "ok").increment(1);
                prune(&folder, args.backup_keep as usize);
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "scheduled backup failed");
                backup_status::record_failure(format!("{err:#}"));
                metrics::counter!("coop_backups_total", "result" => "failed").increment(1);
            }
        }
    }
}

/// Completed backups, oldest first (an interrupted one keeps its `.partial`
/// name and is replaced by the next run).
fn backups(folder: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, SystemTime)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(PREFIX) && !name.ends_with(".partial")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .collect();
    found.sort();
    found
}

fn newest(folder: &Path) -> Option<(PathBuf, SystemTime)> {
    backups(folder).into_iter().max_by_key(|(_, at)| *at)
}

fn prune(folder: &Path, keep: usize) {
    let all = backups(folder);
    let excess = all.len().saturating_sub(keep);
    for (path, _) in all.into_iter().take(excess) {
        if let Err(err) = std::fs::remove_dir_all(&path) {
            tracing::warn!(folder = %path.display(), %err, "could not remove an old backup");
        }
    }
}

/// `20261130T051502.123Z`: sortable, and distinct for intervals down to 1 s.
fn stamp() -> String {
    let format = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .unwrap_or_default()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_durations_or_off() {
        assert_eq!(
            parse_interval("24h").unwrap().0,
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_interval("off").unwrap().0, None);
        assert!(parse_interval("500ms").is_err());
        assert!(
            parse_interval("daily")
                .unwrap_err()
                .contains("COOP_BACKUP_INTERVAL")
        );
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("coop-prune-{}", std::process::id()));
        for name in [
            "coop-20260101T000000.000Z",
            "coop-20260102T000000.000Z",
            "coop-20260103T000000.000Z",
        ] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        std::fs::create_dir_all(dir.join("coop-20260104T000000.000Z.partial")).unwrap();
        prune(&dir, 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "coop-20260102T000000.000Z",
                "coop-20260103T000000.000Z",
                "coop-20260104T000000.000Z.partial"
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
