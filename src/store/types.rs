//! What goes in and out of a store.

use serde_json::Value;

use crate::domain::{
    AttemptRecord, MessageHead, MessageId, MessageStatus, MessageView, Micros, Outcome,
    StoredResponse,
};

pub use super::error::StoreError;

/// A stored JSON document that cannot be read back: deeper than
/// `domain::depth::MAX_STORED_DEPTH`, or not what was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// One of a message's documents, named by the message and the field;
    /// `why`: the parser's words.
    #[error("message {id}: the stored {what} cannot be read: {why}")]
    Field {
        id: MessageId,
        what: &'static str,
        why: String,
    },
    /// A message's input, as execution reads it back.
    #[error("the stored input cannot be read: {0}")]
    Input(crate::domain::depth::DepthError),
}

/// A stored JSON document read back within `domain::depth::MAX_STORED_DEPTH`:
/// text that cannot be read is an error naming the message and the field,
/// never `null`. `None` (SQL `NULL`) is `null`.
pub fn read_document(
    id: MessageId,
    what: &'static str,
    text: Option<&str>,
) -> Result<Value, Unreadable> {
    text.map_or(Ok(Value::Null), |text| {
        crate::domain::depth::parse_stored(text).map_err(|e| Unreadable::Field {
            id,
            what,
            why: e.to_string(),
        })
    })
}

/// A stored response read back (see [`read_document`]).
pub fn read_response(
    id: MessageId,
    text: Option<&str>,
) -> Result<Option<StoredResponse>, Unreadable> {
    let Some(text) = text else {
        return Ok(None);
    };
    let v = read_document(id, "response", Some(text))?;
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| Unreadable::Field {
            id,
            what: "response",
            why: e.to_string(),
        })
}

/// A message's stored input, trace and response (as JSON text) read back into
/// `view`, or the error naming the first that cannot be.
pub fn read_documents(
    mut view: MessageView,
    input: Option<&str>,
    trace: Option<&str>,
    response: Option<&str>,
) -> Result<MessageView, StoreError> {
    let id = view.head.id;
    let read = || -> Result<_, Unreadable> {
        Ok((
            read_document(id, "input", input)?,
            read_document(id, "trace", trace)?,
            read_response(id, response)?,
        ))
    };
    match read() {
        Ok((input, trace, response)) => {
            view.input = input;
            view.trace = trace;
            view.response = response;
            Ok(view)
        }
        Err(why) => Err(StoreError::Unreadable {
            tenant: view.head.tenant,
            trigger: view.head.trigger,
            why: why.to_string(),
        }),
    }
}

/// A message's input as execution reads it back: a message whose input cannot
/// be read is not run on anything else (it fails, saying why).
pub type StoredInput = Result<Value, Unreadable>;

/// Reads a stored input for execution (see [`StoredInput`]).
pub fn read_input(text: &str) -> StoredInput {
    crate::domain::depth::parse_stored(text).map_err(Unreadable::Input)
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
    /// Events this end causes (`message.succeeded`, `lane.blocked`, what the
    /// flow emitted), written to the outbox in the same transaction, and only
    /// if the end is taken. Empty when no subscription wants them.
    pub events: Vec<super::OutboxEvent>,
}

impl Completion {
    /// The attempt this ends, as a message's attempt log keeps it (both stores
    /// write it so).
    pub fn attempt_record(&self) -> AttemptRecord {
        AttemptRecord {
            number: self.attempt,
            started_at: self.started_at,
            finished_at: Some(self.finished_at),
            outcome: Some(self.outcome),
            error: self.error.clone(),
            error_code: self.error_code.map(str::to_owned),
        }
    }
}

/// An unfinished message, as recovery hands it to the dispatcher.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub head: MessageHead,
    pub run_at: Micros,
    pub attempts: u32,
    pub blocking: bool,
    pub input: StoredInput,
}
