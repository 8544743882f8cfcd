//! Outbound event webhooks. An event (flowgate's own: a message ended, a lane
//! was blocked or let go, a flow file failed to load; or a business event a
//! flow emitted) is written to the store's outbox in the same transaction as
//! the change that causes it, [`fanout`] turns it into one delivery per
//! subscription that wants it ([`Subscribers`]), with its body ([`payload`]),
//! and [`sender`] posts the deliveries on the retry schedule.
//!
//! Deciding which events to write is on the execution path: with no
//! subscriber it costs one catalog read and a bit test, and nothing is written.

pub mod fanout;
pub mod outcome;
pub mod payload;
pub mod sender;
mod subscribers;

use std::sync::Arc;

use tokio::sync::Notify;

use serde_json::json;

use crate::domain::{
    Emitted, EventKind, MessageId, MessageStatus, Micros, Subscription, TenantName, TriggerKey,
    format_rfc3339, now_micros,
};
use crate::flow::SharedCatalog;
use crate::store::{NewDelivery, OutboxEvent, Store, StoreError};

pub use subscribers::{Subscribers, WATCH};

/// Where events are made. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    subscribers: Subscribers,
    store: Store,
    /// Wakes the fan-out when events were sent to the store.
    fanout: Arc<Notify>,
    /// Wakes the sender when new deliveries are stored.
    pub(crate) stored: Arc<Notify>,
    /// Where events told from outside the runtime (a reload's thread) are written.
    runtime: tokio::runtime::Handle,
}

impl Events {
    /// Starts the task that fans the outbox's events out into deliveries, and
    /// the one that keeps the stored subscriptions read (on the runtime this
    /// is called in).
    pub fn start(store: Store, catalog: SharedCatalog) -> Self {
        let subscribers = Subscribers::new(catalog, store.clone());
        subscribers.watch();
        let stored = Arc::new(Notify::new());
        let fanout = Arc::new(Notify::new());
        fanout::start(
            store.clone(),
            subscribers.clone(),
            fanout.clone(),
            stored.clone(),
        );
        Self {
            subscribers,
            store,
            fanout,
            stored,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Which subscriptions want which events.
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
    pub fn sender_wake(&self) -> Arc<Notify> {
        self.stored.clone()
    }

    /// Events were sent to the store (with an execution's end): the fan-out
    /// takes them once they are committed.
    pub fn sent(&self) {
        self.fanout.notify_one();
    }

    fn event(
        key: &TriggerKey,
        event: &str,
        message: MessageId,
        at: Micros,
        data: Option<String>,
    ) -> OutboxEvent {
        OutboxEvent {
            id: MessageId::new(),
            tenant: key.tenant.clone(),
            trigger: Some(key.trigger.as_str().to_owned()),
            event: event.to_owned(),
            message_id: Some(message),
            created_at: at,
            data,
        }
    }

    /// The events an execution's end causes, for the subscriptions that want
    /// them: `message.<status>` when it is final, `lane.blocked` when it holds
    /// its lane, and what the flow emitted when it succeeded. Written with the
    /// end (`Completion::events`).
    pub fn of_end(
        &self,
        key: &TriggerKey,
        id: MessageId,
        status: MessageStatus,
        blocking: bool,
        emitted: &[Emitted],
        at: Micros,
    ) -> Vec<OutboxEvent> {
        let mut out = Vec::new();
        let (tenant, trigger) = (key.tenant.as_str(), Some(key.trigger.as_str()));
        let kind = match status {
            MessageStatus::Succeeded => Some(EventKind::MessageSucceeded),
            MessageStatus::Failed => Some(EventKind::MessageFailed),
            MessageStatus::Dead => Some(EventKind::MessageDead),
            MessageStatus::Rejected => Some(EventKind::MessageRejected),
            MessageStatus::Cancelled => Some(EventKind::MessageCancelled),
            _ => None,
        };
        if let Some(kind) = kind
            && self.subscribers.wants(tenant, kind, trigger)
        {
            out.push(Self::event(key, kind.as_str(), id, at, None));
        }
        if blocking
            && status.is_final()
            && self
                .subscribers
                .wants(tenant, EventKind::LaneBlocked, trigger)
        {
            let kind = EventKind::LaneBlocked;
            out.push(Self::event(key, kind.as_str(), id, at, None));
        }
        if status == MessageStatus::Succeeded {
            for e in emitted {
                if self.subscribers.wants_business(tenant, &e.event, trigger) {
                    let data = Some(e.data.to_string());
                    out.push(Self::event(key, &e.event, id, at, data));
                }
            }
        }
        out
    }

    /// `lane.unblocked` for the message `id` that held its lane, if wanted:
    /// written as the lane is let go (`Store::release_lane_with`).
    pub fn of_unblock(&self, key: &TriggerKey, id: MessageId) -> Vec<OutboxEvent> {
        let kind = EventKind::LaneUnblocked;
        let (tenant, trigger) = (key.tenant.as_str(), Some(key.trigger.as_str()));
        if !self.subscribers.wants(tenant, kind, trigger) {
            return Vec::new();
        }
        vec![Self::event(key, kind.as_str(), id, now_micros(), None)]
    }

    /// A flow file of `tenant` failed to load (`trigger`: the file's stem).
    /// Tied to no other change: written on its own.
    pub fn flow_load_failed(&self, tenant: &TenantName, trigger: Option<&str>) {
        let kind = EventKind::FlowLoadFailed;
        if !self.subscribers.wants(tenant.as_str(), kind, trigger) {
            return;
        }
        let at = now_micros();
        let event = OutboxEvent {
            id: MessageId::new(),
            tenant: tenant.clone(),
            trigger: trigger.map(str::to_owned),
            event: kind.as_str().to_owned(),
            message_id: None,
            created_at: at,
            data: None,
        };
        let (store, fanout) = (self.store.clone(), self.fanout.clone());
        self.runtime.spawn(async move {
            match store.add_events(vec![event]).await {
                Ok(()) => fanout.notify_one(),
                Err(e) => tracing::warn!(error = %e, "cannot store a flow.load_failed event"),
            }
        });
    }

    /// Whether some subscription of `tenant` wants `key.expiring`.
    pub fn wants_key_expiring(&self, tenant: &TenantName) -> bool {
        self.subscribers
            .wants(tenant.as_str(), EventKind::KeyExpiring, None)
    }

    /// The outbox row of `key.expiring` for key `key_id` of consumer `label`,
    /// expiring at `expires` (its `data` is in every body, see
    /// [`payload::body`]); the store writes it with the notice's record.
    pub fn key_expiring(
        tenant: &TenantName,
        label: &str,
        key_id: &str,
        expires: Micros,
    ) -> OutboxEvent {
        let detail =
            json!({"label": label, "key_id": key_id, "expires_at": format_rfc3339(expires)});
        OutboxEvent {
            id: MessageId::new(),
            tenant: tenant.clone(),
            trigger: None,
            event: EventKind::KeyExpiring.as_str().to_owned(),
            message_id: None,
            created_at: now_micros(),
            data: Some(detail.to_string()),
        }
    }

    /// Events were written to the outbox outside an execution's end.
    pub fn written(&self) {
        self.fanout.notify_one();
    }
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
