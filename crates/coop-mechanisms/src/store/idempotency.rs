//! Storage for `Idempotency-Key` records (see `http::idempotency`).
//!
//! A record is a reservation while its request runs (`status` NULL), then the
//! saved response. A reservation belongs to one request, named by `owner`, until
//! `lease_until`; a repeat that finds the lease passed takes it over (one
//! conditional UPDATE, so only one taker wins) with a new owner.
//!
//! Work done under a reservation records itself on it, inside the work's own
//! transaction (`record_idempotent_work!`): "committed, and created these ids",
//! and only if the reservation still has the same owner. So exactly one owner's
//! work can ever commit for a key, and a taker can tell whether it did.

use std::time::Duration;

use uuid::Uuid;

use super::Db;
use crate::with_write_conn;
use coop_domain::clock::now_ms;
use coop_domain::clock::now_s as unix_now;

/// How long a key is remembered.
pub const RETENTION_SECS: i64 = 24 * 60 * 60;

pub struct StoredResponse {
    pub status: u16,
    /// JSON array of [name, value] pairs.
    pub headers: String,
    pub body: Vec<u8>,
}

/// A request's hold on an in-flight key, handed to the handler (as a request
/// extension) so the work it commits can record itself on the key.
#[derive(Clone, Debug)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    /// Fences every write made under this claim: a takeover replaces it, after
    /// which the previous holder can neither commit work nor save a response.
    pub owner: Uuid,
    /// Set when this claim was taken over from a holder whose work had already
    /// committed: what that work recorded (see `resource`).
    pub committed: Option<String>,
}

impl Claim {
    /// The ids a previous holder's committed work created, if it committed.
    pub fn committed_ids(&self) -> Result<Option<Vec<Uuid>>, uuid::Error> {
        self.committed
            .as_deref()
            .map(|text| text.split(' ').map(Uuid::parse_str).collect())
            .transpose()
    }
}

impl Claim {
    /// The `N` ids that an earlier holder of this key created, if its work
    /// committed but its instance died before answering: a create answers with
    /// these resources instead of creating them again.
    pub fn committed_as<const N: usize>(&self) -> Result<Option<[Uuid; N]>, anyhow::Error> {
        let Some(ids) = self
            .committed_ids()
            .map_err(|err| anyhow::anyhow!("unreadable idempotency resource: {err}"))?
        else {
            return Ok(None);
        };
        let found = ids.len();
        ids.try_into()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("idempotency resource has {found} ids, expected {N}"))
    }
}

/// What `record_idempotent_work!` stores for work that created `ids`.
pub fn resource(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

pub enum Begin {
    /// The key is now this request's: a new reservation, or one taken over from
    /// a holder whose lease passed (then `Claim::committed` says whether that
    /// holder's work committed).
    Proceed(Claim),
    /// The same request already completed: answer with its response.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
    /// Another request holds the key and its lease has not passed.
    InProgress,
}

#[derive(sqlx::FromRow)]
struct Record {
    request_hash: String,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    created_at: i64,
    lease_until: Option<i64>,
}

/// Records on the key that the work of `claim` committed and created `resource`
/// — if `claim` still holds the key. Run inside the work's transaction; zero
/// rows means the key was taken over or released, and the work must roll back.
pub const RECORD_SQL: &str = "UPDATE idempotency SET resource = $1 \
     WHERE scope = $2 AND key = $3 AND owner = $4 AND status IS NULL AND resource IS NULL";

/// Runs `RECORD_SQL` for `$claim` (a `&Claim`) and `$resource` (a `&str`, see
/// `resource`) on `$tx`, an open transaction of either backend. Evaluates to
/// `Result<bool, sqlx::Error>`: false when the claim was lost, and the caller
/// must then not commit. A macro because the body must be compiled once per
/// backend, like `with_conn!`.
///
/// On PostgreSQL the UPDATE also locks the row until the transaction ends, so a
/// takeover waits for the outcome and then sees the resource (or not).
#[macro_export]
macro_rules! record_idempotent_work {
    ($tx:expr, $claim:expr, $resource:expr) => {{
        let claim: &$crate::store::idempotency::Claim = $claim;
        let resource: &str = $resource;
        sqlx::query($crate::store::idempotency::RECORD_SQL)
            .bind(resource)
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(claim.owner)
            .execute(&mut *$tx)
            .await
            .map(|done| done.rows_affected() == 1)
    }};
}

/// Reserves `(scope, key)` for a request for `lease`, or reports what already
/// holds it. A new reservation is an INSERT and a takeover a conditional
/// UPDATE: of several concurrent requests, only one can win either.
pub async fn begin(
    db: &Db,
    scope: &str,
    key: &str,
    request_hash: &str,
    lease: Duration,
) -> Result<Begin, sqlx::Error> {
    const RESERVE: &str = "INSERT INTO idempotency \
                           (scope, key, request_hash, created_at, owner, lease_until) \
                           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING";
    const READ: &str = "SELECT request_hash, status, headers, body, created_at, lease_until \
                        FROM idempotency WHERE scope = $1 AND key = $2";
    // The lease condition is checked again here, atomically: a second taker
    // finds the first one's fresh lease and updates nothing.
    const TAKE_OVER: &str = "UPDATE idempotency SET owner = $1, lease_until = $2 \
                             WHERE scope = $3 AND key = $4 AND request_hash = $7 \
                             AND status IS NULL AND COALESCE(lease_until, created_at * 1000 + $5) < $6 \
                             RETURNING resource";
    const EXPIRE: &str =
        "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND created_at = $3";
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    // Two rounds suffice: the second follows the removal of an expired record.
    for _ in 0..2 {
        let now_ms = now_ms();
        let now = unix_now();
        let owner = Uuid::new_v4();
        let claim = |committed| Claim {
            scope: scope.to_owned(),
            key: key.to_owned(),
            owner,
            committed,
        };
        let outcome = with_write_conn!(db, conn => {
            let inserted = sqlx::query(RESERVE)
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(owner)
                .bind(now_ms.saturating_add(lease_ms))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if inserted == 1 {
                return Ok(Begin::Proceed(claim(None)));
            }
            let record = sqlx::query_as::<_, Record>(READ)
                .bind(scope)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
            match record {
                Some(r) if r.created_at < now - RETENTION_SECS => {
                    sqlx::query(EXPIRE)
                        .bind(scope)
                        .bind(key)
                        .bind(r.created_at)
                        .execute(&mut *conn)
                        .await?;
                    None
                }
                Some(r) if r.request_hash != request_hash => Some(Begin::Mismatch),
                Some(Record { status: Some(status), headers, body, .. }) => {
                    Some(Begin::Replay(StoredResponse {
                        status: u16::try_from(status).unwrap_or(200),
                        headers: headers.unwrap_or_else(|| "[]".into()),
                        body: body.unwrap_or_default(),
                    }))
                }
                // Reserved before leases existed: the lease runs from creation.
                Some(r) if r.lease_until.unwrap_or(r.created_at * 1000 + lease_ms) >= now_ms => {
                    Some(Begin::InProgress)
                }
                Some(_) => {
                    let taken = sqlx::query_scalar::<_, Option<String>>(TAKE_OVER)
                        .bind(owner)
                        .bind(now_ms.saturating_add(lease_ms))
                        .bind(scope)
                        .bind(key)
                        .bind(lease_ms)
                        .bind(now_ms)
                        .bind(request_hash)
                        .fetch_optional(&mut *conn)
                        .await?;
                    Some(match taken {
                        Some(committed) => Begin::Proceed(claim(committed)),
                        // Another repeat took it over first (or it completed).
                        None => Begin::InProgress,
                    })
                }
                // Removed between our INSERT and SELECT: try to reserve again.
                None => None,
            }
        });
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
    Ok(Begin::InProgress)
}

/// Saves the response of `claim`'s request. False when the claim had been
/// taken over: the new holder answers (and saves) instead.
pub async fn complete(
    db: &Db,
    claim: &Claim,
    response: &StoredResponse,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE idempotency SET status = $1, headers = $2, body = $3 \
                       WHERE scope = $4 AND key = $5 AND owner = $6 AND status IS NULL";
    Ok(with_write_conn!(db, conn => {
        sqlx::query(SQL)
            .bind(i32::from(response.status))
            .bind(&response.headers)
            .bind(&response.body)
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(claim.owner)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1
    }))
}

/// Ends the lease of a request that failed on our side, so a retry takes the
/// key over at once: it runs the work if this request's work did not commit,
/// and answers with what it created if it did (then deleting the record would
/// let the retry create it a second time).
pub async fn release(db: &Db, claim: &Claim) -> Result<(), sqlx::Error> {
    const SQL: &str = "UPDATE idempotency SET lease_until = 0 \
                       WHERE scope = $1 AND key = $2 AND owner = $3 AND status IS NULL";
    with_write_conn!(db, conn => {
        sqlx::query(SQL)
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(claim.owner)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Deletes records older than the retention period; run periodically.
pub async fn purge_expired(db: &Db) -> Result<u64, sqlx::Error> {
    let cutoff = unix_now() - RETENTION_SECS;
    Ok(with_write_conn!(db, conn => {
        sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(cutoff)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip_through_a_claim() {
        let ids = [Uuid::now_v7(), Uuid::now_v7()];
        let claim = Claim {
            scope: "anonymous".into(),
            key: "k".into(),
            owner: Uuid::new_v4(),
            committed: Some(resource(&ids)),
        };
        assert_eq!(claim.committed_ids().unwrap(), Some(ids.to_vec()));
        let fresh = Claim {
            committed: None,
            ..claim.clone()
        };
        assert_eq!(fresh.committed_ids().unwrap(), None);
        let garbled = Claim {
            committed: Some("not-an-id".into()),
            ..claim
        };
        assert!(garbled.committed_ids().is_err());
    }
}
