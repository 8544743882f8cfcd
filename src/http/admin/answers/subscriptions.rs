//! The answers about event subscriptions. A secret is in an answer twice in a
//! subscription's life at most: when it is created, and when it is rotated.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Subscription, SubscriptionSource, format_retry, format_rfc3339};

/// `GET /subscriptions`: a tenant's (or every visible tenant's), those of
/// `_tenant.yaml` first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

/// An outbound event webhook. Never its password; its secret only in the
/// answer that made it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionView {
    pub subscription_id: String,
    pub tenant: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub url: String,
    /// Event names, or `prefix.*`.
    pub events: Vec<String>,
    /// Only events of these triggers; null: of every trigger.
    #[schema(required = true)]
    pub triggers: Option<Vec<String>>,
    pub auth: SubscriptionAuth,
    /// `ids` or `full`.
    pub include: String,
    /// The waits between attempts; null: the server's (`subscriptions_retry`).
    #[schema(required = true)]
    pub retry: Option<Vec<String>>,
    pub enabled: bool,
    /// `file` (`_tenant.yaml`, read-only here) or `api`.
    pub source: String,
    /// Whether deliveries carry `X-Flowgate-Signature`.
    pub signed: bool,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub updated_at: Option<String>,
    /// The signing secret: only in the answer of `POST /subscriptions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// How deliveries authenticate: `none`, or `basic` with its user name.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionAuth {
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(required = true)]
    pub username: Option<String>,
}

impl SubscriptionView {
    /// `secret`: shown in this answer (a creation).
    pub fn new(s: &Subscription, secret: Option<String>) -> Self {
        let api = s.source == SubscriptionSource::Api;
        Self {
            subscription_id: s.id.to_string(),
            tenant: s.tenant.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            url: s.url.clone(),
            events: s.events.iter().map(ToString::to_string).collect(),
            triggers: s.triggers.clone(),
            auth: SubscriptionAuth {
                kind: if s.basic_auth.is_some() {
                    "basic"
                } else {
                    "none"
                }
                .into(),
                username: s.basic_auth.as_ref().map(|(u, _)| u.clone()),
            },
            include: s.include.as_str().into(),
            retry: s.retry.as_deref().map(format_retry),
            enabled: s.enabled,
            source: s.source.as_str().into(),
            signed: s.secret.is_some(),
            created_at: api.then(|| format_rfc3339(s.created_at)),
            updated_at: api.then(|| format_rfc3339(s.updated_at)),
            secret,
        }
    }
}

/// `POST /subscriptions/{id}/rotate-secret`: the new secret, this once.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotatedSecret {
    pub subscription_id: String,
    pub secret: String,
}

/// `DELETE /subscriptions/{id}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletedSubscription {
    pub subscription_id: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /subscriptions/{id}/test`: the ping's one attempt.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestedSubscription {
    /// The ping's delivery, in the delivery log.
    pub delivery_id: String,
    /// The receiver answered 2xx.
    pub ok: bool,
    pub url: String,
    /// The receiver's status; null when no answer came.
    #[schema(required = true)]
    pub status: Option<u16>,
    pub duration_ms: f64,
    /// connect, tls, timeout, status, redirect or policy.
    #[schema(required = true)]
    pub error_kind: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
}
