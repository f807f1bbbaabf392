//! A family's co-op calendar entries (written by the enrollment's calendar job).

use coop_domain::{Role, token};
use coop_mechanisms::data::{Data, ReadAfter};
use coop_mechanisms::store::calendar::{self, EventRow};
use uuid::Uuid;

use crate::families::{Families, Family};
use crate::{Caller, Ctx, Result};

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

    /// A new secret subscription address for the family's calendar (the
    /// family itself or a coordinator); the previous one stops working.
    /// Returns the token, which is stored only as its hash.
    pub async fn new_feed(&self, ctx: &Ctx, family_id: Uuid) -> Result<String> {
        let family = self.families.get(ctx, family_id).await?;
        let feed = token::generate();
        calendar::set_feed(
            self.data.primary(),
            family.coop_id,
            family.id,
            &token::hash(&feed),
        )
        .await?;
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(feed)
    }

    /// Who may read a subscription: the family it belongs to, with nothing
    /// but read access to its own calendar (calendar apps send no session).
    /// Read from a replica: a link made a moment ago may take one poll to work.
    pub async fn feed_reader(&self, feed: &str) -> Result<Option<Ctx>> {
        if !token::plausible(feed) {
            return Ok(None);
        }
        let hash = token::hash(feed);
        let owner = self
            .data
            .read(&ReadAfter::default(), |db| {
                let hash = hash.clone();
                async move { calendar::feed_owner(&db, &hash).await }
            })
            .await?;
        Ok(owner.map(|(coop_id, family_id)| {
            Ctx::new(
                Caller {
                    // No user signs in: the link itself is the credential,
                    // scoped to one family like that family's own session.
                    user_id: Uuid::nil(),
                    coop_id,
                    role: Role::Family,
                    email: String::new(),
                    family_id: Some(family_id),
                },
                ReadAfter::default(),
            )
        }))
    }
}
