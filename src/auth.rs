//! API key verification. argon2 costs ~30 ms of CPU, so each distinct key is
//! verified once per process: the result (match or no match) is cached under a
//! SHA-256 of tenant and key — never the key itself — and revalidated when the
//! tenant's key list changes. Verifications run on tokio's blocking pool, never
//! on a request thread, and at most `max_parallel` at once; concurrent requests
//! with the same unknown key wait for one verification instead of starting many.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::{Cache, GuardResult};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::flow::Tenant;

#[derive(Clone)]
struct Entry {
    /// The label the key matched, if any.
    label: Option<String>,
    /// Fingerprint of the tenant's key list when this was computed.
    keys: [u8; 32],
}

/// Counters for `/_metrics` and tests.
#[derive(Debug, Default)]
pub struct KeyStats {
    pub verifications: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

pub struct KeyVerifier {
    cache: Cache<[u8; 32], Entry>,
    limit: Arc<Semaphore>,
    pub stats: KeyStats,
}

fn cache_key(tenant: &Tenant, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tenant.name.as_str().as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

impl KeyVerifier {
    pub fn new(capacity: usize, max_parallel: usize) -> Self {
        Self {
            cache: Cache::new(capacity.max(16)),
            limit: Arc::new(Semaphore::new(max_parallel.max(1))),
            stats: KeyStats::default(),
        }
    }

    /// The label of `tenant`'s key that `key` is, if any.
    pub async fn identify(&self, tenant: &Tenant, key: &str) -> Option<String> {
        let ck = cache_key(tenant, key);
        self.cached(ck, tenant.keys_fingerprint, &tenant.api_keys, key)
            .await
    }

    /// Whether `password` is Basic user `user`'s, with the same cache: the entry
    /// is keyed by a SHA-256 over tenant, user and password, and trusted only while
    /// the user's hash is unchanged.
    pub async fn check_basic(&self, tenant: &Tenant, user: &str, password: &str) -> bool {
        let Some(hash) = tenant.basic_hash(user) else {
            return false;
        };
        let mut h = Sha256::new();
        h.update(b"basic\0");
        h.update(tenant.name.as_str().as_bytes());
        h.update([0]);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let ck: [u8; 32] = h.finalize().into();
        let fp: [u8; 32] = Sha256::digest(hash.as_bytes()).into();
        let candidates = [(user.to_owned(), hash.to_owned())];
        self.cached(ck, fp, &candidates, password).await.is_some()
    }

    async fn cached(
        &self,
        ck: [u8; 32],
        fp: [u8; 32],
        candidates: &[(String, String)],
        key: &str,
    ) -> Option<String> {
        loop {
            match self.cache.get_value_or_guard_async(&ck).await {
                Ok(entry) if entry.keys == fp => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return entry.label;
                }
                Ok(_) => {
                    // The tenant's keys changed since: verify again.
                    self.cache.remove(&ck);
                    continue;
                }
                Err(guard) => {
                    self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                    let label = self.verify(candidates, key).await;
                    let _ = guard.insert(Entry {
                        label: label.clone(),
                        keys: fp,
                    });
                    return label;
                }
            }
        }
    }

    async fn verify(&self, candidates: &[(String, String)], key: &str) -> Option<String> {
        let Ok(_permit) = self.limit.clone().acquire_owned().await else {
            return None;
        };
        let candidates = candidates.to_vec();
        let key = key.to_owned();
        let tried = candidates.len() as u64;
        self.stats.verifications.fetch_add(tried, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .find(|(_, phc)| crate::keys::verify(&key, phc))
                .map(|(label, _)| label)
        })
        .await
        .ok()
        .flatten()
    }

    /// Whether a cached answer exists (for tests of the cache itself).
    pub fn is_cached(&self, tenant: &Tenant, key: &str) -> bool {
        matches!(
            self.cache.get_value_or_guard(&cache_key(tenant, key), None),
            GuardResult::Value(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantName;

    fn tenant(keys: &[(&str, &str)]) -> Tenant {
        Tenant::new(
            TenantName::parse("t").unwrap(),
            keys.iter()
                .map(|(l, k)| (l.to_string(), crate::keys::hash(k).unwrap()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn verifies_once_per_key_and_rechecks_when_keys_change() {
        let v = KeyVerifier::new(100, 2);
        let t = tenant(&[("a", "key-a"), ("b", "key-b")]);
        assert_eq!(v.identify(&t, "key-b").await.as_deref(), Some("b"));
        let after_first = v.stats.verifications.load(Ordering::Relaxed);
        assert_eq!(v.identify(&t, "key-b").await.as_deref(), Some("b"));
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), after_first);
        assert_eq!(v.identify(&t, "nope").await, None);
        let after_wrong = v.stats.verifications.load(Ordering::Relaxed);
        assert_eq!(
            v.identify(&t, "nope").await,
            None,
            "a wrong key is cached too"
        );
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), after_wrong);
        // The key is removed from the tenant: the cached match no longer counts.
        let t2 = Tenant::new(t.name.clone(), t.api_keys[..1].to_vec());
        assert_eq!(v.identify(&t2, "key-b").await, None);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_verification() {
        let v = Arc::new(KeyVerifier::new(100, 2));
        let t = Arc::new(tenant(&[("a", "key-a")]));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (v, t) = (v.clone(), t.clone());
                tokio::spawn(async move { v.identify(&t, "key-a").await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().as_deref(), Some("a"));
        }
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), 1);
    }
}
