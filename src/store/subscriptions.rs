//! Event subscriptions made through the admin API: stored so that every node
//! sends them. Each change moves the store's subscription version in the same
//! transaction, so a node that reads the version each second knows when to read
//! the subscriptions again.
//!
//! A row is the subscription's id, tenant and name (unique per tenant) and one
//! JSON document with the rest (`Spec`), the same text in both stores.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{
    EventPattern, Include, MessageId, Micros, Subscription, SubscriptionSource, TenantName,
};

use super::{Store, StoreError};

/// The `spec` column.
#[derive(Serialize, Deserialize)]
pub(super) struct Spec {
    #[serde(default)]
    description: Option<String>,
    url: String,
    events: Vec<String>,
    #[serde(default)]
    triggers: Option<Vec<String>>,
    #[serde(default)]
    basic_auth: Option<(String, String)>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    include_full: bool,
    /// Milliseconds.
    #[serde(default)]
    retry_ms: Option<Vec<u64>>,
    enabled: bool,
}

impl Spec {
    pub(super) fn of(s: &Subscription) -> serde_json::Value {
        let spec = Spec {
            description: s.description.clone(),
            url: s.url.clone(),
            events: s.events.iter().map(ToString::to_string).collect(),
            triggers: s.triggers.clone(),
            basic_auth: s.basic_auth.clone(),
            secret: s.secret.clone(),
            include_full: s.include == Include::Full,
            retry_ms: s
                .retry
                .as_ref()
                .map(|r| r.iter().map(|d| d.as_millis() as u64).collect()),
            enabled: s.enabled,
        };
        serde_json::to_value(spec).unwrap_or_default()
    }
}

/// The parts of a row.
pub(super) struct Row {
    pub id: uuid::Uuid,
    pub tenant: String,
    pub name: String,
    pub spec: serde_json::Value,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Row {
    pub(super) fn read(self) -> Result<Subscription, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("subscription {}: {what}", self.id));
        let tenant = TenantName::parse(&self.tenant).map_err(|_| corrupt("tenant"))?;
        let spec: Spec = serde_json::from_value(self.spec.clone()).map_err(|_| corrupt("spec"))?;
        let events = spec
            .events
            .iter()
            .map(|e| EventPattern::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| corrupt("events"))?;
        Ok(Subscription {
            id: self.id,
            tenant,
            name: self.name,
            description: spec.description,
            url: spec.url,
            events,
            triggers: spec.triggers,
            basic_auth: spec.basic_auth,
            secret: spec.secret,
            include: if spec.include_full {
                Include::Full
            } else {
                Include::Ids
            },
            retry: spec
                .retry_ms
                .map(|r| r.into_iter().map(Duration::from_millis).collect()),
            enabled: spec.enabled,
            source: SubscriptionSource::Api,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    /// Moves on every change of the stored subscriptions.
    pub async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        each!(self, s => s.subscriptions_version().await)
    }

    /// Every stored subscription of every tenant, by tenant and name.
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        each!(self, s => s.list_subscriptions().await)
    }

    /// Stores a new subscription; false when its tenant has one of that name.
    pub async fn add_subscription(&self, sub: &Subscription) -> Result<bool, StoreError> {
        let spec = Spec::of(sub);
        each!(self, s => s.add_subscription(sub, spec).await)
    }

    /// Replaces the subscription of `sub.id`; false when there is none (or its
    /// new name is taken).
    pub async fn update_subscription(&self, sub: &Subscription) -> Result<bool, StoreError> {
        let spec = Spec::of(sub);
        each!(self, s => s.update_subscription(sub, spec).await)
    }

    /// False when there is none.
    pub async fn delete_subscription(&self, id: MessageId) -> Result<bool, StoreError> {
        each!(self, s => s.delete_subscription(id).await)
    }
}
