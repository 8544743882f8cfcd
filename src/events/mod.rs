//! Outbound event webhooks ("ping then pull"): when something a tenant subscribed
//! to happens, a small signed payload naming it is stored as a delivery for each
//! enabled subscription, then sent by [`sender`] on the retry schedule. Receivers
//! pull the details through the admin API.
//!
//! Emitting is on the execution path: with no subscriber it costs one catalog read
//! and two bit tests; otherwise a channel send. Storing happens in a task, in
//! batches. Who receives an event is [`Subscribers`]' one decision.

pub mod outcome;
pub mod sender;
mod subscribers;

pub use subscribers::{Subscribers, WATCH};

use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, mpsc};

use crate::domain::Subscription;
use crate::domain::{
    EventKind, MessageId, MessageStatus, Micros, TenantName, TriggerKey, format_rfc3339, now_micros,
};
use crate::flow::SharedCatalog;
use crate::store::{NewDelivery, Store, StoreError};

/// Events waiting to be stored; past this they are dropped (and logged) rather
/// than held in memory without bound while the store is away.
const QUEUE: usize = 65_536;

struct Pending {
    tenant: TenantName,
    trigger: Option<String>,
    kind: EventKind,
    message: Option<MessageId>,
    at: Micros,
}

/// Where events are emitted. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    subscribers: Subscribers,
    store: Store,
    tx: mpsc::Sender<Pending>,
    /// Wakes the sender when new deliveries are stored.
    pub(crate) stored: std::sync::Arc<Notify>,
}

impl Events {
    /// Starts the task that turns events into stored deliveries.
    /// Starts the task that turns events into stored deliveries, and the one
    /// that keeps the stored subscriptions read.
    pub fn start(store: Store, catalog: SharedCatalog) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stored = std::sync::Arc::new(Notify::new());
        let subscribers = Subscribers::new(catalog, store.clone());
        subscribers.watch();
        tokio::spawn(record(
            rx,
            store.clone(),
            subscribers.clone(),
            stored.clone(),
        ));
        Self {
            subscribers,
            store,
            tx,
            stored,
        }
    }

    /// Who receives which event.
    pub fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }

    /// Queues a `ping` for `sub` now, whatever events it lists: sent when a
    /// subscription is switched on, so its receiver sees at once that it works.
    pub async fn ping(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.store.add_deliveries(vec![ping(sub)]).await?;
        self.wake_sender();
        Ok(())
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
        if self.subscribers.wants(tenant, kind) {
            let sent = self.tx.try_send(Pending {
                tenant: tenant.clone(),
                trigger: trigger.map(str::to_owned),
                kind,
                message: id,
                at: now_micros(),
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
}

/// The body sent (and signed) for one event and one subscription.
pub fn payload(id: MessageId, subscription: &str, p: &PendingRef<'_>) -> String {
    json!({
        "id": id.to_string(),
        "subscription": subscription,
        "event": p.kind.as_str(),
        "created_at": format_rfc3339(p.at),
        "data": {
            "message_id": p.message.map(|m| m.to_string()),
            "tenant": p.tenant.as_str(),
            "trigger": p.trigger,
        },
    })
    .to_string()
}

/// A `ping` delivery for `sub`: the test payload, `data` naming the tenant.
pub fn ping(sub: &Subscription) -> NewDelivery {
    let id = MessageId::new();
    let at = now_micros();
    let body = json!({
        "id": id.to_string(),
        "subscription": sub.name,
        "event": "ping",
        "created_at": format_rfc3339(at),
        "data": { "tenant": sub.tenant.as_str() },
    });
    NewDelivery {
        id,
        tenant: sub.tenant.clone(),
        subscription: sub.name.clone(),
        event: "ping".into(),
        message_id: None,
        created_at: at,
        payload: body.to_string(),
    }
}

/// The parts of an event a payload shows.
pub struct PendingRef<'a> {
    pub tenant: &'a TenantName,
    pub trigger: Option<&'a str>,
    pub kind: EventKind,
    pub message: Option<MessageId>,
    pub at: Micros,
}

async fn record(
    mut rx: mpsc::Receiver<Pending>,
    store: Store,
    subscribers: Subscribers,
    stored: std::sync::Arc<Notify>,
) {
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let mut batch = Vec::new();
        for e in &events {
            let event = e.kind.as_str();
            for s in subscribers.matching(&e.tenant, event, e.trigger.as_deref()) {
                let id = MessageId::new();
                let view = PendingRef {
                    tenant: &e.tenant,
                    trigger: e.trigger.as_deref(),
                    kind: e.kind,
                    message: e.message,
                    at: e.at,
                };
                batch.push(NewDelivery {
                    id,
                    tenant: e.tenant.clone(),
                    subscription: s.name.clone(),
                    event: event.to_owned(),
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
