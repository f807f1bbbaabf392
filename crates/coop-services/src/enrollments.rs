//! Enrolling children in classes and dropping them (the rules are in
//! `coop_domain::courses`, the concurrency in `store::enrollments`), a
//! family's enrollments, its schedule and its balance.

use coop_domain::Role;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses;
use coop_mechanisms::store::enrollments::{
    self, Drop, DropOutcome, Enroll, EnrollOutcome, EnrollmentRow, FamilyEnrollment, Promotion,
    ScheduledClass,
};
use coop_mechanisms::store::ledger::{self, Balance, Due, LedgerLine};
use uuid::Uuid;

use crate::classes::{self, Class, fee_line};
use crate::families::{Families, not_found as family_not_found};
use crate::{Ctx, Error, Result, children, jobs};

/// Where a child stands after an enrollment request.
pub struct Placement {
    pub enrollment: EnrollmentRow,
    /// Place in line when waitlisted (1 = next).
    pub position: Option<i64>,
    pub class: Class,
    /// False when the child already held this place: nothing changed.
    pub changed: bool,
}

#[derive(Clone)]
pub struct Enrollments {
    data: Data,
    families: Families,
    job_max_attempts: u32,
}

impl Enrollments {
    pub(crate) fn new(data: Data, families: Families, job_max_attempts: u32) -> Self {
        Self {
            data,
            families,
            job_max_attempts,
        }
    }

    /// Enrolls a child (its family, or a coordinator) in a class: a seat while
    /// there is one, else the waitlist. Families enroll only while
    /// registration is open; coordinators at any time before the semester ends.
    pub async fn enroll(&self, ctx: &Ctx, class_id: Uuid, child_id: Uuid) -> Result<Placement> {
        let coop_id = ctx.coop_id();
        self.child_of_caller(ctx, child_id).await?;
        let outcome = enrollments::enroll(
            self.data.primary(),
            &Enroll {
                coop_id,
                class_id,
                child_id,
                enforce_window: ctx.caller.role != Role::Coordinator,
                now: coop_domain::clock::now(),
                fee_description: &fee_line,
            },
        )
        .await?;
        match outcome {
            EnrollOutcome::Placed {
                enrollment,
                position,
                class,
                changed,
            } => {
                let changed_keys = if changed {
                    vec![classes::key(coop_id, class_id)]
                } else {
                    vec![]
                };
                self.data.committed(&ctx.read_after, &changed_keys).await;
                Ok(Placement {
                    enrollment,
                    position,
                    class: *class,
                    changed,
                })
            }
            EnrollOutcome::ChildNotFound => Err(children::not_found()),
            EnrollOutcome::ClassNotFound => Err(classes::not_found()),
            EnrollOutcome::NotOpenYet { opens_at } => Err(Error::conflict(
                "registration_not_open",
                format!(
                    "registration for this class opens at {}; come back then",
                    rfc3339(opens_at)
                ),
            )),
            EnrollOutcome::Closed { closed_at } => Err(Error::conflict(
                "registration_closed",
                format!(
                    "registration for this class closed at {}; ask a coordinator if you still need a seat",
                    rfc3339(closed_at)
                ),
            )),
            EnrollOutcome::Ineligible(reason) => Err(Error::Unprocessable {
                code: "not_eligible",
                message: reason,
            }),
            EnrollOutcome::Conflict { class_id, title } => Err(Error::conflict(
                "schedule_conflict",
                format!(
                    "this class meets at the same time as {title} ({class_id}), which the child \
                     is already in or waiting for; drop one of them first"
                ),
            )),
        }
    }

    /// Drops a child from a class (idempotent: a drop of a dropped child is a
    /// success). A freed seat goes to the first child on the waitlist.
    pub async fn drop_child(&self, ctx: &Ctx, class_id: Uuid, child_id: Uuid) -> Result<()> {
        let coop_id = ctx.coop_id();
        self.child_of_caller(ctx, child_id).await?;
        let attempts = self.job_max_attempts;
        let outcome = enrollments::drop(
            self.data.primary(),
            &Drop {
                coop_id,
                class_id,
                child_id,
                now: coop_domain::clock::now(),
                promotion: Promotion {
                    job: &|coop_id, enrollment_id| {
                        jobs::promotion_job(coop_id, enrollment_id, attempts)
                    },
                    fee_description: &fee_line,
                },
                refund_job: &|coop_id, refund_id| jobs::refund_job(coop_id, refund_id, attempts),
            },
        )
        .await?;
        match outcome {
            DropOutcome::Dropped { .. } => {
                self.data
                    .committed(&ctx.read_after, &[classes::key(coop_id, class_id)])
                    .await;
                Ok(())
            }
            DropOutcome::AlreadyDropped => Ok(()),
            DropOutcome::NotEnrolled => Err(Error::NotFound(
                "this child is not enrolled or waitlisted in that class".into(),
            )),
        }
    }

    /// The child, if the caller may act for it (its family, or a coordinator).
    async fn child_of_caller(&self, ctx: &Ctx, child_id: Uuid) -> Result<()> {
        let coop_id = ctx.coop_id();
        let child = courses::get_child(self.data.primary(), coop_id, child_id)
            .await?
            .filter(|child| ctx.may_see_family(child.family_id));
        child.map(|_| ()).ok_or_else(children::not_found)
    }

    /// A family's current enrollments: a replica at the caller's floor, so a
    /// family that just enrolled sees itself enrolled.
    pub async fn of_family(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<FamilyEnrollment>> {
        self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                enrollments::of_family(&db, coop_id, family_id).await
            })
            .await?)
    }

    /// The classes the family's children have seats in, with their semesters.
    pub async fn schedule(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<ScheduledClass>> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                enrollments::schedule_of_family(&db, coop_id, family_id).await
            })
            .await?)
    }

    /// The families that owe the most (coordinators).
    pub async fn dues(&self, ctx: &Ctx, limit: u32) -> Result<Vec<Due>> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                ledger::dues(&db, coop_id, limit).await
            })
            .await?)
    }

    /// What the family owes (per currency) and its ledger.
    pub async fn balance(
        &self,
        ctx: &Ctx,
        family_id: Uuid,
    ) -> Result<(Vec<Balance>, Vec<LedgerLine>)> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let coop_id = ctx.coop_id();
        let balances = self
            .data
            .read(&ctx.read_after, |db| async move {
                ledger::balances(&db, coop_id, family_id).await
            })
            .await?;
        if balances.is_empty() {
            // No money yet: still, another co-op's family is not found.
            self.data
                .read(&ctx.read_after, |db| async move {
                    coop_mechanisms::store::families::get(&db, coop_id, family_id).await
                })
                .await?
                .ok_or_else(family_not_found)?;
        }
        let lines = self
            .data
            .read(&ctx.read_after, |db| async move {
                ledger::lines(&db, coop_id, family_id).await
            })
            .await?;
        Ok((balances, lines))
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}
