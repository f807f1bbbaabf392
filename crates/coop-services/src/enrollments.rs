//! Enrolling children in classes and dropping them (the rules are in
//! `coop_domain::courses`, the concurrency in `store::enrollments`), a
//! family's enrollments, its schedule and its balance.
//!
//! A family's enrollments are read on every catalog and home page, so they
//! are cached, in pieces that each change with one kind of write: the
//! family's own rows (`families::enrollments_key`: its enrollments, drops and
//! promotions, a child's rename), each class's row (its title and meetings)
//! and each class's waitlist (the place in line, which moves when a family
//! ahead drops or is promoted). A write invalidates exactly the pieces it
//! changed, including the families whose children it promoted.

use coop_domain::Role;
use coop_domain::courses::EnrollmentState;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses;
use coop_mechanisms::store::enrollments::{
    self, Drop, DropOutcome, Enroll, EnrollOutcome, EnrollmentRow, Promotion, ScheduledClass,
};
use coop_mechanisms::store::ledger::{self, Balance, Due, LedgerLine};
use uuid::Uuid;

use crate::classes::{self, Class, Classes, fee_line, seat_change_keys};
use crate::families::{Families, enrollments_key, not_found as family_not_found};
use crate::{Ctx, Error, Result, children, jobs};

/// One of a family's current enrollments (not dropped), with its class and
/// the place in line.
#[derive(Debug, Clone)]
pub struct FamilyEnrollment {
    pub id: Uuid,
    pub class_id: Uuid,
    pub class_title: String,
    pub semester_id: Uuid,
    pub child_id: Uuid,
    pub first_name: String,
    pub state: EnrollmentState,
    /// 1 = next to get a seat (waitlisted only).
    pub position: Option<i64>,
    pub meetings: String,
    pub updated_at: time::OffsetDateTime,
}

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
    classes: Classes,
    job_max_attempts: u32,
}

impl Enrollments {
    pub(crate) fn new(
        data: Data,
        families: Families,
        classes: Classes,
        job_max_attempts: u32,
    ) -> Self {
        Self {
            data,
            families,
            classes,
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
                    seat_change_keys(coop_id, class_id, [enrollment.family_id])
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
            DropOutcome::Dropped {
                dropped, promoted, ..
            } => {
                // The freed seat went to the first of the waitlist, maybe
                // another family's child: its pages must show the seat.
                let families =
                    std::iter::once(dropped.family_id).chain(promoted.iter().map(|e| e.family_id));
                let changed = seat_change_keys(coop_id, class_id, families);
                self.data.committed(&ctx.read_after, &changed).await;
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

    /// A family's current enrollments, by child's name and class title:
    /// cached (see the module comment); read-your-writes, so a family that
    /// just enrolled, or whose child was just promoted, sees it on any
    /// instance.
    pub async fn of_family(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<FamilyEnrollment>> {
        self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        let rows = self
            .data
            .cached(
                &enrollments_key(coop_id, family_id),
                &ctx.read_after,
                |db| async move {
                    enrollments::of_family(&db, coop_id, family_id)
                        .await
                        .map(Some)
                },
            )
            .await?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            // Classes are never deleted; should one be missing, leave it out
            // rather than fail the family's page.
            let Some(class) = self.classes.cached(ctx, row.class_id).await? else {
                continue;
            };
            let position = match (row.state, row.ticket) {
                (EnrollmentState::Waitlisted, Some(ticket)) => {
                    let line = self.classes.waitlist(ctx, row.class_id).await?;
                    Some(line.partition_point(|t| *t <= ticket) as i64)
                }
                _ => None,
            };
            out.push(FamilyEnrollment {
                id: row.id,
                class_id: row.class_id,
                class_title: class.title,
                semester_id: class.semester_id,
                child_id: row.child_id,
                first_name: row.first_name,
                state: row.state,
                position,
                meetings: class.meetings,
                updated_at: row.updated_at,
            });
        }
        out.sort_by(|a, b| {
            (&a.first_name, &a.class_title, a.id).cmp(&(&b.first_name, &b.class_title, b.id))
        });
        Ok(out)
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
