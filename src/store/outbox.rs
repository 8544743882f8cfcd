//! The event outbox: events are written in the same transaction as the state
//! change that causes them (an execution's end with `Completion::events`, a
//! lane let go with `release_lane_with`), then fanned out into deliveries, one
//! per matching subscription, by `events::fanout`. Fanning an event out stores
//! its deliveries and deletes it in one transaction: a crash in between loses
//! nothing and sends nothing twice.

use crate::domain::{MessageId, Micros, TenantName};

use super::admin::{NewDelivery, Release};
use super::{Store, StoreError};

/// An event waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// UUIDv7: the outbox is read in creation order.
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: Option<String>,
    /// `message.succeeded`, `lane.blocked`, or a business event's name.
    pub event: String,
    pub message_id: Option<MessageId>,
    pub created_at: Micros,
    /// A business event's data, as JSON text.
    pub data: Option<String>,
}

/// One event's deliveries, stored as the event leaves the outbox.
#[derive(Debug, Clone)]
pub struct FanOut {
    pub event: MessageId,
    pub deliveries: Vec<NewDelivery>,
}

impl Store {
    /// Writes events to the outbox now, on their own (an event no other change
    /// is written with: `flow.load_failed`).
    pub async fn add_events(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        each!(self, s => s.add_events(events).await)
    }

    /// The oldest events of the outbox, at most `limit`.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        each!(self, s => s.outbox(limit).await)
    }

    /// Stores each event's deliveries and deletes it from the outbox, in one
    /// transaction. An event no longer there (another node fanned it out) adds
    /// none. Returns how many deliveries were stored.
    pub async fn fan_out(&self, batch: Vec<FanOut>) -> Result<usize, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        each!(self, s => s.fan_out(batch).await)
    }

    /// `release_lane`, with `events` written in the same transaction when the
    /// lane was let go (`lane.unblocked`).
    pub async fn release_lane_with(
        &self,
        id: MessageId,
        how: Release,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.release_lane_with(id, how, events).await)
    }
}
