//! Outbound event webhooks ("ping then pull"): when something a tenant subscribed
//! to happens, a small signed payload naming it is stored as a delivery for each
//! enabled subscription, then sent by [`sender`] on the retry schedule. Receivers
//! pull the details through the admin API.
//!
//! Emitting is on the execution path: with no subscriber it costs one catalog read
//! and a bit test; otherwise a channel send. Storing happens in a task, in batches.

pub mod sender;

use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::domain::{
    EventKind, MessageId, MessageStatus, Micros, TenantName, TriggerKey, format_rfc3339, now_micros,
};
use crate::flow::SharedCatalog;
use crate::store::{NewDelivery, Store};

/// Events waiting to be stored; past this they are dropped (and logged) rather
/// than held in memory without bound while the store is away.
const QUEUE: usize = 65_536;

struct Pending {
    tenant: TenantName,
    trigger: Option<String>,
    kind: EventKind,
    message: Option<MessageId>,
    at: Micros,
    /// More of `data`, for events about something other than a message.
    detail: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Where events are emitted. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    catalog: SharedCatalog,
    tx: mpsc::Sender<Pending>,
    /// Wakes the sender when new deliveries are stored.
    pub(crate) stored: std::sync::Arc<Notify>,
}

impl Events {
    /// Starts the task that turns events into stored deliveries.
    pub fn start(store: Store, catalog: SharedCatalog) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stored = std::sync::Arc::new(Notify::new());
        tokio::spawn(record(rx, store, catalog.clone(), stored.clone()));
        Self {
            catalog,
            tx,
            stored,
        }
    }

    /// Makes the sender look for due deliveries now.
    pub fn wake_sender(&self) {
        self.stored.notify_one();
    }

    /// What the sender waits on between polls.
    pub fn sender_wake(&self) -> std::sync::Arc<Notify> {
        self.stored.clone()
    }

    fn emit(
        &self,
        tenant: &TenantName,
        trigger: Option<&str>,
        kind: EventKind,
        id: Option<MessageId>,
    ) {
        self.emit_with(tenant, trigger, kind, id, None);
    }

    fn emit_with(
        &self,
        tenant: &TenantName,
        trigger: Option<&str>,
        kind: EventKind,
        id: Option<MessageId>,
        detail: Option<serde_json::Map<String, serde_json::Value>>,
    ) {
        let wanted = self
            .catalog
            .get()
            .tenant(tenant.as_str())
            .is_some_and(|e| e.tenant.wants(kind));
        if wanted {
            let sent = self.tx.try_send(Pending {
                tenant: tenant.clone(),
                trigger: trigger.map(str::to_owned),
                kind,
                message: id,
                at: now_micros(),
                detail,
            });
            if sent.is_err() {
                tracing::warn!(tenant = %tenant, event = kind.as_str(), "event dropped: too many events waiting to be stored");
            }
        }
    }

    /// A message reached a final status.
    pub fn message_finished(&self, key: &TriggerKey, id: MessageId, status: MessageStatus) {
        let kind = match status {
            MessageStatus::Succeeded => EventKind::MessageSucceeded,
            MessageStatus::Failed => EventKind::MessageFailed,
            MessageStatus::Dead => EventKind::MessageDead,
            MessageStatus::Rejected => EventKind::MessageRejected,
            MessageStatus::Cancelled => EventKind::MessageCancelled,
            _ => return,
        };
        self.emit(&key.tenant, Some(key.trigger.as_str()), kind, Some(id));
    }

    pub fn lane_blocked(&self, key: &TriggerKey, id: MessageId) {
        self.emit(
            &key.tenant,
            Some(key.trigger.as_str()),
            EventKind::LaneBlocked,
            Some(id),
        );
    }

    pub fn lane_unblocked(&self, key: &TriggerKey, id: MessageId) {
        let kind = EventKind::LaneUnblocked;
        self.emit(&key.tenant, Some(key.trigger.as_str()), kind, Some(id));
    }

    /// A flow file of `tenant` failed to load (`trigger`: the file's stem).
    pub fn flow_load_failed(&self, tenant: &TenantName, trigger: Option<&str>) {
        self.emit(tenant, trigger, EventKind::FlowLoadFailed, None);
    }

    /// Key `key_id` of consumer `label` expires at `expires` (within seven
    /// days); `data` names the key.
    pub fn key_expiring(&self, tenant: &TenantName, label: &str, key_id: &str, expires: Micros) {
        let detail =
            json!({"label": label, "key_id": key_id, "expires_at": format_rfc3339(expires)});
        let detail = detail.as_object().cloned();
        self.emit_with(tenant, None, EventKind::KeyExpiring, None, detail);
    }
}

/// The body sent (and signed) for one event and one subscription.
pub fn payload(id: MessageId, subscription: &str, p: &PendingRef<'_>) -> String {
    let mut doc = json!({
        "id": id.to_string(),
        "subscription": subscription,
        "event": p.kind.as_str(),
        "created_at": format_rfc3339(p.at),
        "data": {
            "message_id": p.message.map(|m| m.to_string()),
            "tenant": p.tenant.as_str(),
            "trigger": p.trigger,
        },
    });
    if let (Some(detail), Some(data)) = (p.detail, doc["data"].as_object_mut()) {
        data.extend(detail.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    doc.to_string()
}

/// The parts of an event a payload shows.
pub struct PendingRef<'a> {
    pub tenant: &'a TenantName,
    pub trigger: Option<&'a str>,
    pub kind: EventKind,
    pub message: Option<MessageId>,
    pub at: Micros,
    pub detail: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

async fn record(
    mut rx: mpsc::Receiver<Pending>,
    store: Store,
    catalog: SharedCatalog,
    stored: std::sync::Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let snapshot = catalog.get();
        let mut batch = Vec::new();
        for e in &events {
            let Some(entry) = snapshot.tenant(e.tenant.as_str()) else {
                continue;
            };
            for s in entry.tenant.subscriptions.iter() {
                if !s.enabled || !s.events.contains(&e.kind) {
                    continue;
                }
                let id = MessageId::new();
                let view = PendingRef {
                    tenant: &e.tenant,
                    trigger: e.trigger.as_deref(),
                    kind: e.kind,
                    message: e.message,
                    at: e.at,
                    detail: e.detail.as_ref(),
                };
                batch.push(NewDelivery {
                    id,
                    tenant: e.tenant.clone(),
                    subscription: s.name.clone(),
                    event: e.kind.as_str().to_owned(),
                    message_id: e.message,
                    created_at: e.at,
                    payload: payload(id, &s.name, &view),
                });
            }
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        // A store that is away now may be back in a moment: a few tries.
        for wait in [0u64, 100, 1000, 5000] {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            match store.add_deliveries(batch.clone()).await {
                Ok(()) => {
                    stored.notify_one();
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, deliveries = n, "cannot store event deliveries")
                }
            }
        }
    }
}
