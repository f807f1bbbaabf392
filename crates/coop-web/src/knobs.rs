//! Fault injection and benchmark variants. They are not settings: production
//! never wants them, so they are neither in [`crate::config::Config`] nor in
//! `--help`. In-process tests pass them to `Application::build_with`; the
//! binary reads them from the environment only when built with its
//! `test-knobs` feature (the test suite and `bench/` do so).

use std::time::Duration;

use coop_mechanisms::store::WriteTurns;
use coop_runtime::values::{parse_bool, parse_duration};

#[derive(Debug, Clone, Default)]
pub struct TestKnobs {
    /// Pause between a database read and the cache fill, to make the
    /// stale-set race reproducible (`COOP_CACHE_FILL_DELAY`).
    pub cache_fill_delay: Duration,
    /// Pause between a keyed POST's work and the saving of its response, so a
    /// test can kill an instance in between (`COOP_IDEMPOTENCY_SAVE_DELAY`).
    pub idempotency_save_delay: Duration,
    /// Run an enrollment's jobs before answering, as if there were no queue
    /// (`COOP_JOBS_INLINE`), to measure what the queue buys.
    pub jobs_inline: bool,
    /// Read-your-writes as "the primary for COOP_MAX_REPLICA_LAG after a
    /// write" (`COOP_READ_YOUR_WRITES=sticky`), to measure the WAL-position
    /// routing against the common simpler rule.
    pub sticky_reads: bool,
    /// How the embedded tier's writers take turns (`COOP_SQLITE_WRITERS`:
    /// `requests-first`, the default; `fifo`; `busy`, SQLite's busy handler
    /// alone), to measure what the turns give.
    pub sqlite_writers: WriteTurns,
    /// Keep hyper's buffers on idle keep-alive connections instead of parking
    /// them (`COOP_KEEP_IDLE_BUFFERS`), to measure what parking saves
    /// (issue 19; see `http::serve`).
    pub keep_idle_buffers: bool,
}

impl TestKnobs {
    /// From the variables named above; absent means off.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let duration = |name: &str| {
            var(name)
                .map(|v| parse_duration(&v).map_err(|e| format!("{name}: {e}")))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let sticky_reads = match var("COOP_READ_YOUR_WRITES").as_deref() {
            None | Some("lsn") => false,
            Some("sticky") => true,
            Some(other) => {
                return Err(format!(
                    "COOP_READ_YOUR_WRITES expects lsn or sticky, got {other:?}"
                ));
            }
        };
        let sqlite_writers = match var("COOP_SQLITE_WRITERS").as_deref() {
            None | Some("requests-first") => WriteTurns::RequestsFirst,
            Some("fifo") => WriteTurns::Fifo,
            Some("busy") => WriteTurns::BusyHandler,
            Some(other) => {
                return Err(format!(
                    "COOP_SQLITE_WRITERS expects requests-first, fifo or busy, got {other:?}"
                ));
            }
        };
        Ok(Self {
            cache_fill_delay: duration("COOP_CACHE_FILL_DELAY")?,
            idempotency_save_delay: duration("COOP_IDEMPOTENCY_SAVE_DELAY")?,
            jobs_inline: var("COOP_JOBS_INLINE")
                .map(|v| parse_bool(&v).map_err(|e| format!("COOP_JOBS_INLINE: {e}")))
                .transpose()?
                .unwrap_or(false),
            sticky_reads,
            sqlite_writers,
            keep_idle_buffers: var("COOP_KEEP_IDLE_BUFFERS")
                .map(|v| parse_bool(&v).map_err(|e| format!("COOP_KEEP_IDLE_BUFFERS: {e}")))
                .transpose()?
                .unwrap_or(false),
        })
    }
}
