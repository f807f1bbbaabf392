//! Server-side sessions in a store every instance shares: Redis when configured,
//! otherwise the database. The cookie holds only a random token; the store is
//! keyed by the token's SHA-256, so a copy of the store yields no usable cookie.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::Role;
use crate::error::ApiError;
use crate::store::{self, Db};

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
}

#[derive(Clone)]
pub enum SessionStore {
    Redis {
        conn: ConnectionManager,
        ttl: Duration,
    },
    Database {
        db: Db,
        ttl: Duration,
    },
}

impl SessionStore {
    /// Stores `data` under a new random token and returns the token. A new token
    /// at every log-in defeats session fixation.
    pub async fn create(&self, data: &SessionData) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let json = serde_json::to_string(data).map_err(anyhow::Error::from)?;
        match self {
            Self::Redis { conn, ttl } => {
                let mut conn = conn.clone();
                let _: () = conn
                    .set_ex(redis_key(&token), json, ttl.as_secs().max(1))
                    .await?;
            }
            Self::Database { db, ttl } => {
                store::sessions::put(db, &hash(&token), &json, ttl.as_secs() as i64).await?;
            }
        }
        Ok(token)
    }

    pub async fn load(&self, token: &str) -> Result<Option<SessionData>, ApiError> {
        if !plausible_token(token) {
            return Ok(None);
        }
        let json: Option<String> = match self {
            Self::Redis { conn, .. } => conn.clone().get(redis_key(token)).await?,
            Self::Database { db, .. } => store::sessions::get(db, &hash(token)).await?,
        };
        // A record we cannot read (e.g. written by an incompatible version) is
        // treated as no session: the user logs in again.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub async fn delete(&self, token: &str) -> Result<(), ApiError> {
        if !plausible_token(token) {
            return Ok(());
        }
        match self {
            Self::Redis { conn, .. } => {
                let _: () = conn.clone().del(redis_key(token)).await?;
            }
            Self::Database { db, .. } => store::sessions::delete(db, &hash(token)).await?,
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        match self {
            Self::Redis { ttl, .. } | Self::Database { ttl, .. } => *ttl,
        }
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
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn redis_key(token: &str) -> String {
    format!("coop:session:{}", hash(token))
}

/// The session token from a `Cookie` header, if any.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
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
    fn only_well_formed_tokens_reach_the_store() {
        assert!(plausible_token(&"a".repeat(43)));
        assert!(!plausible_token("short"));
        assert!(!plausible_token(&format!("{}*", "a".repeat(42))));
    }
}
