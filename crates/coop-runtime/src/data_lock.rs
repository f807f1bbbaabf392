//! The lock that keeps `coop transfer` and `coop serve` off one SQLite file at
//! the same time.
//!
//! A transfer copies the embedded tier's database row by row over minutes; a
//! write in between would be missed (or, resumed, doubled), so the source must
//! not change while it is read. Every process that opens the SQLite file for
//! Coop's work (`coop serve`, `coop worker`, `coop migrate`) holds a *shared*
//! `flock` on a file beside the database (`coop.sqlite3.lock`); a transfer
//! takes it *exclusively*, so either one refuses while the other runs, with a
//! message that says which.
//!
//! Why a lock file with `flock` rather than something in SQLite: SQLite has no
//! advisory locks, and holding a transaction open to stand in for one would
//! stop the WAL from being checkpointed for the whole life of the server. A
//! `flock` is released by the kernel when its holder exits however it exits
//! (SIGKILL included), so a crash never leaves a stale lock behind, and
//! several servers' shared locks coexist. (The lock is advisory: a program
//! that is not Coop can still write the file.)

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// A held lock; released on drop (or when the process ends).
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// The lock file of a SQLite database file.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        database.with_file_name(name)
    }

    /// For a process that serves from (or writes) the database: shared with
    /// other such processes, refused while a transfer reads it.
    pub fn serving(database: &Path) -> anyhow::Result<Self> {
        Self::take(database, false).map_err(|err| match err {
            Taken::Busy(path) => anyhow::anyhow!(
                "{} is being copied by `coop transfer` (it holds {}); start Coop again when \
                 the transfer has finished",
                database.display(),
                path.display()
            ),
            Taken::Io(err) => err,
        })
    }

    /// For `coop transfer`: alone on the database, refused while any Coop
    /// process uses it.
    pub fn exclusive(database: &Path) -> anyhow::Result<Self> {
        Self::take(database, true).map_err(|err| match err {
            Taken::Busy(path) => anyhow::anyhow!(
                "{} is in use by a running Coop (`coop serve`, `coop worker` or another \
                 transfer holds {}): stop it first, so that nothing is written while it is copied",
                database.display(),
                path.display()
            ),
            Taken::Io(err) => err,
        })
    }

    pub fn lock_file(&self) -> &Path {
        &self.path
    }

    fn take(database: &Path, exclusive: bool) -> Result<Self, Taken> {
        let path = Self::path_for(database);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Taken::Io(anyhow::anyhow!(
                    "could not create the data folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Taken::Io(anyhow::anyhow!(
                    "could not open the lock file {}: {e}",
                    path.display()
                ))
            })?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(Taken::Busy(path)),
            Err(TryLockError::Error(e)) => Err(Taken::Io(anyhow::anyhow!(
                "could not lock {}: {e}",
                path.display()
            ))),
        }
    }
}

enum Taken {
    Busy(PathBuf),
    Io(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_share_the_lock_and_a_transfer_excludes_them() {
        let dir = std::env::temp_dir().join(format!("coop-lock-{}", std::process::id()));
        let db = dir.join("coop.sqlite3");
        let one = DataLock::serving(&db).unwrap();
        let two = DataLock::serving(&db).unwrap();
        assert_eq!(one.lock_file(), dir.join("coop.sqlite3.lock"));
        let refused = DataLock::exclusive(&db).unwrap_err().to_string();
        assert!(refused.contains("in use by a running Coop"), "{refused}");
        drop((one, two));
        let transfer = DataLock::exclusive(&db).unwrap();
        let refused = DataLock::serving(&db).unwrap_err().to_string();
        assert!(refused.contains("coop transfer"), "{refused}");
        drop(transfer);
        DataLock::serving(&db).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
