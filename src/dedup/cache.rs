//! Dedup stage, TTL cache: per topic, the payload the broker last accepted.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tokio::time::Instant;

/// Remembers, per topic, the payload the broker acknowledged. An identical payload inside the
/// TTL need not be sent again; after it expires the value goes out once more, refreshing the
/// broker's retained copy. A zero TTL turns the cache off.
///
/// moka evicts expired entries on its own clock (real time), which bounds memory; whether an
/// entry still counts is decided on tokio's clock, from when it was recorded, so that the
/// pipeline's tests can move time forward (a paused clock) instead of sleeping through a TTL.
#[derive(Clone)]
pub struct SentCache {
    inner: Option<Cache<Arc<str>, Sent>>,
    ttl: Duration,
}

#[derive(Clone)]
struct Sent {
    payload: Arc<str>,
    at: Instant,
}

impl std::fmt::Debug for SentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentCache")
            .field("entries", &self.inner.as_ref().map(Cache::entry_count))
            .finish()
    }
}

/// Far more topics than any meter has; only a guard against unbounded growth.
const MAX_TOPICS: u64 = 10_000;

impl SentCache {
    pub fn new(ttl: Duration) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .time_to_live(ttl)
                .max_capacity(MAX_TOPICS)
                .build()
        });
        Self { inner, ttl }
    }

    /// Whether the broker already holds exactly this payload for the topic, within the TTL.
    pub fn holds(&self, topic: &Arc<str>, payload: &str) -> bool {
        self.inner
            .as_ref()
            .and_then(|c| c.get(topic))
            .is_some_and(|sent| sent.payload.as_ref() == payload && sent.at.elapsed() < self.ttl)
    }

    pub fn record(&self, topic: &Arc<str>, payload: &Arc<str>) {
        if let Some(cache) = &self.inner {
            let sent = Sent {
                payload: payload.clone(),
                at: Instant::now(),
            };
            cache.insert(topic.clone(), sent);
        }
    }

    /// Forget everything: the next offer of each topic is sent (after a reconnect or a Home
    /// Assistant restart the broker or HA may have lost what we sent).
    pub(crate) fn clear(&self) {
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn identical_payload_is_held_until_the_ttl_ends() {
        let cache = SentCache::new(Duration::from_secs(3600));
        let topic: Arc<str> = Arc::from("t");
        assert!(!cache.holds(&topic, "1"));
        cache.record(&topic, &Arc::from("1"));
        assert!(cache.holds(&topic, "1"));
        assert!(!cache.holds(&topic, "2"));
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(cache.holds(&topic, "1"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!cache.holds(&topic, "1"));
    }

    #[test]
    fn zero_ttl_means_off_and_clear_forgets() {
        let off = SentCache::new(Duration::ZERO);
        let topic: Arc<str> = Arc::from("t");
        off.record(&topic, &Arc::from("1"));
        assert!(!off.holds(&topic, "1"));
        let on = SentCache::new(Duration::from_secs(60));
        on.record(&topic, &Arc::from("1"));
        on.clear();
        assert!(!on.holds(&topic, "1"));
    }
}
