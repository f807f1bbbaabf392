//! Children of a family. A family manages its own; a coordinator all of the
//! co-op's. A family's list of children is read on every catalog page and
//! home page: cached under `families::children_key`, dropped by every add,
//! change and removal (a change also drops the family's enrollments, which
//! carry the child's first name).

use coop_domain::courses::NewChild;
use coop_mechanisms::data::Data;
use coop_mechanisms::store::courses::{self, ChildRow};
use coop_mechanisms::store::enrollments;
use uuid::Uuid;

use crate::families::{Families, children_key, enrollments_key, not_found as family_not_found};
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
        let coop_id = ctx.coop_id();
        let row = courses::insert_child(self.data.primary(), coop_id, family_id, new)
            .await?
            .ok_or_else(family_not_found)?;
        self.data
            .committed(&ctx.read_after, &[children_key(coop_id, family_id)])
            .await;
        Ok(row)
    }

    /// A family's children: cached; read-your-writes (a child just added is
    /// there, on any instance).
    pub async fn of_family(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<Child>> {
        // Another co-op's family (or another family's account) is not found,
        // even when it has no children.
        self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .cached(
                &children_key(coop_id, family_id),
                &ctx.read_after,
                |db| async move {
                    courses::children_of(&db, coop_id, family_id)
                        .await
                        .map(Some)
                },
            )
            .await?
            .unwrap_or_default())
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
        let coop_id = ctx.coop_id();
        let row = courses::update_child(self.data.primary(), coop_id, family_id, id, new)
            .await?
            .ok_or_else(not_found)?;
        self.data
            .committed(
                &ctx.read_after,
                &[
                    children_key(coop_id, family_id),
                    enrollments_key(coop_id, family_id),
                ],
            )
            .await;
        Ok(row)
    }

    /// Removes a child that holds no seat or waitlist place.
    pub async fn remove(&self, ctx: &Ctx, family_id: Uuid, id: Uuid) -> Result<()> {
        if !ctx.may_see_family(family_id) {
            return Err(family_not_found());
        }
        let coop_id = ctx.coop_id();
        if enrollments::delete_idle_child(self.data.primary(), coop_id, family_id, id).await? {
            // An idle child is in none of the family's enrollments.
            self.data
                .committed(&ctx.read_after, &[children_key(coop_id, family_id)])
                .await;
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
