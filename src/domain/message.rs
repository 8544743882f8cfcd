//! Messages: what a caller's request becomes once accepted, and how its life is reported.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::names::{TenantName, TriggerName};
use super::time::{Micros, format_rfc3339};

/// A message id: UUIDv7, so ids created by one process sort in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(uuid::Uuid);

impl MessageId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
    /// An id for a message created at `us` (tests, imports): UUIDv7 with that time.
    pub fn at(us: super::Micros) -> Self {
        let us = us.max(0) as u64;
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            us / 1_000_000,
            ((us % 1_000_000) * 1000) as u32,
        );
        Self(uuid::Uuid::new_v7(ts))
    }

    /// An id read back from a store.
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        Self(u)
    }

    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// Where a message is in its life. The names are the status URL's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Dead,
    Skipped,
}

impl MessageStatus {
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }

    /// Finished messages are never executed again (unless an operator replays them).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Dead | Self::Skipped
        )
    }
}

/// How the caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sync,
    Async,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

/// A message about to be stored. `lane` is set for ordered triggers: the lane's
/// messages run one at a time in acceptance order.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub lane: Option<String>,
    pub mode: Mode,
    pub received_at: Micros,
    pub idempotency_key: Option<String>,
    /// The input document as the flow sees it, secrets redacted.
    pub input: serde_json::Value,
}

impl NewMessage {
    /// The input document as stored: JSON text. (`Value`'s `Display` goes through
    /// `fmt::Write` and checks every piece it writes; this writes bytes once.)
    pub fn input_text(&self) -> String {
        serde_json::to_string(&self.input).unwrap_or_else(|_| "null".into())
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The process running it stopped before the attempt finished.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => return None,
        })
    }
}

/// One attempt at executing a message. Serialized, it is one entry of a stored
/// `attempt_log`: `{number, started_at, finished_at, outcome, error}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: Micros,
    pub finished_at: Option<Micros>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

impl AttemptRecord {
    /// Reads an `attempt_log` entry; a missing or unreadable field is left empty
    /// rather than losing the rest of the log.
    pub fn from_json(a: &serde_json::Value) -> Self {
        Self {
            number: a["number"].as_u64().unwrap_or(0) as u32,
            started_at: a["started_at"].as_i64().unwrap_or(0),
            finished_at: a["finished_at"].as_i64(),
            outcome: a["outcome"].as_str().and_then(Outcome::parse),
            error: a["error"].as_str().map(str::to_owned),
        }
    }
}

/// What a flow answered (or would have answered a waiting caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

/// Everything the store knows about one message.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub lane: Option<String>,
    pub mode: Mode,
    pub status: MessageStatus,
    pub received_at: Micros,
    pub finished_at: Option<Micros>,
    pub attempts: Vec<AttemptRecord>,
    pub response: Option<StoredResponse>,
    pub error: Option<String>,
    pub input: serde_json::Value,
    pub trace: serde_json::Value,
}

impl MessageView {
    /// The status URL's document (DESIGN "HTTP contract").
    pub fn status_document(&self) -> serde_json::Value {
        let attempts: Vec<serde_json::Value> = self
            .attempts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "number": a.number,
                    "started_at": format_rfc3339(a.started_at),
                    "finished_at": a.finished_at.map(format_rfc3339),
                    "outcome": a.outcome.map(Outcome::as_str),
                    "error": a.error,
                })
            })
            .collect();
        let response = self
            .response
            .as_ref()
            .map(|r| serde_json::json!({"status": r.status, "body": r.body}));
        serde_json::json!({
            "message_id": self.id.to_string(),
            "tenant": self.tenant.as_str(),
            "trigger": self.trigger.as_str(),
            "status": self.status.as_str(),
            "received_at": format_rfc3339(self.received_at),
            "finished_at": self.finished_at.map(format_rfc3339),
            "attempts": attempts,
            "response": response,
            "error": self.error,
        })
    }
}
