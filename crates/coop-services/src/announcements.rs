//! Announcements: a coordinator writes to the whole co-op or to one class's
//! families; every recipient gets an email through the job queue (fanned out
//! in batches, see `store::announcements`), and the announcement is readable
//! in the API with its delivery counts.

use coop_domain::NewAnnouncement;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::announcements::{self, AnnouncementRow};
use coop_mechanisms::store::courses;
use uuid::Uuid;

use crate::{Ctx, Error, Result, classes, jobs};

pub type Announcement = AnnouncementRow;

#[derive(Clone)]
pub struct Announcements {
    data: Data,
    job_max_attempts: u32,
}

impl Announcements {
    pub(crate) fn new(data: Data, job_max_attempts: u32) -> Self {
        Self {
            data,
            job_max_attempts,
        }
    }

    /// Coordinators. Commits the announcement and the first fan-out job.
    pub async fn send(&self, ctx: &Ctx, new: &NewAnnouncement) -> Result<Announcement> {
        ctx.coordinator()?;
        let coop_id = ctx.coop_id();
        if let Some(class_id) = new.class_id
            && courses::get_class(self.data.primary(), coop_id, class_id)
                .await?
                .is_none()
        {
            return Err(classes::not_found());
        }
        let id = Uuid::now_v7();
        let fan_out = jobs::fan_out_job(coop_id, id, None, self.job_max_attempts);
        announcements::create(
            self.data.primary(),
            &announcements::NewAnnouncement {
                id,
                coop_id,
                class_id: new.class_id,
                subject: &new.subject,
                body: &new.body,
                author_id: ctx.caller.user_id,
            },
            &fan_out,
        )
        .await?;
        self.data.committed(&ctx.read_after, &[]).await;
        announcements::get(self.data.primary(), coop_id, id)
            .await?
            .ok_or_else(not_found)
    }

    /// One announcement. Families see those addressed to them.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Announcement> {
        let coop_id = ctx.coop_id();
        let family = self.family_filter(ctx);
        let found = self
            .data
            .read(&ctx.read_after, |db| async move {
                announcements::list(&db, coop_id, family).await
            })
            .await?;
        found.into_iter().find(|a| a.id == id).ok_or_else(not_found)
    }

    /// The co-op's announcements, newest first (families: those addressed to them).
    pub async fn list(&self, ctx: &Ctx) -> Result<Vec<Announcement>> {
        let coop_id = ctx.coop_id();
        let family = self.family_filter(ctx);
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                announcements::list(&db, coop_id, family).await
            })
            .await?)
    }

    /// `None` for coordinators (everything); the family's id otherwise (a
    /// teacher's family included).
    fn family_filter(&self, ctx: &Ctx) -> Option<Uuid> {
        match ctx.coordinator() {
            Ok(()) => None,
            Err(_) => Some(ctx.caller.family_id.unwrap_or_default()),
        }
    }
}

fn not_found() -> Error {
    Error::NotFound("no announcement with that id in your co-op".into())
}
