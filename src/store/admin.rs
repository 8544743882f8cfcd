//! What the operators' view asks of a store: the log history (filtered, paged by
//! id), counts, blocked lanes, replay links and the outbound event deliveries.
//!
//! Plain domain types in and out; each backend implements the same methods
//! (`sqlite/admin` for SQLite). Paging is by message id: ids are UUIDv7, so
//! "older than the last id on this page" is the next page, newest first.

use crate::domain::{
    MessageHead, MessageId, MessageStatus, MessageView, Micros, OwnedConsumer, TenantName,
    TriggerKey,
};

use super::{Store, StoreError};

/// A log history query. `triggers` empty means every trigger (global views only).
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub triggers: Vec<TriggerKey>,
    pub status: Option<MessageStatus>,
    pub lane: Option<String>,
    /// Sent by the consumer of this label (served by `messages_trigger_consumer`).
    pub consumer: Option<String>,
    /// Sent with the key of this id (a condition on what the other filters read).
    pub key_id: Option<String>,
    /// Received at or after (microseconds).
    pub from: Option<Micros>,
    /// Received before (microseconds).
    pub to: Option<Micros>,
    /// Cursor: only messages with a smaller id (older).
    pub before: Option<MessageId>,
    pub limit: u32,
}

impl MessageQuery {
    /// The triggers asked for, one query each; none named is one query over all.
    pub fn trigger_keys(&self) -> Vec<Option<&TriggerKey>> {
        if self.triggers.is_empty() {
            vec![None]
        } else {
            self.triggers.iter().map(Some).collect()
        }
    }
}

/// One line of the log history.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSummary {
    pub head: MessageHead,
    /// Who sent it.
    pub consumer: OwnedConsumer,
    pub finished_at: Option<Micros>,
    pub attempts: u32,
    pub response_status: Option<u16>,
    pub replay_of: Option<MessageId>,
    /// A finished message that holds its ordered lane.
    pub blocking: bool,
    /// Why its last attempt failed, if it did.
    pub error: Option<String>,
}

/// How many messages of a trigger are in a status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCount {
    pub key: TriggerKey,
    pub status: MessageStatus,
    pub count: u64,
}

/// An ordered lane held by a failed message.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedLane {
    pub key: TriggerKey,
    pub lane: String,
    pub message_id: MessageId,
    pub status: MessageStatus,
    pub since: Option<Micros>,
}

/// How an operator releases a blocked lane's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The head becomes `skipped`.
    Skip,
    /// The head keeps its status (it was replayed, or the operator accepts it).
    Unblock,
}

/// Where an outbound event delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    /// Every attempt of the schedule failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// An event to send to one subscription; `payload` is the exact body that is signed.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: MessageId,
    pub tenant: TenantName,
    pub subscription: String,
    pub event: String,
    pub message_id: Option<MessageId>,
    pub created_at: Micros,
    pub payload: String,
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryAttempt {
    pub number: u32,
    pub at: Micros,
    /// Where it was sent.
    #[serde(default)]
    pub url: String,
    /// From sending the request to the end of the answer's excerpt.
    #[serde(default)]
    pub duration_us: i64,
    /// Why it failed, in a word: `connect`, `tls`, `timeout`, `status`,
    /// `redirect` or `policy`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The receiver's status code; none when no answer came.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// The start of the receiver's answer.
    pub body: String,
    pub error: Option<String>,
}

impl DeliveryAttempt {
    /// The attempt as a delivery's log keeps it, one JSON text for both stores.
    fn log_entry(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(self).map_err(|e| StoreError::Corrupt(format!("attempt `{e}`")))
    }
}

/// A page of a tenant's deliveries (optionally of one subscription), newest first.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    pub tenant: TenantName,
    pub subscription: Option<String>,
    /// Cursor: only deliveries with a smaller id (older).
    pub before: Option<MessageId>,
    pub limit: u32,
}

/// A stored delivery: the event as it was queued, and how sending it goes.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub delivery: NewDelivery,
    pub status: DeliveryStatus,
    pub next_at: Micros,
    pub attempts: Vec<DeliveryAttempt>,
}

impl Store {
    /// The log history, newest first, at most `q.limit` lines.
    pub async fn list_messages(&self, q: MessageQuery) -> Result<Vec<MessageSummary>, StoreError> {
        each!(self, s => s.list_messages(q).await)
    }

    /// How many messages match (`limit` and `before` are ignored).
    pub async fn count_messages(&self, q: MessageQuery) -> Result<u64, StoreError> {
        each!(self, s => s.count_messages(q).await)
    }

    /// Messages per trigger and status, for `tenants` (all when `None`).
    pub async fn status_counts(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        each!(self, s => s.status_counts(tenants).await)
    }

    /// Ordered lanes held by a failed message, for `tenants` (all when `None`).
    pub async fn blocked_lanes(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<BlockedLane>, StoreError> {
        each!(self, s => s.blocked_lanes(tenants).await)
    }

    /// Lets go of a lane held by message `id`; false when it held none.
    pub async fn release_lane(&self, id: MessageId, how: Release) -> Result<bool, StoreError> {
        self.release_lane_with(id, how, Vec::new()).await
    }

    /// Records that each message `.0` replays `.1`, in one transaction.
    pub async fn link_replays(&self, links: Vec<(MessageId, MessageId)>) -> Result<(), StoreError> {
        each!(self, s => s.link_replays(links).await)
    }

    /// A message with the id of the message it replays, if it is a replay.
    pub async fn message_detail(
        &self,
        id: MessageId,
    ) -> Result<Option<(MessageView, Option<MessageId>)>, StoreError> {
        each!(self, s => s.message_detail(id).await)
    }

    /// Stores events to send; returns once they are committed.
    pub async fn add_deliveries(&self, batch: Vec<NewDelivery>) -> Result<(), StoreError> {
        each!(self, s => s.add_deliveries(batch).await)
    }

    /// Stores a delivery that was sent already (a test ping), with its one
    /// attempt: it is in the log, and no sender takes it.
    pub async fn add_sent_delivery(
        &self,
        d: NewDelivery,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        let entry = attempt.log_entry()?;
        each!(self, s => s.add_sent_delivery(d, entry, status).await)
    }

    /// Claims pending deliveries due at `now`, oldest first: their `next_at` moves
    /// to `lease_until`, so no other sender (node) takes them meanwhile, and a
    /// sender that dies mid-send leaves them due again when the lease ends.
    pub async fn claim_deliveries(
        &self,
        now: Micros,
        lease_until: Micros,
        limit: u32,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        let mut claimed = each!(self, s => s.claim_deliveries(now, lease_until, limit).await)?;
        claimed.sort_by_key(|d| d.delivery.created_at);
        Ok(claimed)
    }

    /// Appends an attempt and sets what comes next (`next_at` for pending).
    pub async fn record_delivery_attempt(
        &self,
        id: MessageId,
        attempt: DeliveryAttempt,
        status: DeliveryStatus,
        next_at: Micros,
    ) -> Result<(), StoreError> {
        let entry = attempt.log_entry()?;
        let next = (attempt.number, status, next_at);
        each!(self, s => s.record_delivery_attempt(id, entry, next).await)
    }

    pub async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryView>, StoreError> {
        each!(self, s => s.list_deliveries(q).await)
    }

    pub async fn get_delivery(&self, id: MessageId) -> Result<Option<DeliveryView>, StoreError> {
        each!(self, s => s.get_delivery(id).await)
    }

    /// Sends a delivery again at `now`, whatever its status; false when unknown.
    pub async fn redeliver(&self, id: MessageId, now: Micros) -> Result<bool, StoreError> {
        each!(self, s => s.redeliver(id, now).await)
    }

    /// Deletes finished deliveries created before `before`; returns how many.
    pub async fn purge_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        each!(self, s => s.purge_deliveries(before).await)
    }

    /// The query plan of each query `list_messages(q)` runs (EXPLAIN): tests check
    /// that the log history reads indexes, not tables.
    pub async fn explain_list(&self, q: MessageQuery) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.explain_list(q).await)
    }
}
