//! Helpers for the child processes the cluster starts and watches (nginx, the
//! instances, the workers): tying their life to the supervisor's, signalling
//! them, and telling whether one is still alive.

use anyhow::{Context, bail};
use tokio::process::Command;

/// Asks Linux to SIGTERM the child if the cluster dies (even by SIGKILL), so
/// no instance outlives its supervisor.
pub fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the calling process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) only sends a signal; a stale pid gives ESRCH, handled below.
    if unsafe { libc::kill(pid, signal) } != 0 {
        bail!(
            "could not signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Whether process `pid` still runs.
pub fn process_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
