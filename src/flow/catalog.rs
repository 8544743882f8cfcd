//! The set of loaded tenants and triggers, looked up by the names in a URL.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{Tenant, Trigger};

#[derive(Debug, Clone)]
pub struct TenantEntry {
    pub tenant: Arc<Tenant>,
    pub triggers: HashMap<String, Arc<Trigger>>,
}

/// An immutable snapshot; hot reload swaps in a new one.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tenants: HashMap<String, TenantEntry>,
}

impl Catalog {
    pub fn insert_tenant(&mut self, tenant: Arc<Tenant>) {
        let name = tenant.name.as_str().to_owned();
        self.tenants
            .entry(name)
            .and_modify(|e| e.tenant = tenant.clone())
            .or_insert_with(|| TenantEntry {
                tenant,
                triggers: HashMap::new(),
            });
    }

    /// The tenant must have been inserted first.
    pub fn insert_trigger(&mut self, trigger: Arc<Trigger>) {
        if let Some(e) = self.tenants.get_mut(trigger.key.tenant.as_str()) {
            e.triggers
                .insert(trigger.key.trigger.as_str().to_owned(), trigger);
        }
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantEntry> {
        self.tenants.get(name)
    }

    pub fn trigger(&self, tenant: &str, trigger: &str) -> Option<&Arc<Trigger>> {
        self.tenants.get(tenant)?.triggers.get(trigger)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &TenantEntry> {
        self.tenants.values()
    }

    pub fn triggers(&self) -> impl Iterator<Item = &Arc<Trigger>> {
        self.tenants.values().flat_map(|t| t.triggers.values())
    }

    pub fn trigger_count(&self) -> usize {
        self.tenants.values().map(|t| t.triggers.len()).sum()
    }
}

/// The current catalog, shared by requests and workers; hot reload replaces it.
#[derive(Debug, Clone, Default)]
pub struct SharedCatalog(Arc<std::sync::RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(catalog))))
    }

    pub fn get(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, catalog: Catalog) {
        let next = Arc::new(catalog);
        match self.0.write() {
            Ok(mut g) => *g = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}
