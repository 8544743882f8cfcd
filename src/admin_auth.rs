//! Admin tokens for `/_admin`: argon2id hashes from the settings, each global or
//! scoped to tenants. As with API keys, each distinct token is verified once per
//! process (off the request threads, a few at a time) and the answer cached under a
//! SHA-256 of the token, never the token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::auth::KeyStats;
use crate::config::AdminToken;
use crate::domain::TenantName;

/// Who an admin request is, and what it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    pub label: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<TenantName>>,
}

impl AdminIdentity {
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t.as_str() == tenant))
    }
}

pub struct AdminTokens {
    tokens: Arc<Vec<(AdminIdentity, String)>>,
    cache: Cache<[u8; 32], Option<Arc<AdminIdentity>>>,
    limit: Arc<Semaphore>,
    pub stats: KeyStats,
}

fn cache_key(token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"admin\0");
    h.update(token.as_bytes());
    h.finalize().into()
}

impl AdminTokens {
    /// Tokens with invalid tenant names are refused by `Settings::validate`.
    pub fn new(tokens: &[AdminToken], max_parallel: usize) -> Self {
        let tokens = tokens
            .iter()
            .map(|t| {
                let tenants = t.tenants.as_ref().map(|ts| {
                    ts.iter()
                        .filter_map(|n| TenantName::parse(n).ok())
                        .collect()
                });
                (
                    AdminIdentity {
                        label: t.label.clone(),
                        tenants,
                    },
                    t.hash.clone(),
                )
            })
            .collect();
        Self {
            tokens: Arc::new(tokens),
            cache: Cache::new(1024),
            limit: Arc::new(Semaphore::new(max_parallel.max(1))),
            stats: KeyStats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The identity of `token`, if it is one of the admin tokens.
    pub async fn identify(&self, token: &str) -> Option<Arc<AdminIdentity>> {
        let ck = cache_key(token);
        match self.cache.get_value_or_guard_async(&ck).await {
            Ok(found) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                found
            }
            Err(guard) => {
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                let found = self.verify(token).await;
                let _ = guard.insert(found.clone());
                found
            }
        }
    }

    async fn verify(&self, token: &str) -> Option<Arc<AdminIdentity>> {
        let _permit = self.limit.clone().acquire_owned().await.ok()?;
        let tokens = self.tokens.clone();
        let token = token.to_owned();
        self.stats
            .verifications
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            tokens
                .iter()
                .find(|(_, phc)| crate::keys::verify(&token, phc))
                .map(|(who, _)| Arc::new(who.clone()))
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scoped_and_global_tokens_verify_once() {
        let tokens = AdminTokens::new(
            &[
                AdminToken {
                    label: "all".into(),
                    hash: crate::keys::hash("global-secret").unwrap(),
                    tenants: None,
                },
                AdminToken {
                    label: "acme-ops".into(),
                    hash: crate::keys::hash("acme-secret").unwrap(),
                    tenants: Some(vec!["acme".into()]),
                },
            ],
            2,
        );
        let acme = tokens.identify("acme-secret").await.unwrap();
        assert_eq!(acme.label, "acme-ops");
        assert!(acme.sees("acme") && !acme.sees("other"));
        assert!(
            tokens
                .identify("global-secret")
                .await
                .unwrap()
                .sees("other")
        );
        assert!(tokens.identify("nope").await.is_none());
        let before = tokens.stats.verifications.load(Ordering::Relaxed);
        assert!(tokens.identify("acme-secret").await.is_some());
        assert!(tokens.identify("nope").await.is_none());
        assert_eq!(tokens.stats.verifications.load(Ordering::Relaxed), before);
    }
}
