//! Families of a co-op. Reads of one family are cached (every family page and
//! API read goes through it); lists are read from a replica at the caller's
//! floor. Enrolling commits the family with the jobs it causes (welcome email
//! with an invite, the coordinators' notice, calendar entries).

use std::sync::Arc;

use coop_domain::NewFamily;
use coop_mechanisms::cache::CacheKey;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::OnUnique;
use coop_mechanisms::store::families::{self, DeleteOutcome, FamilyFields, UpdateOutcome};
use coop_mechanisms::store::idempotency::Claim;
use uuid::Uuid;

pub use coop_mechanisms::store::families::FamilyRow as Family;

use crate::jobs::{self, InlineJobs};
use crate::{Ctx, Error, Result};

/// Largest page of a family list.
pub const MAX_PAGE: u32 = 200;

/// One page of families, oldest first.
pub struct Page {
    pub items: Vec<Family>,
    /// The last family's id when another page follows.
    pub next_after: Option<Uuid>,
}

#[derive(Clone)]
pub struct Families {
    data: Data,
    job_max_attempts: u32,
    inline: Option<Arc<InlineJobs>>,
}

impl Families {
    pub(crate) fn new(data: Data, job_max_attempts: u32, inline: Option<Arc<InlineJobs>>) -> Self {
        Self {
            data,
            job_max_attempts,
            inline,
        }
    }

    /// One family: cached; read-your-writes. Another co-op's family, or (for a
    /// family account) any family but its own, is not found.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Family> {
        if !ctx.may_see_family(id) {
            return Err(not_found());
        }
        let coop_id = ctx.coop_id();
        self.data
            .cached(&key(coop_id, id), &ctx.read_after, |db| async move {
                families::get(&db, coop_id, id).await
            })
            .await?
            .ok_or_else(not_found)
    }

    /// A page of the co-op's families after `after` (coordinators): a replica
    /// at the caller's floor; not cached (pages shift with every enrollment).
    pub async fn list(&self, ctx: &Ctx, after: Option<Uuid>, limit: u32) -> Result<Page> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let limit = limit.clamp(1, MAX_PAGE);
        // One extra row tells whether another page follows.
        let mut items = self
            .data
            .read(&ctx.read_after, |db| async move {
                families::list(&db, coop_id, after, limit + 1).await
            })
            .await?;
        let next_after = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|row| row.id)
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// Families whose name or email contains `text`, a page after `after`
    /// (coordinators): a replica at the caller's floor.
    pub async fn search(
        &self,
        ctx: &Ctx,
        text: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Page> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let limit = limit.clamp(1, MAX_PAGE);
        let text = text.trim().to_owned();
        let mut items = self
            .data
            .read(&ctx.read_after, |db| {
                let text = text.clone();
                async move { families::search(&db, coop_id, &text, after, limit + 1).await }
            })
            .await?;
        let next_after = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|row| row.id)
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    /// How many families the co-op has (coordinators).
    pub async fn count(&self, ctx: &Ctx) -> Result<i64> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                families::count(&db, coop_id).await
            })
            .await?)
    }

    /// Sends the family a new welcome email with a fresh invite (coordinators).
    pub async fn resend_invite(&self, ctx: &Ctx, id: Uuid) -> Result<()> {
        ctx.coordinator()?;
        let family = self.get(ctx, id).await?;
        let job = jobs::invite_again_job(family.coop_id, family.id, self.job_max_attempts);
        coop_mechanisms::store::jobs::enqueue(self.data.primary(), &[job]).await?;
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(())
    }

    /// Enrolls a family (coordinators). Under an Idempotency-Key whose earlier
    /// holder enrolled it already, answers with that family instead.
    pub async fn enroll(
        &self,
        ctx: &Ctx,
        new: &NewFamily,
        claim: Option<&Claim>,
    ) -> Result<Family> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        if let Some(claim) = claim
            && let Some([id]) = claim.committed_as()?
        {
            // An earlier attempt with this key enrolled the family, then its
            // instance died before answering: answer for it.
            return families::get(self.data.primary(), coop_id, id)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(
                        "this request enrolled a family that has since been removed".into(),
                    )
                });
        }
        let max_attempts = self.job_max_attempts;
        // The family and the jobs its enrollment causes commit together: no
        // welcome email is lost to a crash between the two.
        let (row, jobs) = families::insert(
            self.data.primary(),
            coop_id,
            &fields(new),
            |row| jobs::enrollment_jobs(row.coop_id, row.id, max_attempts),
            claim,
        )
        .await
        .on_unique(email_taken)?
        .ok_or(Error::TakenOver)?;
        // A new family is in no cache (absence is not cached): nothing to
        // invalidate, but the caller's reads must see it.
        self.data.committed(&ctx.read_after, &[]).await;
        if let Some(inline) = &self.inline {
            inline.run(&jobs).await;
        }
        Ok(row)
    }

    /// Replaces a family's fields (coordinators); with `expected`, only if it
    /// is still at that version.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: Uuid,
        new: &NewFamily,
        expected: Option<i64>,
    ) -> Result<Family> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let outcome = families::update(self.data.primary(), coop_id, id, &fields(new), expected)
            .await
            .on_unique(email_taken)?;
        match outcome {
            UpdateOutcome::Updated { row, needs_invite } => {
                self.data
                    .committed(&ctx.read_after, &[key(coop_id, id)])
                    .await;
                if needs_invite {
                    // The old invites were revoked with the change; the new
                    // address gets one of its own. Should this enqueue fail,
                    // the coordinator's "resend invite" sends it.
                    let job = jobs::invite_again_job(coop_id, id, self.job_max_attempts);
                    coop_mechanisms::store::jobs::enqueue(self.data.primary(), &[job]).await?;
                }
                Ok(row)
            }
            UpdateOutcome::NotFound => Err(not_found()),
            UpdateOutcome::VersionMismatch { current } => Err(version_mismatch(current)),
        }
    }

    /// Removes a family (coordinators); with `expected`, only if it is still at
    /// that version.
    pub async fn remove(&self, ctx: &Ctx, id: Uuid, expected: Option<i64>) -> Result<()> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        match families::delete(self.data.primary(), coop_id, id, expected).await? {
            DeleteOutcome::Deleted { ended_sessions } => {
                let mut changed = vec![
                    key(coop_id, id),
                    children_key(coop_id, id),
                    enrollments_key(coop_id, id),
                ];
                changed.extend(
                    ended_sessions
                        .iter()
                        .map(|hash| coop_mechanisms::sessions::cache_key(hash)),
                );
                self.data.committed(&ctx.read_after, &changed).await;
                Ok(())
            }
            DeleteOutcome::NotFound => Err(not_found()),
            DeleteOutcome::VersionMismatch { current } => Err(version_mismatch(current)),
            DeleteOutcome::HasEnrollments => Err(Error::conflict(
                "family_has_enrollments",
                "a child of this family holds a class seat or a waitlist place; \
                 drop those classes first so the seats go to the waitlist",
            )),
        }
    }
}

/// The family's entry in the shared cache (also for services that change a
/// family's row themselves, such as an account's email change).
pub(crate) fn key(coop_id: Uuid, id: Uuid) -> CacheKey {
    CacheKey::new("family", format_args!("{coop_id}:{id}"))
}

/// The family's children (`children::Children::of_family`). Named here, beside
/// the family's own key, because more than one service changes what is under
/// a family's keys: children are added and renamed by `Children`, and go
/// with the family when it is removed.
pub(crate) fn children_key(coop_id: Uuid, family_id: Uuid) -> CacheKey {
    CacheKey::new("children", format_args!("{coop_id}:{family_id}"))
}

/// The family's enrollments (`enrollments::Enrollments::of_family`), with each
/// child's first name: changed by the family's own enrollments and drops, by
/// the promotion of one of its children caused by another family's drop or a
/// capacity raise, and by a child's rename.
pub(crate) fn enrollments_key(coop_id: Uuid, family_id: Uuid) -> CacheKey {
    CacheKey::new("enrollments", format_args!("{coop_id}:{family_id}"))
}

fn fields(new: &NewFamily) -> FamilyFields<'_> {
    FamilyFields {
        family_name: &new.family_name,
        email: &new.email,
        enrollment_date: new.enrollment_date,
    }
}

pub(crate) fn not_found() -> Error {
    Error::NotFound("no family with that id in your co-op".into())
}

fn version_mismatch(current: i64) -> Error {
    Error::VersionMismatch(format!(
        "the family changed since you read it (it is now at version {current}); \
         read it again and reapply your change"
    ))
}

fn email_taken() -> Error {
    Error::field_conflict(
        "email_taken",
        "another family in this co-op has this email",
        "email",
        "is already used by another family in this co-op",
    )
}
