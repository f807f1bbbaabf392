//! Semesters: their dates, registration window and holidays. A semester is
//! read on every enrollment page and catalog, and the co-op's list of them on
//! every catalog page and dashboard: both cached, both dropped by every
//! create and update.

use coop_domain::courses::NewSemester;
use coop_mechanisms::cache::CacheKey;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses::{self, SemesterRow};
use uuid::Uuid;

use crate::{Ctx, Error, Result};

pub type Semester = SemesterRow;

#[derive(Clone)]
pub struct Semesters {
    data: Data,
}

pub(crate) fn key(coop_id: Uuid, id: Uuid) -> CacheKey {
    CacheKey::new("semester", format_args!("{coop_id}:{id}"))
}

/// The co-op's list of semesters.
pub(crate) fn list_key(coop_id: Uuid) -> CacheKey {
    CacheKey::new("semesters", coop_id)
}

impl Semesters {
    pub(crate) fn new(data: Data) -> Self {
        Self { data }
    }

    /// Coordinators.
    pub async fn create(&self, ctx: &Ctx, new: &NewSemester) -> Result<Semester> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        let row = courses::insert_semester(self.data.primary(), coop_id, new).await?;
        self.data
            .committed(&ctx.read_after, &[list_key(coop_id)])
            .await;
        Ok(row)
    }

    /// Coordinators; with `expected`, only if still at that version.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: Uuid,
        new: &NewSemester,
        expected: Option<i64>,
    ) -> Result<Semester> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        match courses::update_semester(self.data.primary(), coop_id, id, new, expected).await? {
            Some(row) => {
                self.data
                    .committed(&ctx.read_after, &[key(coop_id, id), list_key(coop_id)])
                    .await;
                Ok(row)
            }
            None => match courses::get_semester(self.data.primary(), coop_id, id).await? {
                Some(current) => Err(Error::VersionMismatch(format!(
                    "the semester changed since you read it (it is now at version {}); \
                     read it again and reapply your change",
                    current.version
                ))),
                None => Err(not_found()),
            },
        }
    }

    /// Any member: cached; read-your-writes.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Semester> {
        let coop_id = ctx.coop_id();
        self.data
            .cached(&key(coop_id, id), &ctx.read_after, |db| async move {
                courses::get_semester(&db, coop_id, id).await
            })
            .await?
            .ok_or_else(not_found)
    }

    /// Every semester, newest first: cached; read-your-writes.
    pub async fn list(&self, ctx: &Ctx) -> Result<Vec<Semester>> {
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .cached(&list_key(coop_id), &ctx.read_after, |db| async move {
                courses::list_semesters(&db, coop_id).await.map(Some)
            })
            .await?
            .unwrap_or_default())
    }
}

pub(crate) fn not_found() -> Error {
    Error::NotFound("no semester with that id in your co-op".into())
}
