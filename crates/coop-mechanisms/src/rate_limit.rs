//! Rate limits: how many attempts a key (an account, a client address) may
//! make, as a burst and a steady rate (GCRA: a burst of `count`, then one more
//! every `per / count`).
//!
//! The distributed tier keeps the counts in Redis, so every instance charges
//! the same budget: an attacker gains nothing by spreading attempts over
//! instances. One Lua script reads and advances a key's "theoretical arrival
//! time" atomically, on Redis's clock, so instances' clocks do not matter.
//! The embedded tier (one process) keeps them in memory with `governor`.
//!
//! When Redis fails or is slow, each instance falls back to its own in-memory
//! counts with the same quotas: an attacker gets at most one budget per
//! instance, never an open door, and a client never sees a 5xx because of the
//! limiter. Keys are hashed before they are stored: neither Redis nor memory
//! holds an email address or an invite code.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use coop_runtime::values::{parse_bool, parse_duration};
use governor::clock::{Clock, DefaultClock};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// Longest the limiter waits for Redis before deciding on local counts.
const REDIS_WAIT: Duration = Duration::from_millis(250);

/// Advances the key's theoretical arrival time (TAT) if the request fits.
/// KEYS[1]: key; ARGV[1]: emission interval in ms; ARGV[2]: burst (count).
/// Returns 0 when allowed, else the milliseconds until it would be.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return allow_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

/// A budget: `count` attempts at once, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub per: Duration,
}

impl Quota {
    /// `COUNT/PERIOD`, e.g. `10/5m`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let problem = || {
            format!(
                "expected COUNT/PERIOD such as 10/5m (10 attempts, refilled over 5 minutes), got {value:?}"
            )
        };
        let (count, per) = value.trim().split_once('/').ok_or_else(problem)?;
        let count: u32 = count.trim().parse().map_err(|_| problem())?;
        let per = parse_duration(per.trim()).map_err(|_| problem())?;
        if count == 0 || per.is_zero() {
            return Err(problem());
        }
        Ok(Self { count, per })
    }

    fn interval(&self) -> Duration {
        (self.per / self.count).max(Duration::from_millis(1))
    }
}

/// The limits at the doors that need no session (COOP_RATE_LIMIT_*).
#[derive(Debug, Clone, Args)]
pub struct RateLimitSettings {
    /// Limit attempts at log-in, sign-up, invite acceptance and password
    /// reset. Turn off only
    /// for benchmarks that log in from one address at a high rate.
    #[arg(long = "rate-limits", env = "COOP_RATE_LIMITS", value_name = "COOP_RATE_LIMITS",
          default_value = "on", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub rate_limits: bool,

    /// Attempts per account (the email at log-in, sign-up and reset request;
    /// the code at invite acceptance and reset), each door its own budget.
    #[arg(long = "rate-limit-account", env = "COOP_RATE_LIMIT_ACCOUNT",
          value_name = "COOP_RATE_LIMIT_ACCOUNT", default_value = "10/5m", value_parser = Quota::parse)]
    pub per_account: Quota,

    /// Attempts at the other doors per client address (generous:
    /// a school or an office shares one address).
    #[arg(long = "rate-limit-address", env = "COOP_RATE_LIMIT_ADDRESS",
          value_name = "COOP_RATE_LIMIT_ADDRESS", default_value = "300/1m", value_parser = Quota::parse)]
    pub per_address: Quota,

    /// Co-ops founded (sign-ups) per client address.
    #[arg(long = "rate-limit-sign-up", env = "COOP_RATE_LIMIT_SIGN_UP",
          value_name = "COOP_RATE_LIMIT_SIGN_UP", default_value = "60/1h", value_parser = Quota::parse)]
    pub sign_up_per_address: Quota,

    /// Requests per session to the rest of the API (e.g. `600/1m`): a
    /// budget for a signed-in client that misbehaves. Off by default: the
    /// benchmarks drive tens of thousands of requests a second through one
    /// session. Shared by all instances through Redis, like the others.
    #[arg(long = "rate-limit-session", env = "COOP_RATE_LIMIT_SESSION",
          value_name = "COOP_RATE_LIMIT_SESSION", value_parser = Quota::parse)]
    pub per_session: Option<Quota>,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

type Local = governor::DefaultKeyedRateLimiter<[u8; 16]>;

/// Rules by name, each with its quota and its in-memory counts (the
/// embedded tier's, and the distributed tier's fallback).
#[derive(Clone)]
pub struct RateLimiter {
    rules: Arc<HashMap<&'static str, (Quota, Local)>>,
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
    /// Keeps deployments that share one Redis apart.
    namespace: String,
    last_warning: Arc<AtomicU64>,
    started: Instant,
}

impl RateLimiter {
    /// In memory only: the embedded tier.
    pub fn local(rules: &[(&'static str, Quota)]) -> Self {
        let rules = rules
            .iter()
            .map(|(name, quota)| {
                let per_one = governor::Quota::with_period(quota.interval())
                    .expect("a positive interval")
                    .allow_burst(NonZeroU32::new(quota.count).unwrap_or(NonZeroU32::MIN));
                (*name, (*quota, governor::RateLimiter::keyed(per_one)))
            })
            .collect();
        Self {
            rules: Arc::new(rules),
            shared: None,
        }
    }

    /// Shared by every instance through Redis, with in-memory fallback.
    /// `namespace` names the deployment (instances of one Coop share it).
    pub fn shared(
        rules: &[(&'static str, Quota)],
        conn: ConnectionManager,
        namespace: &str,
    ) -> Self {
        let mut limiter = Self::local(rules);
        limiter.shared = Some(Shared {
            conn,
            script: Arc::new(redis::Script::new(GCRA)),
            namespace: namespace.to_owned(),
            last_warning: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
        });
        limiter
    }

    /// Charges one attempt by `key` against `rule` (unknown rules allow).
    pub async fn check(&self, rule: &'static str, key: &str) -> Decision {
        let Some((quota, local)) = self.rules.get(rule) else {
            return Decision::Allowed;
        };
        let hashed = hash(key);
        if let Some(shared) = &self.shared {
            match shared.check(rule, &hashed, *quota).await {
                Ok(decision) => return count(rule, decision),
                Err(err) => shared.warn(rule, &err),
            }
        }
        count(rule, local_check(local, &hashed))
    }

    /// Forgets in-memory keys whose budget is full again, so memory follows
    /// the attempts of the last period, not every address ever seen.
    pub fn spawn_cleanup(&self, every: Duration) {
        let rules = Arc::downgrade(&self.rules);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(rules) = rules.upgrade() else { return };
                for (_, local) in rules.values() {
                    local.retain_recent();
                    local.shrink_to_fit();
                }
            }
        });
    }
}

fn count(rule: &'static str, decision: Decision) -> Decision {
    if let Decision::Limited { .. } = decision {
        metrics::counter!("rate_limited_total", "rule" => rule).increment(1);
    }
    decision
}

fn local_check(local: &Local, key: &[u8; 16]) -> Decision {
    match local.check_key(key) {
        Ok(()) => Decision::Allowed,
        Err(not_until) => Decision::Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        },
    }
}

/// 128 bits of SHA-256: keys are not stored in the clear, and collisions are
/// out of reach.
fn hash(key: &str) -> [u8; 16] {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Shared {
    async fn check(&self, rule: &str, key: &[u8; 16], quota: Quota) -> Result<Decision, String> {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let redis_key = format!("coop:rl:{}:{rule}:{hex}", self.namespace);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(redis_key);
        invocation
            .arg(quota.interval().as_millis() as u64)
            .arg(quota.count);
        let wait_ms = tokio::time::timeout(REDIS_WAIT, invocation.invoke_async::<u64>(&mut conn))
            .await
            .map_err(|_| format!("no answer within {REDIS_WAIT:?}"))?
            .map_err(|err| err.to_string())?;
        Ok(if wait_ms == 0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: Duration::from_millis(wait_ms),
            }
        })
    }

    /// Once a minute at most: under attack with Redis down, one line per
    /// attempt would flood the log.
    fn warn(&self, rule: &str, err: &str) {
        metrics::counter!("rate_limit_fallback_total").increment(1);
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 60)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                rule,
                error = err,
                "rate limits fall back to this instance's own counts: Redis did not answer"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        assert_eq!(
            Quota::parse("10/5m").unwrap(),
            Quota {
                count: 10,
                per: Duration::from_secs(300)
            }
        );
        for bad in ["", "10", "0/1m", "10/0s", "ten/1m", "10/forever"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_burst_is_allowed_then_the_next_waits_one_interval() {
        let limiter = RateLimiter::local(&[(
            "login",
            Quota {
                count: 3,
                per: Duration::from_secs(30),
            },
        )]);
        for _ in 0..3 {
            assert_eq!(
                limiter.check("login", "a@example.org").await,
                Decision::Allowed
            );
        }
        match limiter.check("login", "a@example.org").await {
            Decision::Limited { retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(8) && retry_after <= Duration::from_secs(10)
                )
            }
            other => panic!("{other:?}"),
        }
        // Another key has its own budget.
        assert_eq!(
            limiter.check("login", "b@example.org").await,
            Decision::Allowed
        );
    }
}
