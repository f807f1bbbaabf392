//! Deleting a co-op: a coordinator asks (confirming with their password),
//! the coordinators are emailed, and after the grace period jobs delete
//! everything of the co-op in batches (`store::deletion`). Until then the
//! co-op works as before (no new invites go out), everyone signed in sees
//! the date, and a coordinator can cancel.

use std::time::Duration;

use coop_domain::{Invalid, PasswordHash};
use coop_mechanisms::data::Data;
use coop_mechanisms::hashing::Hasher;
use coop_mechanisms::store::accounts as account_store;
use coop_mechanisms::store::deletion::{self, CancelOutcome, DeletionRow};
use coop_mechanisms::store::jobs::now_ms;

use crate::{Ctx, Error, Result, jobs};

pub type Deletion = DeletionRow;

#[derive(Clone)]
pub struct CoopDeletion {
    data: Data,
    hasher: Hasher,
    grace: Duration,
    job_max_attempts: u32,
}

impl CoopDeletion {
    pub(crate) fn new(data: Data, hasher: Hasher, grace: Duration, job_max_attempts: u32) -> Self {
        Self {
            data,
            hasher,
            grace,
            job_max_attempts,
        }
    }

    /// How long a deletion waits (COOP_DELETION_GRACE).
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Coordinators, with their password: schedules the deletion for the
    /// end of the grace period, with the coordinators' notice.
    pub async fn schedule(&self, ctx: &Ctx, password: String) -> Result<Deletion> {
        ctx.coordinator()?;
        let primary = self.data.primary();
        let user = account_store::user(primary, ctx.caller.user_id)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !self
            .hasher
            .verify(Some(PasswordHash(user.password_hash)), password)
            .await?
        {
            return Err(Invalid::field("password", "is not your password").into());
        }
        let coop_id = ctx.coop_id();
        if let Some(existing) = deletion::get(primary, coop_id).await? {
            return Err(already(&existing));
        }
        let requested_at = now_ms();
        let deletes_at = requested_at.saturating_add(self.grace.as_millis() as i64);
        let attempts = self.job_max_attempts;
        let jobs = [
            jobs::delete_coop_job(coop_id, requested_at, 0, deletes_at, attempts),
            jobs::deletion_notice_job(coop_id, requested_at, attempts),
        ];
        let scheduled = deletion::schedule(
            primary,
            coop_id,
            ctx.caller.user_id,
            requested_at,
            deletes_at,
            &jobs,
        )
        .await?;
        let Some(scheduled) = scheduled else {
            // Another coordinator's request committed first.
            let existing = deletion::get(primary, coop_id).await?;
            return Err(existing.map_or_else(
                || {
                    Error::conflict(
                        "deletion_scheduled",
                        "this co-op's deletion changed meanwhile; try again",
                    )
                },
                |existing| already(&existing),
            ));
        };
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(scheduled)
    }

    /// Coordinators: cancels a deletion that has not begun.
    pub async fn cancel(&self, ctx: &Ctx) -> Result<()> {
        ctx.coordinator()?;
        match deletion::cancel(self.data.primary(), ctx.coop_id()).await? {
            CancelOutcome::Cancelled => {
                self.data.committed(&ctx.read_after, &[]).await;
                Ok(())
            }
            CancelOutcome::NotScheduled => Err(not_scheduled()),
            CancelOutcome::Started => Err(Error::conflict(
                "deletion_started",
                "the co-op's deletion has begun and can no longer be stopped",
            )),
        }
    }

    /// The scheduled deletion, if any (everyone of the co-op may see it).
    pub async fn get(&self, ctx: &Ctx) -> Result<Deletion> {
        let coop_id = ctx.coop_id();
        self.data
            .read(&ctx.read_after, |db| async move {
                deletion::get(&db, coop_id).await
            })
            .await?
            .ok_or_else(not_scheduled)
    }
}

fn already(existing: &DeletionRow) -> Error {
    let when = crate::archive::rfc3339(coop_domain::clock::from_unix_ms(existing.deletes_at));
    Error::conflict(
        "deletion_scheduled",
        format!(
            "this co-op's deletion is scheduled already, for {when}; cancel it first to \
             schedule another"
        ),
    )
}

fn not_scheduled() -> Error {
    Error::NotFound("no deletion of this co-op is scheduled".into())
}
