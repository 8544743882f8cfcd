//! Which subscriptions of a tenant want an event: those of `_tenant.yaml` (in
//! the catalog) and those made through the admin API (in the store, cached
//! here). Everything that turns an event into deliveries asks [`Subscribers`],
//! so the two kinds are matched by one rule (`Subscription::wants`).
//!
//! The cache is read again when the store's subscription version moves: at
//! once on the node that made the change (`refresh`), within `WATCH` on the
//! others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{EventKind, Subscription};
use crate::flow::SharedCatalog;
use crate::store::{Store, StoreError};

/// How often each node looks for changes made on another.
pub const WATCH: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Cached {
    /// The store's subscription version these were read at.
    version: Option<i64>,
    by_tenant: HashMap<String, Vec<Arc<Subscription>>>,
    /// Per tenant, the [`EventKind`]s some enabled stored subscription wants.
    masks: HashMap<String, u16>,
    /// The tenants with an enabled stored subscription that may want a
    /// business event.
    business: HashSet<String>,
}

/// The subscriptions of every tenant. Cheap to clone.
#[derive(Clone)]
pub struct Subscribers {
    catalog: SharedCatalog,
    store: Store,
    api: Arc<RwLock<Cached>>,
    /// One reading of the store at a time.
    reading: Arc<tokio::sync::Mutex<()>>,
}

impl Subscribers {
    pub fn new(catalog: SharedCatalog, store: Store) -> Self {
        Self {
            catalog,
            store,
            api: Arc::default(),
            reading: Arc::default(),
        }
    }

    fn cached(&self) -> std::sync::RwLockReadGuard<'_, Cached> {
        self.api.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the stored subscriptions have been read once. Until then every
    /// event is written (the stored ones may want it) and the fan-out waits,
    /// so that nothing wanted by a stored subscription is lost at a start.
    pub fn loaded(&self) -> bool {
        self.cached().version.is_some()
    }

    /// Whether some enabled subscription of `tenant` wants flowgate's own event
    /// `kind` (of `trigger`): on the execution path, where nobody listening
    /// costs one catalog read and two bit tests.
    pub fn wants(&self, tenant: &str, kind: EventKind, trigger: Option<&str>) -> bool {
        self.wanted(
            tenant,
            kind.as_str(),
            trigger,
            |t| t.wants(kind),
            |c| c.masks.get(tenant).is_some_and(|m| m & kind.bit() != 0),
        )
    }

    /// Whether some enabled subscription of `tenant` wants the business event
    /// `name` a flow emitted (of `trigger`).
    pub fn wants_business(&self, tenant: &str, name: &str, trigger: Option<&str>) -> bool {
        self.wanted(
            tenant,
            name,
            trigger,
            |t| t.wants_business,
            |c| c.business.contains(tenant),
        )
    }

    /// [`Self::matching`] is not empty, without copying a subscription; true
    /// too while the stored subscriptions are not read yet. `file_may` and
    /// `stored_may` are the bit tests that spare the walk over the lists.
    fn wanted(
        &self,
        tenant: &str,
        event: &str,
        trigger: Option<&str>,
        file_may: impl Fn(&crate::flow::Tenant) -> bool,
        stored_may: impl Fn(&Cached) -> bool,
    ) -> bool {
        let in_file = self.catalog.get().tenant(tenant).is_some_and(|e| {
            file_may(&e.tenant)
                && e.tenant
                    .subscriptions
                    .iter()
                    .any(|s| s.wants(event, trigger))
        });
        in_file || {
            let c = self.cached();
            c.version.is_none()
                || (stored_may(&c)
                    && c.by_tenant
                        .get(tenant)
                        .is_some_and(|l| l.iter().any(|s| s.wants(event, trigger))))
        }
    }

    /// The subscriptions of `tenant` that want `event` (of `trigger`): the one
    /// place that decides who receives an event.
    pub fn matching(
        &self,
        tenant: &str,
        event: &str,
        trigger: Option<&str>,
    ) -> Vec<Arc<Subscription>> {
        self.select(tenant, |s| s.wants(event, trigger))
    }

    /// Every subscription of a tenant: the file's first, then the stored ones.
    pub fn of_tenant(&self, tenant: &str) -> Vec<Arc<Subscription>> {
        self.select(tenant, |_| true)
    }

    /// The subscriptions of a tenant that `keep` keeps, in `of_tenant`'s
    /// order; a file's subscription is copied only when kept (this runs per
    /// event and per delivery).
    fn select(&self, tenant: &str, keep: impl Fn(&Subscription) -> bool) -> Vec<Arc<Subscription>> {
        let mut all: Vec<Arc<Subscription>> = self
            .catalog
            .get()
            .tenant(tenant)
            .map(|e| {
                e.tenant
                    .subscriptions
                    .iter()
                    .filter(|s| keep(s))
                    .cloned()
                    .map(Arc::new)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(api) = self.cached().by_tenant.get(tenant) {
            all.extend(api.iter().filter(|s| keep(s)).cloned());
        }
        all
    }

    /// Every tenant with a subscription, file or stored, by name.
    pub fn tenants(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .get()
            .tenants()
            .filter(|e| !e.tenant.subscriptions.is_empty())
            .map(|e| e.tenant.name.to_string())
            .collect();
        names.extend(self.cached().by_tenant.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// A subscription by tenant and name (what a delivery names).
    pub fn named(&self, tenant: &str, name: &str) -> Option<Arc<Subscription>> {
        self.select(tenant, |s| s.name == name).into_iter().next()
    }

    /// A subscription by id, of any tenant.
    pub fn by_id(&self, id: uuid::Uuid) -> Option<Arc<Subscription>> {
        let catalog = self.catalog.get();
        let file = catalog
            .tenants()
            .flat_map(|e| e.tenant.subscriptions.iter())
            .find(|s| s.id == id)
            .cloned()
            .map(Arc::new);
        file.or_else(|| {
            self.cached()
                .by_tenant
                .values()
                .flatten()
                .find(|s| s.id == id)
                .cloned()
        })
    }

    /// Reads the stored subscriptions again if they changed since the last read.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let _one = self.reading.lock().await;
        let version = self.store.subscriptions_version().await?;
        if self.cached().version == Some(version) {
            return Ok(());
        }
        let all = self.store.list_subscriptions().await?;
        let mut next = Cached {
            version: Some(version),
            ..Cached::default()
        };
        for s in all {
            let tenant = s.tenant.to_string();
            let mask = EventKind::ALL
                .into_iter()
                .filter(|k| s.enabled && s.events.iter().any(|p| p.matches(k.as_str())))
                .fold(0, |m, k| m | k.bit());
            *next.masks.entry(tenant.clone()).or_default() |= mask;
            if s.enabled && s.events.iter().any(|p| p.may_match_business()) {
                next.business.insert(tenant.clone());
            }
            next.by_tenant.entry(tenant).or_default().push(Arc::new(s));
        }
        *self.api.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Refreshes every [`WATCH`], for as long as the runtime runs.
    pub fn watch(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut said = false;
            loop {
                match this.refresh().await {
                    Ok(()) => said = false,
                    Err(e) if !said => {
                        said = true;
                        tracing::warn!(error = %e, "cannot read the stored event subscriptions");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(WATCH).await;
            }
        });
    }
}
