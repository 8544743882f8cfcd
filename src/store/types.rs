//! What goes in and out of a store.

use serde_json::Value;

use crate::domain::{
    MessageId, MessageStatus, MessageView, Micros, Mode, Outcome, StoredResponse, TenantName,
    TriggerName,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes right now (disk, database away): callers get 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store configuration: {0}")]
    Config(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// The answer to storing one accepted message.
#[derive(Debug, Clone)]
pub enum EnqueueOutcome {
    Inserted,
    /// Its Idempotency-Key was seen before: the first message.
    Duplicate(Box<MessageView>),
}

/// A batch of accepted messages handed to the store: its work has started, and
/// this resolves once the batch is durable (or could not be stored). Batches
/// submitted one after another by one caller are stored in that order.
pub type Submitted = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<EnqueueOutcome>, StoreError>> + Send>,
>;

/// The end of one attempt and the message's state after it.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: MessageId,
    pub attempt: u32,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub outcome: Outcome,
    pub status: MessageStatus,
    /// When the next attempt may start (status retrying).
    pub run_at: Micros,
    /// A finished message that holds its ordered lane (`on_exhausted: block`).
    pub blocking: bool,
    pub response: Option<StoredResponse>,
    /// The step trace as JSON text.
    pub trace: String,
    pub error: Option<String>,
    /// The failure's code (`ExecError::code`), kept with the attempt.
    pub error_code: Option<&'static str>,
}

/// An unfinished message, as recovery hands it to the dispatcher.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub lane: Option<String>,
    pub mode: Mode,
    pub status: MessageStatus,
    pub received_at: Micros,
    pub run_at: Micros,
    pub attempts: u32,
    pub blocking: bool,
    pub input: Value,
}
