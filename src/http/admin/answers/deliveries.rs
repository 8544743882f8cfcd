//! The answers about event deliveries.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::format_rfc3339;
use crate::store::{self, DeliveryStatus, DeliveryView};

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
    /// Where it was sent (empty when it was not: no subscription).
    pub url: String,
    pub duration_ms: f64,
    /// Why it failed: connect, tls, timeout, status, redirect or policy.
    #[schema(required = true)]
    pub error_kind: Option<String>,
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
                url: a.url.clone(),
                duration_ms: super::ms(a.duration_us),
                error_kind: a.kind.clone(),
                status: a.status,
                headers: full.then(|| a.headers.clone()),
                body: full.then(|| a.body.clone()),
                error: a.error.clone(),
            })
            .collect();
        let queued = &d.delivery;
        Self {
            delivery_id: queued.id.to_string(),
            tenant: queued.tenant.to_string(),
            subscription: queued.subscription.clone(),
            event: queued.event.clone(),
            message_id: queued.message_id.map(|m| m.to_string()),
            created_at: format_rfc3339(queued.created_at),
            status: d.status.as_str().to_owned(),
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| format_rfc3339(d.next_at)),
            attempts,
            payload: full.then(|| serde_json::from_str(&queued.payload).unwrap_or(Value::Null)),
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
