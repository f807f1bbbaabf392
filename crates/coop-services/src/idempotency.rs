//! The `Idempotency-Key` records, for the faces' idempotency middleware (see
//! `coop_mechanisms::store::idempotency` for the lease and fencing rules).
//! Always the primary: a key's state must be the same for every instance.

use std::time::Duration;

use coop_mechanisms::data::Data;
use coop_mechanisms::store::idempotency::{self, Begin, Claim, StoredResponse};

use crate::Result;

#[derive(Clone)]
pub struct IdempotencyKeys {
    data: Data,
    lease: Duration,
}

impl IdempotencyKeys {
    pub(crate) fn new(data: Data, lease: Duration) -> Self {
        Self { data, lease }
    }

    pub async fn begin(&self, scope: &str, key: &str, request_hash: &str) -> Result<Begin> {
        Ok(idempotency::begin(self.data.primary(), scope, key, request_hash, self.lease).await?)
    }

    /// Saves the response; false when a repeat took the key over meanwhile.
    pub async fn complete(&self, claim: &Claim, response: &StoredResponse) -> Result<bool> {
        Ok(idempotency::complete(self.data.primary(), claim, response).await?)
    }

    /// Gives the key up at once (the request failed on our side).
    pub async fn release(&self, claim: &Claim) -> Result<()> {
        idempotency::release(self.data.primary(), claim).await?;
        Ok(())
    }
}
