//! Server-side sessions. The cookie holds only a random token; the session
//! record lives in the database, keyed by the token's SHA-256 (a copy of the
//! table yields no usable cookie), and is read through the shared cache: in the
//! distributed tier that is Redis plus each instance's L1, so any instance serves
//! any user without a database read, and a Redis outage or restart logs nobody out.

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

use crate::cache::{Cache, keys};
use crate::domain::Role;
use crate::error::ApiError;
use crate::store::replicas::{self, Lsn, ReplicaSet};
use crate::store::{self, Db, unix_now};
use std::sync::Arc;

pub const COOKIE_NAME: &str = "coop_session";

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
    db: Db,
    replicas: Option<Arc<ReplicaSet>>,
    cache: Cache,
    ttl: Duration,
}

impl SessionStore {
    pub fn new(db: Db, replicas: Option<Arc<ReplicaSet>>, cache: Cache, ttl: Duration) -> Self {
        Self {
            db,
            replicas,
            cache,
            ttl,
        }
    }

    /// Stores `data` under a new random token and returns the token. A new token
    /// at every log-in defeats session fixation.
    pub async fn create(&self, data: &mut SessionData) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        data.expires_at = unix_now() + self.ttl.as_secs() as i64;
        let json = serde_json::to_string(data).map_err(anyhow::Error::from)?;
        store::sessions::put(&self.db, &hash(&token), &json, data.expires_at).await?;
        Ok(token)
    }

    /// The session for `token`. `read_after`: the client's read-your-writes
    /// position (a session created a moment ago may not be on every replica yet).
    pub async fn load(
        &self,
        token: &str,
        read_after: Option<Lsn>,
    ) -> Result<Option<SessionData>, ApiError> {
        if !plausible_token(token) {
            return Ok(None);
        }
        let token_hash = hash(token);
        let session: Option<SessionData> = self
            .cache
            .get_or_load(&keys::session(&token_hash), |floor| {
                let min_lsn = read_after.max(floor);
                replicas::read(&self.db, self.replicas.as_deref(), min_lsn, |db| {
                    let token_hash = token_hash.clone();
                    async move {
                        // A record we cannot read (e.g. written by an incompatible
                        // version) is treated as no session: the user logs in again.
                        let json = store::sessions::get(&db, &token_hash).await?;
                        Ok(json.and_then(|j| serde_json::from_str::<SessionData>(&j).ok()))
                    }
                })
            })
            .await?;
        Ok(session.filter(|s| s.expires_at >= unix_now()))
    }

    /// Ends the session everywhere: the record and every cached copy.
    pub async fn delete(&self, token: &str) -> Result<(), ApiError> {
        if !plausible_token(token) {
            return Ok(());
        }
        let token_hash = hash(token);
        store::sessions::delete(&self.db, &token_hash).await?;
        let written_at = replicas::position_after_write(self.replicas.as_deref()).await;
        self.cache
            .invalidate(&keys::session(&token_hash), written_at)
            .await;
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Tokens are 43 URL-safe base64 characters; anything else never reaches the store.
fn plausible_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex, without a formatter call per byte (this runs on every request).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The session token from a `Cookie` header, if any.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    crate::http::cookie(headers, COOKIE_NAME).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; coop_session=abc; b=2".parse().unwrap());
        assert_eq!(token_from_headers(&headers).as_deref(), Some("abc"));
        headers.insert("cookie", "coop_sessionx=1".parse().unwrap());
        assert_eq!(token_from_headers(&headers), None);
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn only_well_formed_tokens_reach_the_store() {
        assert!(plausible_token(&"a".repeat(43)));
        assert!(!plausible_token("short"));
        assert!(!plausible_token(&format!("{}*", "a".repeat(42))));
    }
}
