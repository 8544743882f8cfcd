//! Which subscriptions want an event: the one answer every part of event
//! delivery asks (the execution path's cheap check, the fan-out's list).

use crate::domain::EventKind;
use crate::flow::{SharedCatalog, Subscription, Tenant};

/// The subscriptions of every tenant, as the catalog holds them.
#[derive(Clone)]
pub struct Subscribers {
    catalog: SharedCatalog,
}

/// Whether `s` wants event `event`: flowgate's own by kind, a business event
/// by name or prefix. `_trigger` is the trigger it happened on, if any (for a
/// subscription's trigger filter).
fn wanted(s: &Subscription, event: &str, _trigger: Option<&str>) -> bool {
    s.enabled
        && match EventKind::parse(event) {
            Some(kind) => s.events.contains(&kind),
            None => s.lists_business(event),
        }
}

/// A tenant's subscriptions wanting `event`, in file order.
fn select<'a>(
    tenant: &'a Tenant,
    event: &'a str,
    trigger: Option<&'a str>,
) -> impl Iterator<Item = &'a Subscription> + 'a {
    tenant
        .subscriptions
        .iter()
        .filter(move |s| wanted(s, event, trigger))
}

impl Subscribers {
    pub fn new(catalog: SharedCatalog) -> Self {
        Self { catalog }
    }

    /// The enabled subscriptions of `tenant` that want `event` (of `trigger`).
    pub fn matching(&self, tenant: &str, event: &str, trigger: Option<&str>) -> Vec<Subscription> {
        let catalog = self.catalog.get();
        let Some(entry) = catalog.tenant(tenant) else {
            return Vec::new();
        };
        select(&entry.tenant, event, trigger).cloned().collect()
    }

    /// Whether any enabled subscription of `tenant` wants flowgate's own event
    /// `kind`: on the execution path, where nobody listening must cost one
    /// catalog read and a bit test.
    pub fn wants(&self, tenant: &str, kind: EventKind, trigger: Option<&str>) -> bool {
        let catalog = self.catalog.get();
        catalog.tenant(tenant).is_some_and(|e| {
            e.tenant.wants(kind) && select(&e.tenant, kind.as_str(), trigger).next().is_some()
        })
    }

    /// Whether any enabled subscription of `tenant` wants the business event
    /// `name` a flow emitted.
    pub fn wants_business(&self, tenant: &str, name: &str, trigger: Option<&str>) -> bool {
        let catalog = self.catalog.get();
        catalog.tenant(tenant).is_some_and(|e| {
            e.tenant.wants_business && select(&e.tenant, name, trigger).next().is_some()
        })
    }

    /// The subscription `name` of `tenant`, enabled or not.
    pub fn named(&self, tenant: &str, name: &str) -> Option<Subscription> {
        self.catalog.get().tenant(tenant).and_then(|e| {
            e.tenant
                .subscriptions
                .iter()
                .find(|s| s.name == name)
                .cloned()
        })
    }
}
