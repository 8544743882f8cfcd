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

    /// When the message was created (the time in its UUIDv7), in microseconds
    /// since the epoch; `None` for an id that is not a UUIDv7.
    pub fn created_micros(&self) -> Option<Micros> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs as Micros * 1_000_000 + Micros::from(nanos / 1000))
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
    /// A `fail` step with a 4xx status: the flow turned the request down. Not
    /// retried, and it never holds its ordered lane.
    Rejected,
    /// Not run: its sync caller was answered `202` at the timeout and the
    /// trigger says `response.on_timeout: cancel`.
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
        Self::Skipped,
        Self::Rejected,
        Self::Cancelled,
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
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
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
            "rejected" => Self::Rejected,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Finished messages are never executed again (unless an operator replays them).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Dead
                | Self::Skipped
                | Self::Rejected
                | Self::Cancelled
        )
    }

    /// Whether a message that ended so holds its ordered lane (under
    /// `on_exhausted: block`): only failures do; a rejection or a cancellation
    /// lets the lane go on.
    pub fn may_block(self) -> bool {
        matches!(self, Self::Failed | Self::Dead)
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
    /// The request's body as received, when it was JSON and `input.body` is its
    /// parse: stored as it came instead of written out again from the parse.
    pub body_json: Option<bytes::Bytes>,
}

#[cfg(test)]
impl NewMessage {
    /// An async message of `acme`'s `Orders` trigger with `input`, for tests.
    pub fn example(input: serde_json::Value) -> Self {
        NewMessage {
            id: MessageId::new(),
            tenant: TenantName::parse("acme").unwrap(),
            trigger: TriggerName::parse("Orders").unwrap(),
            lane: None,
            mode: Mode::Async,
            received_at: 0,
            idempotency_key: None,
            input,
            body_json: None,
        }
    }
}

impl NewMessage {
    /// Who sent it, as its input document's `.auth` says.
    pub fn consumer(&self) -> Consumer<'_> {
        Consumer::of_auth(&self.input["auth"])
    }

    /// The input document as stored: JSON text. (`Value`'s `Display` goes through
    /// `fmt::Write` and checks every piece it writes; this writes bytes once.)
    pub fn input_text(&self) -> String {
        if let (Some(raw), serde_json::Value::Object(doc)) = (&self.body_json, &self.input)
            && let Some(text) = with_raw_body(doc, raw)
        {
            return text;
        }
        super::json_text::to_string(&self.input)
    }
}

/// `doc` as JSON text with the caller's own bytes for its `body`. Parsing that
/// text gives `doc` back, as the parse of `raw` gave `doc.body`. (Writing a 1 KB
/// body out again from its parse took ~11,000 of the ~200,000 instructions
/// flowgate spends on an accepted message.)
fn with_raw_body(doc: &serde_json::Map<String, serde_json::Value>, raw: &[u8]) -> Option<String> {
    let raw = raw.trim_ascii();
    let mut out = Vec::with_capacity(raw.len() + 512);
    out.push(b'{');
    for (i, (key, value)) in doc.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        super::json_text::write_str(&mut out, key);
        out.push(b':');
        if key == "body" {
            out.extend_from_slice(raw);
        } else {
            super::json_text::write_json(&mut out, value);
        }
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// Who sent a message: the consumer's `label` and, for a key of the form
/// `fg_<id>_<secret>`, its `key_id`. An API key's label is the one it has in
/// `_tenant.yaml`; an HTTP Basic caller's is its user name (the name the tenant
/// gave that caller, as a label is for a key). Open triggers and HMAC-signed
/// calls name nobody: both are absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumer<'a> {
    pub label: Option<&'a str>,
    pub key_id: Option<&'a str>,
}

impl<'a> Consumer<'a> {
    /// The consumer an input document's `.auth` names (`{"method": "api_key",
    /// "label", "key_id"}` or `{"method": "basic", "user"}`).
    pub fn of_auth(auth: &'a serde_json::Value) -> Self {
        match auth["method"].as_str() {
            Some("api_key") => Self {
                label: auth["label"].as_str(),
                key_id: auth["key_id"].as_str(),
            },
            Some("basic") => Self {
                label: auth["user"].as_str(),
                key_id: None,
            },
            _ => Self::default(),
        }
    }

    /// The same, owning its text (to keep beside a stored message).
    pub fn owned(self) -> OwnedConsumer {
        OwnedConsumer {
            label: self.label.map(str::to_owned),
            key_id: self.key_id.map(str::to_owned),
        }
    }
}

/// A [`Consumer`] read back from a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedConsumer {
    pub label: Option<String>,
    pub key_id: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The process running it stopped before the attempt finished.
    Interrupted,
    /// Not run: the message was cancelled before it started (its status is
    /// `cancelled`).
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// One attempt at executing a message. Serialized, it is one entry of a stored
/// `attempt_log`: `{number, started_at, finished_at, outcome, error[, error_code]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: Micros,
    pub finished_at: Option<Micros>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// What kind of failure (`budget_exceeded`, `flow_failed`, `rejected`,
    /// `interrupted`, `cancelled`), for people and tools that sort failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
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
            error_code: a["error_code"].as_str().map(str::to_owned),
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

impl StoredResponse {
    /// Its JSON text, as serde_json writes it (see [`super::json_text`]).
    pub fn text(&self) -> String {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"status\":");
        out.extend_from_slice(self.status.to_string().as_bytes());
        if !self.headers.is_empty() {
            out.extend_from_slice(b",\"headers\":[");
            for (i, (name, value)) in self.headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                super::json_text::write_str(&mut out, name);
                out.push(b',');
                super::json_text::write_str(&mut out, value);
                out.push(b']');
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"body\":");
        super::json_text::write_json(&mut out, &self.body);
        out.push(b'}');
        // Only valid UTF-8 is written.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What every stored message has, whatever else is read with it: which it is,
/// whose, how it runs and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageHead {
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub lane: Option<String>,
    pub mode: Mode,
    pub status: MessageStatus,
    pub received_at: Micros,
}

/// Everything the store knows about one message.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub head: MessageHead,
    /// Who sent it.
    pub consumer: OwnedConsumer,
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
                    "error_code": a.error_code,
                })
            })
            .collect();
        let response = self
            .response
            .as_ref()
            .map(|r| serde_json::json!({"status": r.status, "body": r.body}));
        serde_json::json!({
            "message_id": self.head.id.to_string(),
            "tenant": self.head.tenant.as_str(),
            "trigger": self.head.trigger.as_str(),
            "status": self.head.status.as_str(),
            "received_at": format_rfc3339(self.head.received_at),
            "finished_at": self.finished_at.map(format_rfc3339),
            "attempts": attempts,
            "response": response,
            "error": self.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(input: serde_json::Value, body_json: Option<&'static [u8]>) -> NewMessage {
        NewMessage {
            body_json: body_json.map(bytes::Bytes::from_static),
            ..NewMessage::example(input)
        }
    }

    #[test]
    fn the_consumer_is_the_key_label_and_id_or_the_basic_user() {
        let of = |auth: serde_json::Value| Consumer::of_auth(&auth).owned();
        let c =
            of(serde_json::json!({"method": "api_key", "label": "webshop", "key_id": "k3q7x2ab"}));
        assert_eq!(c.label.as_deref(), Some("webshop"));
        assert_eq!(c.key_id.as_deref(), Some("k3q7x2ab"));
        let c = of(serde_json::json!({"method": "api_key", "label": "erp"}));
        assert_eq!((c.label.as_deref(), c.key_id), (Some("erp"), None));
        let c = of(serde_json::json!({"method": "basic", "user": "duro"}));
        assert_eq!((c.label.as_deref(), c.key_id), (Some("duro"), None));
        for nobody in [
            serde_json::json!({"method": "none"}),
            serde_json::json!({"method": "hmac", "header": "x-signature", "label": "x"}),
            serde_json::Value::Null,
        ] {
            assert_eq!(of(nobody), OwnedConsumer::default());
        }
        let m = NewMessage::example(serde_json::json!({"auth": {"method": "basic", "user": "u"}}));
        assert_eq!(m.consumer().label, Some("u"));
        assert_eq!(
            NewMessage::example(serde_json::json!([1])).consumer(),
            Consumer::default()
        );
    }

    #[test]
    fn a_json_body_is_stored_as_the_caller_sent_it() {
        let bodies: [&'static [u8]; 5] = [
            b" { \"price\": 1.50, \"name\": \"caf\\u00e9\" }\n",
            b"{\"a\":1,\"a\":2}",
            b"[1, 2e3, -0, null, \"\\\"quoted\\\"\"]",
            b"\"text\"",
            b"12345678901234567890",
        ];
        for raw in bodies {
            let body: serde_json::Value = serde_json::from_slice(raw).unwrap();
            let input = serde_json::json!({
                "message_id": "m", "headers": {"content-type": "application/json"},
                "body": body, "auth": {"method": "none"},
            });
            let text = message(input.clone(), Some(raw)).input_text();
            let sent = std::str::from_utf8(raw.trim_ascii()).unwrap();
            assert!(text.contains(&format!("\"body\":{sent},")), "{text}");
            // Read back, it is the document the flow saw.
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                input
            );
            // Without the caller's bytes, the same document written out from the parse.
            let written = message(input.clone(), None).input_text();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&written).unwrap(),
                input
            );
        }
    }
}
