//! What the embedded tier's scheduled backups last did, for `/ready`'s
//! details. The scheduler (in the ops crate, started by `coop serve`) records
//! here; the readiness handler (in the web crate) reads. Neither crate may use
//! the other, so the value lives in the layer both stand on. The same facts
//! are exported as metrics by the scheduler.

use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupStatus {
    /// Where backups go.
    pub folder: String,
    /// RFC 3339 time of the last backup that completed, if any.
    pub last_good_at: Option<String>,
    /// The last attempt's error, when it failed (cleared by a success).
    pub last_error: Option<String>,
}

static STATUS: Mutex<Option<BackupStatus>> = Mutex::new(None);

/// Scheduled backups are on: `/ready` shows their status from now on.
pub fn enable(folder: String) {
    if let Ok(mut status) = STATUS.lock() {
        *status = Some(BackupStatus {
            folder,
            ..BackupStatus::default()
        });
    }
}

pub fn record_success(taken_at: String) {
    if let Ok(mut status) = STATUS.lock()
        && let Some(status) = status.as_mut()
    {
        status.last_good_at = Some(taken_at);
        status.last_error = None;
    }
}

pub fn record_failure(error: String) {
    if let Ok(mut status) = STATUS.lock()
        && let Some(status) = status.as_mut()
    {
        status.last_error = Some(error);
    }
}

/// `None` when this process takes no scheduled backups.
pub fn current() -> Option<BackupStatus> {
    STATUS.lock().ok().and_then(|status| status.clone())
}
