//! A family's co-op calendar entries (written by the enrollment's calendar job).

use coop_mechanisms::data::Data;
use coop_mechanisms::store::calendar::{self, EventRow};
use uuid::Uuid;

use crate::families::{Families, Family};
use crate::{Ctx, Result};

#[derive(Clone)]
pub struct Calendar {
    data: Data,
    families: Families,
}

impl Calendar {
    pub(crate) fn new(data: Data, families: Families) -> Self {
        Self { data, families }
    }

    /// The family and its entries in date order: a replica at the caller's floor.
    pub async fn for_family(&self, ctx: &Ctx, family_id: Uuid) -> Result<(Family, Vec<EventRow>)> {
        let family = self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        let events = self
            .data
            .read(&ctx.read_after, |db| async move {
                calendar::for_family(&db, coop_id, family_id).await
            })
            .await?;
        Ok((family, events))
    }
}
