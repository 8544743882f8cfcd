//! Admin tokens for `/_admin`: argon2id hashes from the settings, each global or
//! scoped to tenants. As with API keys, each distinct token is verified once per
//! process (admitted by the same [`Gate`]: its pool, turns and failure budgets)
//! and the answer cached under a SHA-256 of the token, never the token.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::auth::gate::{Client, Gate, KeyStats, Refused};
use crate::config::{AdminRole, AdminToken};
use crate::domain::TenantName;

/// Who an admin request is, and what it may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminIdentity {
    pub label: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<TenantName>>,
    /// Whether it may change things or only look.
    pub role: AdminRole,
}

impl AdminIdentity {
    /// Whether it may act (replay, skip, unblock, redeliver, change
    /// subscriptions), not only look.
    pub fn operates(&self) -> bool {
        self.role == AdminRole::Operate
    }

    pub fn sees(&self, tenant: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t.as_str() == tenant))
    }
}

pub struct AdminTokens {
    tokens: Arc<[(AdminIdentity, String)]>,
    cache: Cache<[u8; 32], Option<Arc<AdminIdentity>>>,
    gate: Arc<Gate>,
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
    pub fn new(tokens: &[AdminToken], gate: Arc<Gate>) -> Self {
        let tokens: Vec<_> = tokens
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
                        role: t.role,
                    },
                    t.hash.clone(),
                )
            })
            .collect();
        Self {
            tokens: Arc::from(tokens),
            cache: Cache::new(1024),
            gate,
            stats: KeyStats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The identity of `token`, if it is one of the admin tokens; `client` is
    /// who asks.
    pub async fn identify(
        &self,
        token: &str,
        client: Client,
    ) -> Result<Option<Arc<AdminIdentity>>, Refused> {
        let ck = cache_key(token);
        match self.cache.get_value_or_guard_async(&ck).await {
            Ok(found) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                Ok(found)
            }
            Err(guard) => {
                let found = self
                    .gate
                    .find_hash(client, self.tokens.clone(), token, &self.stats)
                    .await?
                    .map(Arc::new);
                let _ = guard.insert(found.clone());
                Ok(found)
            }
        }
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
                    hash: crate::auth::keys::hash("global-secret").unwrap(),
                    tenants: None,
                    role: AdminRole::Read,
                },
                AdminToken {
                    label: "acme-ops".into(),
                    hash: crate::auth::keys::hash("acme-secret").unwrap(),
                    tenants: Some(vec!["acme".into()]),
                    role: AdminRole::Operate,
                },
            ],
            Gate::new(2, 1000),
        );
        let me = Client::LOCAL;
        let acme = tokens.identify("acme-secret", me).await.unwrap().unwrap();
        assert_eq!(acme.label, "acme-ops");
        assert!(acme.operates());
        assert!(acme.sees("acme") && !acme.sees("other"));
        assert!(
            tokens
                .identify("global-secret", me)
                .await
                .unwrap()
                .unwrap()
                .sees("other")
        );
        assert!(tokens.identify("nope", me).await.unwrap().is_none());
        let before = tokens.stats.verifications.load(Ordering::Relaxed);
        assert!(tokens.identify("acme-secret", me).await.unwrap().is_some());
        assert!(tokens.identify("nope", me).await.unwrap().is_none());
        assert_eq!(tokens.stats.verifications.load(Ordering::Relaxed), before);
    }
}
