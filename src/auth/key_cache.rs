//! API key verification. argon2 costs ~30 ms of CPU, so each distinct key is
//! verified once per process: the result (match or no match) is cached under a
//! SHA-256 of tenant and key — never the key itself — and revalidated when the
//! tenant's key list changes. A key with an id (`fg_<id>_<secret>`) is looked
//! up by its id on every request, cached or not: an id the tenant does not
//! declare (or no longer does) is refused with no work, an expired one too,
//! and only the one hash of a declared id is verified; its cached answer holds
//! while that id's label and hash are unchanged. Verifications are admitted by
//! the [`Gate`] (a fixed pool, turns per client address, a budget of failures
//! per address);
//! concurrent requests with the same unknown key wait for one verification
//! instead of starting many.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quick_cache::sync::{Cache, GuardResult};
use sha2::{Digest, Sha256};

use crate::auth::gate::{Client, Gate, KeyStats, Refused};
use crate::flow::{KeyWithId, Tenant};

/// Who a presented API key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A key of consumer `label`; `id` for keys with one.
    Known { label: String, id: Option<String> },
    /// A declared id whose key expired (refused without verifying it).
    Expired { label: String, id: String },
    /// No key of the tenant.
    Unknown,
}

impl Verdict {
    /// The label of a valid key.
    pub fn label(&self) -> Option<&str> {
        match self {
            Self::Known { label, .. } => Some(label),
            _ => None,
        }
    }
}

/// Verified in place of a Basic user that does not exist, so that an unknown
/// user costs what a wrong password does (users cannot be found by timing).
/// The hash of 24 random bytes that were thrown away: nothing matches it.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$yDec7/LCqk4YkPJ/Ut1n1Q$22eAS/r9D0iiP9nwgdMYVs2awa/63PUplsyW8Z7Vrfk";

#[derive(Clone)]
struct Entry {
    /// The label the key matched, if any.
    label: Option<String>,
    /// Fingerprint of the tenant's key list when this was computed.
    keys: [u8; 32],
}

pub struct KeyVerifier {
    cache: Cache<[u8; 32], Entry>,
    gate: Arc<Gate>,
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
    pub fn new(capacity: usize, gate: Arc<Gate>) -> Self {
        Self {
            cache: Cache::new(capacity.max(16)),
            gate,
            stats: KeyStats::default(),
        }
    }

    /// Which of `tenant`'s keys `key` is; `client` is who asks. A key of the
    /// id form is looked up by its id only; any other among the keys without ids.
    pub async fn identify(
        &self,
        tenant: &Tenant,
        key: &str,
        client: Client,
    ) -> Result<Verdict, Refused> {
        let ck = cache_key(tenant, key);
        let Some(id) = crate::auth::keys::key_id(key) else {
            let label = self
                .cached(ck, tenant.keys_fingerprint, &tenant.api_keys, key, client)
                .await?;
            return Ok(label.map_or(Verdict::Unknown, |label| Verdict::Known { label, id: None }));
        };
        let Some(declared) = tenant.key_ids.get(id) else {
            return Ok(Verdict::Unknown);
        };
        let KeyWithId { label, hash, .. } = declared;
        // The clock is read only for a key that can expire.
        if declared.expires.is_some() && declared.expired_at(time::OffsetDateTime::now_utc()) {
            return Ok(Verdict::Expired {
                label: label.clone(),
                id: id.to_owned(),
            });
        }
        let candidates = [(label.clone(), hash.clone())];
        let matched = self
            .cached(ck, declared.fingerprint, &candidates, key, client)
            .await?;
        Ok(match matched {
            Some(label) => Verdict::Known {
                label,
                id: Some(id.to_owned()),
            },
            None => Verdict::Unknown,
        })
    }

    /// Whether `password` is Basic user `user`'s, with the same cache: the entry
    /// is keyed by a SHA-256 over tenant, user and password, and trusted only while
    /// the user's hash is unchanged. A user that does not exist is checked
    /// against a hash nothing matches, at the same cost.
    pub async fn check_basic(
        &self,
        tenant: &Tenant,
        user: &str,
        password: &str,
        client: Client,
    ) -> Result<bool, Refused> {
        let known = tenant.basic_hash(user);
        let hash = known.unwrap_or(DUMMY_HASH);
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
        let matched = self.cached(ck, fp, &candidates, password, client).await?;
        Ok(known.is_some() && matched.is_some())
    }

    async fn cached(
        &self,
        ck: [u8; 32],
        fp: [u8; 32],
        candidates: &[(String, String)],
        key: &str,
        client: Client,
    ) -> Result<Option<String>, Refused> {
        loop {
            match self.cache.get_value_or_guard_async(&ck).await {
                Ok(entry) if entry.keys == fp => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(entry.label);
                }
                Ok(_) => {
                    // The tenant's keys changed since: verify again.
                    self.cache.remove(&ck);
                    continue;
                }
                Err(guard) => {
                    // Refused: nothing is cached (the guard is dropped), and
                    // whoever waited on it tries for itself.
                    let label = self
                        .gate
                        .find_hash(client, Arc::from(candidates), key, &self.stats)
                        .await?;
                    let _ = guard.insert(Entry {
                        label: label.clone(),
                        keys: fp,
                    });
                    return Ok(label);
                }
            }
        }
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
                .map(|(l, k)| (l.to_string(), crate::auth::keys::hash(k).unwrap()))
                .collect(),
        )
    }

    const ME: Client = Client::LOCAL;

    #[tokio::test]
    async fn verifies_once_per_key_and_rechecks_when_keys_change() {
        let v = KeyVerifier::new(100, Gate::new(2, 1000));
        let t = tenant(&[("a", "key-a"), ("b", "key-b")]);
        assert_eq!(
            v.identify(&t, "key-b", ME).await.unwrap().label(),
            Some("b")
        );
        let after_first = v.stats.verifications.load(Ordering::Relaxed);
        assert_eq!(
            v.identify(&t, "key-b", ME).await.unwrap().label(),
            Some("b")
        );
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), after_first);
        assert_eq!(v.identify(&t, "nope", ME).await.unwrap(), Verdict::Unknown);
        let after_wrong = v.stats.verifications.load(Ordering::Relaxed);
        assert_eq!(
            v.identify(&t, "nope", ME).await.unwrap(),
            Verdict::Unknown,
            "a wrong key is cached too"
        );
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), after_wrong);
        // The key is removed from the tenant: the cached match no longer counts.
        let t2 = Tenant::new(t.name.clone(), t.api_keys[..1].to_vec());
        assert_eq!(
            v.identify(&t2, "key-b", ME).await.unwrap(),
            Verdict::Unknown
        );
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_verification() {
        let v = Arc::new(KeyVerifier::new(100, Gate::new(2, 1000)));
        let t = Arc::new(tenant(&[("a", "key-a")]));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (v, t) = (v.clone(), t.clone());
                tokio::spawn(async move { v.identify(&t, "key-a", ME).await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().label(), Some("a"));
        }
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), 1);
    }

    fn with_id(t: Tenant, label: &str, expires: Option<time::OffsetDateTime>) -> (Tenant, String) {
        let (id, key) = crate::auth::keys::generate();
        let mut keys: Vec<KeyWithId> = t.key_ids.values().cloned().collect();
        keys.push(KeyWithId::new(
            id,
            label.to_owned(),
            crate::auth::keys::hash(&key).unwrap(),
            expires,
        ));
        (t.with_key_ids(keys), key)
    }

    #[tokio::test]
    async fn keys_with_ids_verify_one_hash_and_unknown_ids_none() {
        let v = KeyVerifier::new(100, Gate::new(2, 1000));
        let (t, key) = with_id(tenant(&[("a", "key-a"), ("b", "key-b")]), "c", None);
        let (t, other) = with_id(t, "c", None);
        let verified = || v.stats.verifications.load(Ordering::Relaxed);
        let id = crate::auth::keys::key_id(&key).unwrap().to_owned();
        assert_eq!(
            v.identify(&t, &key, ME).await.unwrap(),
            Verdict::Known {
                label: "c".into(),
                id: Some(id.clone())
            }
        );
        assert_eq!(verified(), 1, "only the id's hash");
        // A wrong secret for a declared id: one verification.
        let wrong = format!("{}{}", &key[..12], "A".repeat(43));
        assert_eq!(v.identify(&t, &wrong, ME).await.unwrap(), Verdict::Unknown);
        assert_eq!(verified(), 2);
        // An id nobody declared: no work at all.
        let unknown = format!("fg_zzzzzzzz_{}", &key[12..]);
        assert_eq!(
            v.identify(&t, &unknown, ME).await.unwrap(),
            Verdict::Unknown
        );
        assert_eq!(verified(), 2);
        // The cached key is revoked as soon as its id is gone.
        assert!(v.is_cached(&t, &key));
        let kept: Vec<KeyWithId> = t.key_ids.values().filter(|k| k.id != id).cloned().collect();
        let t2 = t.clone().with_key_ids(kept);
        assert_eq!(v.identify(&t2, &key, ME).await.unwrap(), Verdict::Unknown);
        assert_eq!(
            v.identify(&t2, &other, ME).await.unwrap().label(),
            Some("c")
        );
        // The other keys are unaffected.
        assert_eq!(
            v.identify(&t2, "key-a", ME).await.unwrap().label(),
            Some("a")
        );
    }

    #[tokio::test]
    async fn an_expired_key_is_refused_even_when_cached() {
        let v = KeyVerifier::new(100, Gate::new(2, 1000));
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let (t, key) = with_id(tenant(&[]), "c", Some(later));
        assert_eq!(v.identify(&t, &key, ME).await.unwrap().label(), Some("c"));
        let mut keys: Vec<KeyWithId> = t.key_ids.values().cloned().collect();
        keys[0].expires = Some(time::OffsetDateTime::now_utc());
        let id = keys[0].id.clone();
        let expired = t.with_key_ids(keys);
        let before = v.stats.verifications.load(Ordering::Relaxed);
        assert_eq!(
            v.identify(&expired, &key, ME).await.unwrap(),
            Verdict::Expired {
                label: "c".into(),
                id
            }
        );
        assert_eq!(v.stats.verifications.load(Ordering::Relaxed), before);
    }
}
