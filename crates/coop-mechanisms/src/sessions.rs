//! Server-side sessions. The cookie holds only a random token; the session
//! record lives in the database, keyed by the token's SHA-256 (a copy of the
//! table yields no usable cookie), and is read through the shared cache: in the
//! distributed tier that is Redis plus each instance's L1, so any instance serves
//! any user without a database read, and a Redis outage or restart logs nobody out.

use std::time::Duration;

use coop_domain::Role;
use coop_domain::clock::now_s as unix_now;
use coop_domain::token;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cache::CacheKey;
use crate::data::{Data, ReadAfter};
use crate::store::{self, StoreError};

/// What a request needs to know about its caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub user_id: Uuid,
    pub coop_id: Uuid,
    pub role: Role,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Uuid>,
    /// Unix seconds. Checked on every use, since a cached copy may outlive it.
    #[serde(default)]
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct SessionStore {
    data: Data,
    ttl: Duration,
}

impl SessionStore {
    pub fn new(data: Data, ttl: Duration) -> Self {
        Self { data, ttl }
    }

    /// Stores `data` under a new random token and returns the token. A new token
    /// at every log-in defeats session fixation.
    pub async fn create(&self, data: &mut SessionData) -> Result<String, StoreError> {
        let token = token::generate();
        data.expires_at = unix_now() + self.ttl.as_secs() as i64;
        let json = serde_json::to_string(data)?;
        store::sessions::put(
            self.data.primary(),
            &token::hash(&token),
            data.user_id,
            &json,
            data.expires_at,
        )
        .await?;
        Ok(token)
    }

    /// The session for `token`. `after`: the client's read-your-writes
    /// position (a session created a moment ago may not be on every replica yet).
    pub async fn load(
        &self,
        token: &str,
        after: &ReadAfter,
    ) -> Result<Option<SessionData>, StoreError> {
        if !token::plausible(token) {
            return Ok(None);
        }
        let token_hash = token::hash(token);
        let session: Option<SessionData> = self
            .data
            .cached(&cache_key(&token_hash), after, |db| {
                let token_hash = token_hash.clone();
                async move {
                    // A record we cannot read (e.g. written by an incompatible
                    // version) is treated as no session: the user logs in again.
                    let json = store::sessions::get(&db, &token_hash).await?;
                    Ok(json.and_then(|j| serde_json::from_str::<SessionData>(&j).ok()))
                }
            })
            .await?;
        Ok(session.filter(|s| s.expires_at >= unix_now()))
    }

    /// Ends the session everywhere: the record and every cached copy.
    pub async fn delete(&self, token: &str) -> Result<(), StoreError> {
        if !token::plausible(token) {
            return Ok(());
        }
        let token_hash = token::hash(token);
        store::sessions::delete(self.data.primary(), &token_hash).await?;
        self.data
            .committed(&ReadAfter::default(), &[cache_key(&token_hash)])
            .await;
        Ok(())
    }

    /// Ends every session of the user but `keep` (a token), everywhere.
    pub async fn end_all(&self, user_id: Uuid, keep: Option<&str>) -> Result<(), StoreError> {
        let keep = keep.map(token::hash);
        let ended =
            store::sessions::delete_for_user(self.data.primary(), user_id, keep.as_deref()).await?;
        self.forget(&ended).await;
        Ok(())
    }

    /// Drops the cached copies of sessions whose records were deleted (by
    /// their token hashes), on every instance.
    pub async fn forget(&self, token_hashes: &[String]) {
        let keys: Vec<CacheKey> = token_hashes.iter().map(|h| cache_key(h)).collect();
        self.data.committed(&ReadAfter::default(), &keys).await;
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The cache entry of the session with this token hash: sessions are keyed
/// by the token's hash, never the token itself. Public for stores that end
/// sessions in their own transactions (removing a family).
pub fn cache_key(token_hash: &str) -> CacheKey {
    CacheKey::new("session", token_hash)
}
