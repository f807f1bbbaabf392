//! What coordinators see of the job queue, and the one repair they can make:
//! retrying a dead job. The list reads a replica at the caller's floor (a
//! coordinator's view may trail the workers by the replica lag); a retry
//! writes the primary.

use coop_mechanisms::data::Data;
use coop_mechanisms::store::jobs::{self, JobRow, JobState, RetryOutcome};
use uuid::Uuid;

use crate::jobs::Kind;
use crate::{Ctx, Error, Result};

pub const MAX_LIST: u32 = 500;

#[derive(Clone)]
pub struct Queue {
    data: Data,
}

impl Queue {
    pub(crate) fn new(data: Data) -> Self {
        Self { data }
    }

    /// The co-op's jobs, newest first (coordinators).
    pub async fn list(
        &self,
        ctx: &Ctx,
        state: Option<JobState>,
        kind: Option<Kind>,
        limit: u32,
    ) -> Result<Vec<JobRow>> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let limit = limit.clamp(1, MAX_LIST);
        let rows = self
            .data
            .read(&ctx.read_after, |db| async move {
                jobs::list(&db, coop_id, state, kind.map(Kind::as_str), limit).await
            })
            .await?;
        Ok(rows.into_iter().map(for_coordinators).collect())
    }

    /// Gives a dead job a fresh set of attempts (coordinators).
    pub async fn retry(&self, ctx: &Ctx, id: Uuid) -> Result<JobRow> {
        ctx.coordinator()?;
        match jobs::retry_dead(self.data.primary(), ctx.coop_id(), id).await? {
            RetryOutcome::Retried(row) => {
                self.data.committed(&ctx.read_after, &[]).await;
                Ok(for_coordinators(*row))
            }
            RetryOutcome::NotDead(current) => Err(Error::conflict(
                "job_not_dead",
                format!(
                    "only dead jobs can be retried; this one is {}",
                    current.as_str()
                ),
            )),
            RetryOutcome::NotFound => {
                Err(Error::NotFound("no job with that id in your co-op".into()))
            }
        }
    }
}

/// A job as a co-op's coordinators may see it: its error says what went
/// wrong, not where the operator's servers are (the full error is in the
/// worker's log).
fn for_coordinators(mut row: JobRow) -> JobRow {
    row.last_error = row.last_error.map(|error| without_addresses(&error));
    row
}

/// `text` with network addresses (URLs, IP addresses, `host:port`) replaced
/// by "a server".
pub fn without_addresses(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            let core = trimmed.trim_matches(|c: char| "()[]<>,;'\"".contains(c));
            if names_an_address(core) {
                word.replacen(core, "a server", 1)
            } else {
                word.to_owned()
            }
        })
        .collect()
}

fn names_an_address(word: &str) -> bool {
    if word.contains("://") || word.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if word.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    // host.name:port
    match word.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && host.contains('.')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::without_addresses;

    #[test]
    fn errors_keep_their_words_and_lose_their_addresses() {
        assert_eq!(
            without_addresses("Connection refused to 10.0.0.5:25 (os error 111)"),
            "Connection refused to a server (os error 111)"
        );
        assert_eq!(
            without_addresses("POST https://pay.internal:8443/charges failed: timeout"),
            "POST a server failed: timeout"
        );
        assert_eq!(
            without_addresses("smtp.corp.example:587 said 451 4.3.0 try again later"),
            "a server said 451 4.3.0 try again later"
        );
        assert_eq!(
            without_addresses("451 4.3.0 try again later"),
            "451 4.3.0 try again later"
        );
    }
}
