//! The answers about the log history and what an operator does to messages.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{MessageId, MessageStatus, MessageView, Outcome};
use crate::store::MessageSummary as Summary;

use super::span;

/// A message's status in the document: a string, one of every status there is.
fn status_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(MessageStatus::ALL.map(MessageStatus::as_str)))
        .build()
}

/// `GET /messages`: newest first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagePage {
    pub messages: Vec<MessageSummary>,
    /// The `cursor` of the next page; none on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A line of the log history.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSummary {
    pub message_id: String,
    pub tenant: String,
    pub trigger: String,
    #[schema(required = true)]
    pub lane: Option<String>,
    /// queued, running, retrying, succeeded, failed, dead, skipped, rejected or cancelled.
    #[schema(schema_with = status_schema)]
    pub status: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(required = true)]
    pub duration_ms: Option<f64>,
    pub attempts: u32,
    #[schema(required = true)]
    pub response_status: Option<u16>,
    #[schema(required = true)]
    pub replay_of: Option<String>,
    /// A finished message that holds its ordered lane.
    pub blocking: bool,
    /// Why its last attempt failed (the whole text is in the message's detail).
    #[schema(required = true)]
    pub error: Option<String>,
    /// Who sent it: an API key's label, or the HTTP Basic user; none for open
    /// triggers and HMAC-signed calls.
    #[schema(required = true)]
    pub consumer: Option<String>,
    /// The id of the key that sent it, for keys of the form `fg_<id>_<secret>`.
    #[schema(required = true)]
    pub key_id: Option<String>,
}

impl From<&Summary> for MessageSummary {
    fn from(m: &Summary) -> Self {
        let h = &m.head;
        let (received_at, finished_at, duration_ms) = span(h.received_at, m.finished_at);
        Self {
            message_id: h.id.to_string(),
            tenant: h.tenant.to_string(),
            trigger: h.trigger.to_string(),
            lane: h.lane.clone(),
            status: h.status.as_str().to_owned(),
            received_at,
            finished_at,
            duration_ms,
            attempts: m.attempts,
            response_status: m.response_status,
            replay_of: m.replay_of.map(|r| r.to_string()),
            blocking: m.blocking,
            error: m.error.clone(),
            consumer: m.consumer.label.clone(),
            key_id: m.consumer.key_id.clone(),
        }
    }
}

/// `GET /messages/{id}`: input (redacted), step trace, every attempt, response.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageDetail {
    pub message_id: String,
    pub tenant: String,
    pub trigger: String,
    #[schema(required = true)]
    pub lane: Option<String>,
    pub mode: String,
    #[schema(schema_with = status_schema)]
    pub status: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(required = true)]
    pub duration_ms: Option<f64>,
    #[schema(required = true)]
    pub replay_of: Option<String>,
    pub blocking: bool,
    /// Who sent it: an API key's label, or the HTTP Basic user; none for open
    /// triggers and HMAC-signed calls.
    #[schema(required = true)]
    pub consumer: Option<String>,
    /// The id of the key that sent it, for keys of the form `fg_<id>_<secret>`.
    #[schema(required = true)]
    pub key_id: Option<String>,
    /// The input document, secrets redacted.
    #[schema(value_type = Object)]
    pub input: Value,
    /// The steps run, in order.
    #[schema(value_type = Vec<Object>)]
    pub trace: Value,
    pub attempts: Vec<Attempt>,
    #[schema(required = true)]
    pub response: Option<Response>,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// One run of a message's flow.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    pub number: u32,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(required = true)]
    pub duration_ms: Option<f64>,
    #[schema(required = true)]
    pub outcome: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// budget_exceeded, flow_failed, rejected, interrupted or cancelled.
    #[schema(required = true)]
    pub error_code: Option<String>,
}

/// The answer the message's caller got (or gets, for an async trigger, at its status URL).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub status: u16,
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// Any JSON.
    pub body: Value,
}

impl MessageDetail {
    pub fn new(v: &MessageView, replay_of: Option<MessageId>, blocking: bool) -> Self {
        let attempts = v
            .attempts
            .iter()
            .map(|a| {
                let (started_at, finished_at, duration_ms) = span(a.started_at, a.finished_at);
                Attempt {
                    number: a.number,
                    started_at,
                    finished_at,
                    duration_ms,
                    outcome: a.outcome.map(|o| Outcome::as_str(o).to_owned()),
                    error: a.error.clone(),
                    error_code: a.error_code.clone(),
                }
            })
            .collect();
        let h = &v.head;
        let (received_at, finished_at, duration_ms) = span(h.received_at, v.finished_at);
        Self {
            message_id: h.id.to_string(),
            tenant: h.tenant.to_string(),
            trigger: h.trigger.to_string(),
            lane: h.lane.clone(),
            mode: h.mode.as_str().to_owned(),
            status: h.status.as_str().to_owned(),
            received_at,
            finished_at,
            duration_ms,
            replay_of: replay_of.map(|r| r.to_string()),
            blocking,
            consumer: v.consumer.label.clone(),
            key_id: v.consumer.key_id.clone(),
            input: v.input.clone(),
            trace: v.trace.clone(),
            attempts,
            response: v.response.as_ref().map(|r| Response {
                status: r.status,
                headers: r.headers.clone(),
                body: r.body.clone(),
            }),
            error: v.error.clone(),
        }
    }
}

/// `POST /messages/{id}/replay`: the new message.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replayed {
    pub message_id: String,
    pub replay_of: String,
    /// Always `queued`.
    pub status: String,
}

/// `POST /messages/{id}/skip` and `/unblock`: the lane's head after the release.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Released {
    pub message_id: String,
    pub status: String,
    #[schema(required = true)]
    pub lane: Option<String>,
}

/// `POST /replay` with `dry_run`: how many messages match.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCount {
    pub count: u64,
}

/// `POST /replay`: the new messages, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayed {
    pub count: u64,
    pub replayed: usize,
    pub message_ids: Vec<String>,
}

/// A `200` of `POST /replay`: a dry run's count, or nothing matched to replay.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BulkAnswer {
    Count(BulkCount),
    Replayed(BulkReplayed),
}
