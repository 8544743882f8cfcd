//! Each tenant's share of what this node has claimed: work waiting for or
//! holding one of the tenant's running places (`tenant_max_running`). A tenant
//! with enough of it here is left out of claims, so that one tenant's backlog in
//! the shared queue cannot take every claim slot while its work waits for places.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::TenantShares;

#[derive(Default)]
pub(super) struct TenantLoad {
    held: Mutex<HashMap<String, usize>>,
}

/// One piece of a tenant's work held on this node; dropping it lets it go.
pub(super) struct Held {
    load: Arc<TenantLoad>,
    tenant: String,
}

impl TenantLoad {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn hold(self: &Arc<Self>, tenant: &str) -> Held {
        *self.lock().entry(tenant.to_owned()).or_default() += 1;
        Held {
            load: self.clone(),
            tenant: tenant.to_owned(),
        }
    }

    /// How the next claim shares itself: tenants holding `cap` or more here are
    /// left out, and none takes more than `cap` of it.
    pub(super) fn shares(&self, cap: usize) -> TenantShares {
        let full = self
            .lock()
            .iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(t, _)| t.clone())
            .collect();
        TenantShares { full, each: cap }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.load.lock();
        if let Some(n) = held.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_cap_is_left_out_until_its_work_ends() {
        let load = Arc::new(TenantLoad::default());
        let a: Vec<Held> = (0..3).map(|_| load.hold("a")).collect();
        let _b = load.hold("b");
        let shares = load.shares(3);
        assert_eq!((shares.full, shares.each), (vec!["a".to_owned()], 3));
        drop(a);
        assert!(load.shares(3).full.is_empty());
        assert!(load.lock().get("a").is_none());
    }
}
