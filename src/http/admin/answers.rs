//! The admin API's answers, as types: each is serialized as it is and described
//! by its `ToSchema` derive, so the OpenAPI document cannot name a field the
//! answer lacks. Times are RFC 3339 with microseconds, durations milliseconds,
//! ids text. `deny_unknown_fields` only tells the document that an answer has no
//! fields but these (`additionalProperties: false`); nothing here is read. A
//! field that may be null is still always there: `required = true`.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{MessageId, MessageView, Outcome, format_rfc3339};
use crate::flow::{self, Diagnostic};
use crate::store::{self, BlockedLane, DeliveryStatus, DeliveryView, MessageSummary as Summary};

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// `GET /triggers`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerList {
    pub triggers: Vec<Trigger>,
    /// Problems of flow files that are not one loaded trigger's.
    pub load_errors: Vec<String>,
}

/// One loaded trigger, as the token may see it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub tenant: String,
    pub trigger: String,
    pub url: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub methods: Vec<String>,
    pub auth: TriggerAuth,
    pub enabled: bool,
    /// `sync` or `async`.
    pub mode: String,
    pub timeout_ms: u64,
    pub ordered: bool,
    /// The ordering key's expression.
    #[schema(required = true)]
    pub ordering_key: Option<String>,
    pub concurrency: usize,
    /// The delays between attempts (`1s`, `5m`).
    pub retry: Vec<String>,
    /// The first of `load_errors`.
    #[schema(required = true)]
    pub load_error: Option<String>,
    /// Problems of this trigger's file at the last load.
    pub load_errors: Vec<String>,
    /// Messages by status.
    pub counts: IndexMap<String, u64>,
    pub blocked_lanes: Vec<Lane>,
}

/// How callers authenticate, without any secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAuth {
    /// Open to anyone (always `true`).
    #[serde(rename = "none")]
    Open(bool),
    /// The tenant's key labels accepted.
    ApiKeys(Vec<String>),
    /// The Basic users accepted.
    Basic(Vec<String>),
    Hmac(HmacAuth),
}

/// Where an HMAC signature (and its signed timestamp) is read from.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacAuth {
    pub header: String,
    #[schema(required = true)]
    pub timestamp_header: Option<String>,
}

impl Trigger {
    pub fn new(
        t: &flow::Trigger,
        base: &str,
        counts: IndexMap<String, u64>,
        problems: &[&Diagnostic],
        lanes: &[&BlockedLane],
    ) -> Self {
        let auth = match &t.auth {
            flow::Auth::None => TriggerAuth::Open(true),
            flow::Auth::ApiKeys(labels) => TriggerAuth::ApiKeys(labels.clone()),
            flow::Auth::Basic(users) => TriggerAuth::Basic(users.clone()),
            // The rule without its secret.
            flow::Auth::Hmac(rule) => TriggerAuth::Hmac(HmacAuth {
                header: rule.header.clone(),
                timestamp_header: rule.timestamp_header.clone(),
            }),
        };
        Self {
            tenant: t.key.tenant.to_string(),
            trigger: t.key.trigger.to_string(),
            url: format!("{base}/{}/{}", t.key.tenant, t.key.trigger),
            description: t.description.clone(),
            methods: t.methods.iter().map(|m| m.as_str().to_owned()).collect(),
            auth,
            enabled: t.enabled,
            mode: t.response.mode.as_str().to_owned(),
            timeout_ms: t.response.timeout.as_millis() as u64,
            ordered: t.delivery.ordered,
            ordering_key: t
                .delivery
                .ordering_key
                .as_ref()
                .map(|e| e.source().to_owned()),
            concurrency: t.delivery.concurrency,
            retry: t
                .delivery
                .retry
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect(),
            load_error: problems.first().map(|d| d.to_string()),
            load_errors: problems.iter().map(|d| d.to_string()).collect(),
            counts,
            blocked_lanes: lanes.iter().map(|l| Lane::from(*l)).collect(),
        }
    }
}

/// `GET /tenants`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// A tenant's key labels and subscriptions (never hashes or secrets).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub tenant: String,
    pub api_keys: Vec<String>,
    pub subscriptions: Vec<Subscription>,
}

impl From<&flow::Tenant> for Tenant {
    fn from(t: &flow::Tenant) -> Self {
        Self {
            tenant: t.name.to_string(),
            api_keys: t.api_keys.iter().map(|(l, _)| l.clone()).collect(),
            subscriptions: t.subscriptions.iter().map(Subscription::from).collect(),
        }
    }
}

/// An event subscription: whether it authenticates and signs, not how.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub basic_auth: bool,
    pub signed: bool,
}

impl From<&flow::Subscription> for Subscription {
    fn from(s: &flow::Subscription) -> Self {
        Self {
            name: s.name.clone(),
            url: s.url.clone(),
            events: s.events.iter().map(|e| e.as_str().to_owned()).collect(),
            enabled: s.enabled,
            basic_auth: s.basic_auth.is_some(),
            signed: s.secret.is_some(),
        }
    }
}

/// `GET /lanes`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaneList {
    pub lanes: Vec<Lane>,
}

/// An ordered lane held by a failed message.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub tenant: String,
    pub trigger: String,
    pub lane: String,
    pub message_id: String,
    pub status: String,
    #[schema(required = true, format = DateTime)]
    pub since: Option<String>,
}

impl From<&BlockedLane> for Lane {
    fn from(l: &BlockedLane) -> Self {
        Self {
            tenant: l.key.tenant.to_string(),
            trigger: l.key.trigger.to_string(),
            lane: l.lane.clone(),
            message_id: l.message_id.to_string(),
            status: l.status.as_str().to_owned(),
            since: l.since.map(format_rfc3339),
        }
    }
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
    /// queued, running, retrying, succeeded, failed, dead or skipped.
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
}

impl From<&Summary> for MessageSummary {
    fn from(m: &Summary) -> Self {
        Self {
            message_id: m.id.to_string(),
            tenant: m.tenant.to_string(),
            trigger: m.trigger.to_string(),
            lane: m.lane.clone(),
            status: m.status.as_str().to_owned(),
            received_at: format_rfc3339(m.received_at),
            finished_at: m.finished_at.map(format_rfc3339),
            duration_ms: m.finished_at.map(|f| ms(f - m.received_at)),
            attempts: m.attempts,
            response_status: m.response_status,
            replay_of: m.replay_of.map(|r| r.to_string()),
            blocking: m.blocking,
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
    /// budget_exceeded, flow_failed, rejected or interrupted.
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
            .map(|a| Attempt {
                number: a.number,
                started_at: format_rfc3339(a.started_at),
                finished_at: a.finished_at.map(format_rfc3339),
                duration_ms: a.finished_at.map(|f| ms(f - a.started_at)),
                outcome: a.outcome.map(|o| Outcome::as_str(o).to_owned()),
                error: a.error.clone(),
                error_code: a.error_code.clone(),
            })
            .collect();
        Self {
            message_id: v.id.to_string(),
            tenant: v.tenant.to_string(),
            trigger: v.trigger.to_string(),
            lane: v.lane.clone(),
            mode: v.mode.as_str().to_owned(),
            status: v.status.as_str().to_owned(),
            received_at: format_rfc3339(v.received_at),
            finished_at: v.finished_at.map(format_rfc3339),
            duration_ms: v.finished_at.map(|f| ms(f - v.received_at)),
            replay_of: replay_of.map(|r| r.to_string()),
            blocking,
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

/// `GET /deliveries`: newest first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryPage {
    /// Without payloads, nor the attempts' headers and bodies.
    pub deliveries: Vec<Delivery>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// An event delivery. `payload`, and the attempts' `headers` and `body`, only
/// in `GET /deliveries/{id}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub delivery_id: String,
    pub tenant: String,
    pub subscription: String,
    pub event: String,
    #[schema(required = true)]
    pub message_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// pending, delivered or failed.
    pub status: String,
    /// While pending.
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<DeliveryAttempt>,
    /// The event document sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// One sending of a delivery.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAttempt {
    pub number: u32,
    #[schema(format = DateTime)]
    pub at: String,
    /// The receiver's status; none when no answer came.
    #[schema(required = true)]
    pub status: Option<u16>,
    /// The receiver's `[name, value]` pairs.
    #[schema(required = true, value_type = Option<Vec<Vec<String>>>)]
    pub headers: Option<Vec<(String, String)>>,
    /// The start of the receiver's answer.
    #[schema(required = true)]
    pub body: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
}

impl Delivery {
    /// `full`: with the payload and the attempts' headers and bodies.
    pub fn new(d: &DeliveryView, full: bool) -> Self {
        let attempts = d
            .attempts
            .iter()
            .map(|a: &store::DeliveryAttempt| DeliveryAttempt {
                number: a.number,
                at: format_rfc3339(a.at),
                status: a.status,
                headers: full.then(|| a.headers.clone()),
                body: full.then(|| a.body.clone()),
                error: a.error.clone(),
            })
            .collect();
        Self {
            delivery_id: d.id.to_string(),
            tenant: d.tenant.to_string(),
            subscription: d.subscription.clone(),
            event: d.event.clone(),
            message_id: d.message_id.map(|m| m.to_string()),
            created_at: format_rfc3339(d.created_at),
            status: d.status.as_str().to_owned(),
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| format_rfc3339(d.next_at)),
            attempts,
            payload: full.then(|| serde_json::from_str(&d.payload).unwrap_or(Value::Null)),
        }
    }
}

/// `POST /deliveries/{id}/redeliver`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redelivered {
    pub delivery_id: String,
    /// Always `pending`.
    pub status: String,
}

/// Every error answer: `{"errors": [{"code", "message"}]}`. Built by
/// `http::error`; here for the document (a test holds the two together).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorItem {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_type_is_what_error_answers_are() {
        let typed = Errors {
            errors: vec![ErrorItem {
                code: "not_found".into(),
                message: "no such thing".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(typed).unwrap(),
            crate::http::errors_body("not_found", "no such thing")
        );
    }
}
