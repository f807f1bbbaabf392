//! Files Coop creates are its own: the data folder, the SQLite database and
//! its WAL, the outbox's emails (which hold invite links) and backups are
//! readable by the account Coop runs as and nobody else.

/// Every file and folder this process creates from now on is private
/// (0600 / 0700): a umask of 077. Process-wide, so it covers files that
/// libraries create too (SQLite's `-wal` and `-shm`, lettre's `.eml`).
pub fn create_private_files() {
    // SAFETY: umask only swaps the process's file-creation mask; it cannot
    // fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}
