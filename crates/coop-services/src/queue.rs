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
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                jobs::list(&db, coop_id, state, kind.map(Kind::as_str), limit).await
            })
            .await?)
    }

    /// Gives a dead job a fresh set of attempts (coordinators).
    pub async fn retry(&self, ctx: &Ctx, id: Uuid) -> Result<JobRow> {
        ctx.coordinator()?;
        match jobs::retry_dead(self.data.primary(), ctx.coop_id(), id).await? {
            RetryOutcome::Retried(row) => {
                self.data.committed(&ctx.read_after, &[]).await;
                Ok(row)
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
