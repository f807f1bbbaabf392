//! Children of a family. A family manages its own; a coordinator all of the
//! co-op's.

use coop_domain::courses::NewChild;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses::{self, ChildRow};
use coop_mechanisms::store::enrollments;
use uuid::Uuid;

use crate::families::{Families, not_found as family_not_found};
use crate::{Ctx, Error, Result};

pub type Child = ChildRow;

#[derive(Clone)]
pub struct Children {
    data: Data,
    families: Families,
}

impl Children {
    pub(crate) fn new(data: Data, families: Families) -> Self {
        Self { data, families }
    }

    pub async fn add(&self, ctx: &Ctx, family_id: Uuid, new: &NewChild) -> Result<Child> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let row = courses::insert_child(self.data.primary(), ctx.coop_id(), family_id, new)
            .await?
            .ok_or_else(family_not_found)?;
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(row)
    }

    /// A family's children: a replica at the caller's floor (a child just
    /// added is there).
    pub async fn of_family(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<Child>> {
        // Another co-op's family (or another family's account) is not found,
        // even when it has no children.
        self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                courses::children_of(&db, coop_id, family_id).await
            })
            .await?)
    }

    pub async fn get(&self, ctx: &Ctx, family_id: Uuid, id: Uuid) -> Result<Child> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let coop_id = ctx.coop_id();
        self.data
            .read(&ctx.read_after, |db| async move {
                courses::get_child(&db, coop_id, id).await
            })
            .await?
            .filter(|child| child.family_id == family_id)
            .ok_or_else(not_found)
    }

    pub async fn update(
        &self,
        ctx: &Ctx,
        family_id: Uuid,
        id: Uuid,
        new: &NewChild,
    ) -> Result<Child> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let row = courses::update_child(self.data.primary(), ctx.coop_id(), family_id, id, new)
            .await?
            .ok_or_else(not_found)?;
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(row)
    }

    /// Removes a child that holds no seat or waitlist place.
    pub async fn remove(&self, ctx: &Ctx, family_id: Uuid, id: Uuid) -> Result<()> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let coop_id = ctx.coop_id();
        if enrollments::delete_idle_child(self.data.primary(), coop_id, family_id, id).await? {
            self.data.committed(&ctx.read_after, &[]).await;
            return Ok(());
        }
        match courses::get_child(self.data.primary(), coop_id, id).await? {
            Some(child) if child.family_id == family_id => Err(Error::conflict(
                "child_enrolled",
                format!(
                    "{} holds a class seat or a waitlist place; drop those classes first",
                    child.first_name
                ),
            )),
            _ => Err(not_found()),
        }
    }
}

pub(crate) fn not_found() -> Error {
    Error::NotFound("no child with that id in this family".into())
}
