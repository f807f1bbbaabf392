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
    /// Unix seconds: the absolute end, however busy the session is.
    /// Checked on every use, since a cached copy may outlive it.
    #[serde(default)]
    pub expires_at: i64,
    /// Unix seconds: the end if the session is not used before then (moved
    /// on by use; 0 on sessions from before idle expiry existed).
    #[serde(default)]
    pub idle_until: i64,
}

impl SessionData {
    fn live(&self, now: i64) -> bool {
        self.expires_at >= now && (self.idle_until == 0 || self.idle_until >= now)
    }

    /// When the record must say it ends: the earlier of the two deadlines.
    fn ends_at(&self) -> i64 {
        if self.idle_until == 0 {
            self.expires_at
        } else {
            self.expires_at.min(self.idle_until)
        }
    }
}

/// Sessions end `ttl` after they start, or `idle` after their last use,
/// whichever comes first.
#[derive(Clone)]
pub struct SessionStore {
    data: Data,
    ttl: Duration,
    idle: Duration,
}

impl SessionStore {
    pub fn new(data: Data, ttl: Duration, idle: Duration) -> Self {
        Self { data, ttl, idle }
    }

    /// Stores `data` under a new random token and returns the token. A new token
    /// at every log-in defeats session fixation.
    pub async fn create(&self, data: &mut SessionData) -> Result<String, StoreError> {
        let token = token::generate();
        let now = unix_now();
        data.expires_at = now + self.ttl.as_secs() as i64;
        data.idle_until = now + self.idle.as_secs() as i64;
        let json = serde_json::to_string(data)?;
        store::sessions::put(
            self.data.primary(),
            &token::hash(&token),
            data.user_id,
            &json,
            data.ends_at(),
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
        let now = unix_now();
        let Some(mut session) = session.filter(|s| s.live(now)) else {
            return Ok(None);
        };
        if self.due_for_renewal(&session, now) {
            self.renew(&token_hash, &mut session, now).await?;
        }
        Ok(Some(session))
    }

    /// A session's idle deadline is moved on by use, but written down only
    /// once half of the idle window has passed: a busy session costs one
    /// write per half-window, not one per request.
    fn due_for_renewal(&self, session: &SessionData, now: i64) -> bool {
        let idle = self.idle.as_secs() as i64;
        session.idle_until != 0
            && session.idle_until - now < idle / 2
            && session.idle_until < session.expires_at
    }

    async fn renew(
        &self,
        token_hash: &str,
        session: &mut SessionData,
        now: i64,
    ) -> Result<(), StoreError> {
        session.idle_until = (now + self.idle.as_secs() as i64).min(session.expires_at);
        let json = serde_json::to_string(&*session)?;
        store::sessions::touch(self.data.primary(), token_hash, &json, session.ends_at()).await?;
        // Every instance's cached copy still has the old deadline.
        self.data
            .committed(&ReadAfter::default(), &[cache_key(token_hash)])
            .await;
        Ok(())
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
