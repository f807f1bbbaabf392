//! Payments: accepted at once (`pending`) with the job that charges them,
//! charged by a worker through the payment provider, then `succeeded` or
//! `failed`. Reads go to a replica at the caller's floor: a client sees the
//! payment it just made; a worker's later settlement shows once the replica
//! has it (within the replica lag bound).

use coop_domain::{NewPayment, PaymentState};
use coop_mechanisms::data::Data;
use coop_mechanisms::store::idempotency::Claim;
use coop_mechanisms::store::jobs::now_ms;
use coop_mechanisms::store::payments;
use uuid::Uuid;

pub use coop_mechanisms::store::payments::PaymentRow as Payment;

use crate::families::Families;
use crate::{Ctx, Error, Result, jobs};

/// Most payments a family's list shows (newest first).
pub const LIST_LIMIT: u32 = 200;

#[derive(Clone)]
pub struct Payments {
    data: Data,
    families: Families,
    /// Whether a payment provider is configured: without one nothing could
    /// ever be charged, so payments are refused up front.
    provider_configured: bool,
    job_max_attempts: u32,
}

impl Payments {
    pub(crate) fn new(
        data: Data,
        families: Families,
        provider_configured: bool,
        job_max_attempts: u32,
    ) -> Self {
        Self {
            data,
            families,
            provider_configured,
            job_max_attempts,
        }
    }

    /// Charges a family (coordinators): the payment and its charge job commit
    /// together. Under an Idempotency-Key whose earlier holder created it,
    /// answers with that payment and charges nothing more.
    pub async fn create(
        &self,
        ctx: &Ctx,
        family_id: Uuid,
        new: &NewPayment,
        claim: Option<&Claim>,
    ) -> Result<Payment> {
        ctx.coordinator()?;
        self.create_unchecked_role(ctx, family_id, new, claim).await
    }

    async fn create_unchecked_role(
        &self,
        ctx: &Ctx,
        family_id: Uuid,
        new: &NewPayment,
        claim: Option<&Claim>,
    ) -> Result<Payment> {
        let coop_id = ctx.coop_id();
        if let Some(claim) = claim
            && let Some([id]) = claim.committed_as()?
        {
            return payments::get(self.data.primary(), coop_id, id)
                .await?
                .filter(|row| row.family_id == family_id)
                .ok_or_else(|| {
                    Error::NotFound("this request created a payment that no longer exists".into())
                });
        }
        if !self.provider_configured {
            return Err(Error::Unprocessable {
                code: "payments_not_configured",
                message: "this Coop has no payment provider: set COOP_PAYMENTS_URL".into(),
            });
        }
        // The family must exist (in this co-op) when it is charged.
        self.families.get(ctx, family_id).await?;
        let at = now_ms();
        let row = Payment {
            id: Uuid::now_v7(),
            coop_id,
            family_id,
            amount_cents: new.amount.amount_cents(),
            currency: new.amount.currency().as_str().to_owned(),
            description: new.description.clone(),
            state: PaymentState::Pending,
            provider_charge_id: None,
            failure_reason: None,
            created_at: at,
            updated_at: at,
        };
        let job = jobs::payment_job(coop_id, row.id, self.job_max_attempts);
        if !payments::create(self.data.primary(), &row, &job, claim).await? {
            return Err(Error::TakenOver);
        }
        self.data.committed(&ctx.read_after, &[]).await;
        Ok(row)
    }

    /// Charges again a payment that failed (coordinators): a new payment of
    /// the same amount, with its own charge job.
    pub async fn retry(&self, ctx: &Ctx, family_id: Uuid, payment_id: Uuid) -> Result<Payment> {
        ctx.coordinator()?;
        let failed = self.get(ctx, family_id, payment_id).await?;
        if failed.state != PaymentState::Failed {
            return Err(Error::conflict(
                "payment_not_failed",
                format!(
                    "only failed payments can be charged again; this one is {}",
                    failed.state.as_str()
                ),
            ));
        }
        let new = NewPayment {
            amount: coop_domain::Money::new(
                failed.amount_cents,
                coop_domain::Currency::parse(&failed.currency)
                    .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?,
            )
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?,
            description: failed.description,
        };
        self.create(ctx, family_id, &new, None).await
    }

    /// A family pays what it owes in `currency` (the family itself, or a
    /// coordinator for it): a payment of exactly the amount due.
    pub async fn pay_balance(
        &self,
        ctx: &Ctx,
        family_id: Uuid,
        due: &NewPayment,
    ) -> Result<Payment> {
        if !ctx.may_see_family(family_id) {
            return Err(crate::families::not_found());
        }
        self.create_unchecked_role(ctx, family_id, due, None).await
    }

    /// A family's payments, newest first. Another co-op's family (or, for a
    /// family account, another family) is not found, even with no payments.
    pub async fn list(&self, ctx: &Ctx, family_id: Uuid) -> Result<Vec<Payment>> {
        self.families.get(ctx, family_id).await?;
        let coop_id = ctx.coop_id();
        Ok(self
            .data
            .read(&ctx.read_after, |db| async move {
                payments::for_family(&db, coop_id, family_id, LIST_LIMIT).await
            })
            .await?)
    }

    /// One payment of a family.
    pub async fn get(&self, ctx: &Ctx, family_id: Uuid, payment_id: Uuid) -> Result<Payment> {
        let not_found = || Error::NotFound("no payment with that id for this family".into());
        if !ctx.may_see_family(family_id) {
            return Err(crate::families::not_found());
        }
        let coop_id = ctx.coop_id();
        self.data
            .read(&ctx.read_after, |db| async move {
                payments::get(&db, coop_id, payment_id).await
            })
            .await?
            .filter(|row| row.family_id == family_id)
            .ok_or_else(not_found)
    }
}
