//! The invalidation subscriber: every instance listens on one Redis channel and
//! drops the keys it hears about from its L1.
//!
//! Pub/sub delivers at most once and says nothing about messages lost while a
//! connection was down. So whenever the subscription is not known to be alive,
//! L1 is cleared and bypassed; on re-subscribing it is cleared again (anything
//! cached before may have missed an invalidation) and only then used.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::l1::LocalCache;
use super::l2::{CHANNEL, CLEAR_ALL};

/// How often the subscription is pinged, so that a silently dead connection is
/// noticed within about this long (plus the ping timeout).
const PING_EVERY: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_millis(500);
const RETRY_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Subscription {
    alive: AtomicBool,
}

impl Subscription {
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::SeqCst);
        metrics::gauge!("cache_subscribed").set(if alive { 1.0 } else { 0.0 });
    }
}

/// Runs forever, (re)subscribing as needed.
pub async fn run(client: redis::Client, l1: Arc<LocalCache>, subscription: Arc<Subscription>) {
    subscription.set_alive(false);
    loop {
        match tokio::time::timeout(Duration::from_secs(1), subscribe(&client)).await {
            Ok(Ok(pubsub)) => {
                l1.clear();
                subscription.set_alive(true);
                tracing::info!("cache: subscribed to invalidations");
                listen(pubsub, &l1).await;
                subscription.set_alive(false);
                l1.clear();
                tracing::warn!(
                    "cache: invalidation subscription lost; in-process cache bypassed until it is back"
                );
            }
            Ok(Err(err)) => tracing::debug!(error = %err, "cache: could not subscribe"),
            Err(_) => tracing::debug!("cache: subscribing timed out"),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn subscribe(client: &redis::Client) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

/// Applies invalidations until the connection fails or stops answering pings.
async fn listen(pubsub: redis::aio::PubSub, l1: &LocalCache) {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                let Ok(key) = message.get_payload::<String>() else { continue };
                metrics::counter!("cache_invalidations_received_total").increment(1);
                if key == CLEAR_ALL {
                    l1.clear();
                } else {
                    l1.invalidate(&key).await;
                }
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}
