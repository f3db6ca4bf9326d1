//! A short-lived cache of serialised answers (for `GET /api/v1/forecasts/latest`, which
//! dashboards poll). Forecasts change once per closed bar, so answers up to `ttl` old are as
//! good as fresh, and a burst of identical requests costs one query. Concurrent misses for one
//! key wait for a single fetch. Bounded: at most `MAX_KEYS` answers, the whole map cleared when
//! full.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::{Mutex, OnceCell};

/// Most distinct queries kept.
pub const MAX_KEYS: usize = 1024;

type Slot = Arc<OnceCell<Bytes>>;

/// The cache; `ttl == 0` disables it.
#[derive(Debug)]
pub struct TtlCache {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, Slot)>>,
}

impl TtlCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer for `key` if younger than the TTL, else `fetch`'s (then cached).
    /// A failed fetch is not cached.
    pub async fn get_or_fetch<F, Fut>(&self, key: String, fetch: F) -> anyhow::Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<Vec<u8>>>,
    {
        if self.ttl.is_zero() {
            return Ok(Bytes::from(fetch().await?));
        }
        let slot = {
            let mut map = self.map.lock().await;
            let now = Instant::now();
            match map.get(&key) {
                Some((at, slot)) if now.duration_since(*at) < self.ttl => slot.clone(),
                _ => {
                    if map.len() >= MAX_KEYS {
                        map.clear();
                    }
                    let slot = Slot::default();
                    map.insert(key.clone(), (now, slot.clone()));
                    slot
                }
            }
        };
        let result = slot
            .get_or_try_init(|| async { fetch().await.map(Bytes::from) })
            .await
            .cloned();
        if result.is_err() {
            let mut map = self.map.lock().await;
            if map.get(&key).is_some_and(|(_, s)| Arc::ptr_eq(s, &slot)) {
                map.remove(&key);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn answers_are_reused_within_the_ttl_and_errors_are_not_cached() {
        let cache = TtlCache::new(Duration::from_millis(300));
        let calls = AtomicUsize::new(0);
        let fetch = |v: &'static str| {
            let calls = &calls;
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(v.as_bytes().to_vec())
            }
        };
        assert_eq!(
            cache.get_or_fetch("a".into(), fetch("1")).await.expect("a"),
            "1"
        );
        assert_eq!(
            cache.get_or_fetch("a".into(), fetch("2")).await.expect("a"),
            "1"
        );
        assert_eq!(
            cache.get_or_fetch("b".into(), fetch("3")).await.expect("b"),
            "3"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let failed = cache
            .get_or_fetch("c".into(), || async { anyhow::bail!("down") })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            cache.get_or_fetch("c".into(), fetch("4")).await.expect("c"),
            "4"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            cache.get_or_fetch("a".into(), fetch("5")).await.expect("a"),
            "5"
        );
        let off = TtlCache::new(Duration::ZERO);
        assert_eq!(
            off.get_or_fetch("a".into(), fetch("6")).await.expect("a"),
            "6"
        );
        assert_eq!(
            off.get_or_fetch("a".into(), fetch("7")).await.expect("a"),
            "7"
        );
    }
}
