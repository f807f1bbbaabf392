//! Classes of a semester: the catalog (the hottest read of enrollment day),
//! one class, its roster and calendar, and a coordinator's edits.
//!
//! The catalog is assembled from two kinds of cache entries: the semester's
//! list of class ids (changes only when a class is added) and each class's
//! row with its seat counters (changes with every enrollment in it). An
//! enrollment invalidates one class, so the catalog of a busy semester stays
//! cached but for the class that just changed, and concurrent misses of that
//! class make one database read (per instance; the lease covers the rest).
//!
//! A class's waitlist (its tickets in order, from which a family's page says
//! "waitlist, number 3") is cached beside its row and dropped with it: every
//! write that changes one may change the other.

use std::sync::Arc;

use coop_domain::courses::NewClass;
use coop_mechanisms::cache::CacheKey;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses::{self, ClassRow};
use coop_mechanisms::store::enrollments::{self, Promotion, RosterLine, UpdateClass};
use futures_util::{StreamExt, stream};
use uuid::Uuid;

use crate::families;
use crate::semesters::{self, Semester};
use crate::{Ctx, Error, Result, jobs};

pub type Class = ClassRow;

#[derive(Clone)]
pub struct Classes {
    data: Data,
    semesters: semesters::Semesters,
    job_max_attempts: u32,
}

pub(crate) fn key(coop_id: Uuid, id: Uuid) -> CacheKey {
    CacheKey::new("class", format_args!("{coop_id}:{id}"))
}

/// The class's waitlist tickets, in order.
pub(crate) fn waitlist_key(coop_id: Uuid, id: Uuid) -> CacheKey {
    CacheKey::new("waitlist", format_args!("{coop_id}:{id}"))
}

/// What a change to a class's seats or waitlist invalidates: the class row,
/// its waitlist, and the enrollments of each family whose child it placed
/// (the caller's own and any promoted from the waitlist), on any instance.
pub(crate) fn seat_change_keys(
    coop_id: Uuid,
    id: Uuid,
    placed: impl IntoIterator<Item = Uuid>,
) -> Vec<CacheKey> {
    let mut keys = vec![key(coop_id, id), waitlist_key(coop_id, id)];
    for family_id in placed {
        let family = families::enrollments_key(coop_id, family_id);
        if !keys.contains(&family) {
            keys.push(family);
        }
    }
    keys
}

/// How many of a catalog's classes are looked up at once (see
/// [`Classes::catalog`]).
const CATALOG_LOOKUPS_AT_ONCE: usize = 32;

pub(crate) fn catalog_key(coop_id: Uuid, semester_id: Uuid) -> CacheKey {
    CacheKey::new("catalog", format_args!("{coop_id}:{semester_id}"))
}

/// The ledger line of a class's fee.
pub(crate) fn fee_line(class: &ClassRow, child: &str) -> String {
    format!("{} — {child}", class.title)
}

impl Classes {
    pub(crate) fn new(data: Data, semesters: semesters::Semesters, job_max_attempts: u32) -> Self {
        Self {
            data,
            semesters,
            job_max_attempts,
        }
    }

    /// Adds a class to a semester (coordinators).
    pub async fn create(&self, ctx: &Ctx, semester_id: Uuid, new: &NewClass) -> Result<Class> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        self.semesters.get(ctx, semester_id).await?;
        self.check_teacher(ctx, new).await?;
        let row = courses::insert_class(self.data.primary(), coop_id, semester_id, new).await?;
        self.data
            .committed(&ctx.read_after, &[catalog_key(coop_id, semester_id)])
            .await;
        Ok(row)
    }

    /// Replaces a class's fields (coordinators): capacity never below the
    /// seats taken; a raise promotes from the waitlist at once.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: Uuid,
        new: &NewClass,
        expected: Option<i64>,
    ) -> Result<Class> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        self.check_teacher(ctx, new).await?;
        let attempts = self.job_max_attempts;
        let promotion = Promotion {
            job: &|coop_id, enrollment_id| jobs::promotion_job(coop_id, enrollment_id, attempts),
            fee_description: &fee_line,
        };
        let outcome = enrollments::update_class(
            self.data.primary(),
            coop_id,
            id,
            new,
            expected,
            coop_domain::clock::now(),
            &promotion,
        )
        .await?;
        match outcome {
            UpdateClass::Updated { class, promoted } => {
                // A raise promotes from the waitlist: those families' pages
                // must show the seat.
                let changed = seat_change_keys(coop_id, id, promoted.iter().map(|e| e.family_id));
                self.data.committed(&ctx.read_after, &changed).await;
                Ok(*class)
            }
            UpdateClass::NotFound => Err(not_found()),
            UpdateClass::VersionMismatch { current } => Err(Error::VersionMismatch(format!(
                "the class changed since you read it (it is now at version {current}); \
                 read it again and reapply your change"
            ))),
            UpdateClass::CapacityBelowSeats { seats_taken } => Err(Error::field_conflict(
                "capacity_below_seats",
                format!("{seats_taken} seats are taken; capacity cannot go below that"),
                "capacity",
                format!("must be at least {seats_taken}, the seats taken"),
            )),
        }
    }

    async fn check_teacher(&self, ctx: &Ctx, new: &NewClass) -> Result<()> {
        if let Some(teacher) = new.teacher_user_id
            && !courses::is_member(self.data.primary(), ctx.coop_id(), teacher).await?
        {
            return Err(coop_domain::Invalid::field(
                "teacher_user_id",
                "is not a user of this co-op (the coordinator or a parent of a family)",
            )
            .into());
        }
        Ok(())
    }

    /// One class with its seats: cached; read-your-writes.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Class> {
        self.cached(ctx, id).await?.ok_or_else(not_found)
    }

    /// One class from the cache; `None` when there is no such class.
    pub(crate) async fn cached(&self, ctx: &Ctx, id: Uuid) -> Result<Option<Class>> {
        Ok(self.shared(ctx, id).await?.map(Arc::unwrap_or_clone))
    }

    /// One class: the cache's own copy, not a clone (the catalog reads
    /// hundreds at once, and its callers may recognise a copy they have
    /// already rendered).
    async fn shared(&self, ctx: &Ctx, id: Uuid) -> Result<Option<Arc<Class>>> {
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .cached_shared(&key(coop_id, id), &ctx.read_after, |db| async move {
                courses::get_class(&db, coop_id, id).await
            })
            .await?)
    }

    /// The class's waitlist tickets in order: cached; read-your-writes.
    pub(crate) async fn waitlist(&self, ctx: &Ctx, id: Uuid) -> Result<Vec<i64>> {
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .cached(
                &waitlist_key(coop_id, id),
                &ctx.read_after,
                |db| async move {
                    enrollments::waitlist_tickets(&db, coop_id, id)
                        .await
                        .map(Some)
                },
            )
            .await?
            .unwrap_or_default())
    }

    /// A semester's classes with their seats, in creation order: every entry
    /// from the cache (see the module comment), shared rather than cloned.
    pub async fn catalog(
        &self,
        ctx: &Ctx,
        semester_id: Uuid,
    ) -> Result<(Semester, Vec<Arc<Class>>)> {
        let semester = self.semesters.get(ctx, semester_id).await?;
        let coop_id = ctx.coop_id();
        let ids: Vec<Uuid> = self
            .data
            .cached(
                &catalog_key(coop_id, semester_id),
                &ctx.read_after,
                |db| async move {
                    courses::class_ids(&db, coop_id, semester_id)
                        .await
                        .map(Some)
                },
            )
            .await?
            .unwrap_or_default();
        // Looked up a few at a time, in order: most are in L1 and answer at
        // once, and the classes a recent write invalidated load side by side.
        // One at a time, every catalog read waited out each reload in turn,
        // and the concurrent ones queued behind the same reloads together.
        let found: Vec<Result<Option<Arc<Class>>>> = stream::iter(ids)
            .map(|id| self.shared(ctx, id))
            .buffered(CATALOG_LOOKUPS_AT_ONCE)
            .collect()
            .await;
        let mut classes = Vec::with_capacity(found.len());
        for class in found {
            // A class removed since the id list was cached is simply left out.
            if let Some(class) = class? {
                classes.push(class);
            }
        }
        Ok((semester, classes))
    }

    /// The enrolled children, then the waitlist in order: coordinators and the
    /// class's teacher.
    pub async fn roster(&self, ctx: &Ctx, id: Uuid) -> Result<(Class, Vec<RosterLine>)> {
        let class = self.get(ctx, id).await?;
        self.may_see_roster(ctx, &class)?;
        let coop_id = ctx.coop_id();
        let lines = self
            .data
            .read(&ctx.read_after, |db| async move {
                enrollments::roster(&db, coop_id, id).await
            })
            .await?;
        Ok((class, lines))
    }

    /// The classes the caller teaches.
    pub async fn taught(&self, ctx: &Ctx) -> Result<Vec<Class>> {
        let (coop_id, user_id) = (ctx.coop_id(), ctx.caller.user_id);
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                courses::classes_taught_by(&db, coop_id, user_id).await
            })
            .await?)
    }

    /// A class's meetings for its teacher's calendar (coordinators too).
    pub async fn for_calendar(&self, ctx: &Ctx, id: Uuid) -> Result<(Class, Semester)> {
        let class = self.get(ctx, id).await?;
        self.may_see_roster(ctx, &class)?;
        let semester = self.semesters.get(ctx, class.semester_id).await?;
        Ok((class, semester))
    }

    fn may_see_roster(&self, ctx: &Ctx, class: &Class) -> Result<()> {
        if ctx.coordinator().is_ok() || class.teacher_user_id == Some(ctx.caller.user_id) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "only the class's teacher and the co-op's coordinators see its roster".into(),
            ))
        }
    }
}

pub(crate) fn not_found() -> Error {
    Error::NotFound("no class with that id in your co-op".into())
}
