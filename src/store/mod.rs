//! The durable record of every message: the only place with SQL.
//!
//! `Store` is a closed enum over the backends, chosen once in `startup`. Writes that
//! a caller waits for (accepting a message) are group-committed; the record of an
//! execution (started, finished) is written behind, in batches: losing it in a crash
//! only means the message runs again, which at-least-once allows.

mod admin;
mod sqlite;
mod sqlite_admin;
mod sqlite_deliveries;
mod types;

pub use admin::{
    BlockedLane, DeliveryAttempt, DeliveryStatus, DeliveryView, MessageQuery, MessageSummary,
    NewDelivery, Release, StatusCount,
};
pub use sqlite::SqliteStore;
pub use types::{Completion, EnqueueOutcome, PendingMessage, StoreError};

use crate::domain::{AttemptRecord, MessageId, MessageView, Micros, NewMessage, TriggerKey};

/// A message store backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the store named by a URL: `sqlite://PATH`.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Self::Sqlite(SqliteStore::open(path)?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::Config(
                "the PostgreSQL store is not available in this version; use sqlite://PATH".into(),
            ));
        }
        Err(StoreError::Config(format!(
            "unknown store URL `{url}`: expected sqlite://PATH"
        )))
    }

    /// Stores accepted messages in one transaction; returns once they are durable.
    pub async fn enqueue(&self, batch: &[NewMessage]) -> Result<Vec<EnqueueOutcome>, StoreError> {
        match self {
            Self::Sqlite(s) => s.enqueue(batch).await,
        }
    }

    /// Records an attempt's start (written behind).
    pub async fn started(&self, id: MessageId, attempt: AttemptRecord) {
        match self {
            Self::Sqlite(s) => s.started(id, attempt).await,
        }
    }

    /// Records an attempt's end and the message's new state (written behind).
    pub async fn finished(&self, completion: Completion) {
        match self {
            Self::Sqlite(s) => s.finished(completion).await,
        }
    }

    /// Records a message that was executed before it was stored (sync requests
    /// answered in time): one insert with its only attempt (written behind).
    pub async fn record_executed(&self, message: NewMessage, completion: Completion) {
        match self {
            Self::Sqlite(s) => s.record_executed(message, completion).await,
        }
    }

    pub async fn get(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        match self {
            Self::Sqlite(s) => s.get(id).await,
        }
    }

    /// After a restart: attempts that were running are marked interrupted and their
    /// messages queued again; returns every unfinished message in acceptance order.
    pub async fn recover(&self, now: Micros) -> Result<Vec<PendingMessage>, StoreError> {
        match self {
            Self::Sqlite(s) => s.recover(now).await,
        }
    }

    /// Deletes finished messages received before `before`; returns how many.
    pub async fn purge(&self, before: Micros) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.purge(before).await,
        }
    }

    /// Waits until every write sent before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.flush().await,
        }
    }

    /// Commits what is pending and closes the store; later calls fail as unavailable.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.close().await,
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.flush().await
    }
}
