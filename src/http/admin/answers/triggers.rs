//! The answers about the trigger table, the tenants and the blocked lanes.

use indexmap::IndexMap;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::format_rfc3339;
use crate::flow::{self, Diagnostic};
use crate::store::BlockedLane;

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
            api_keys: t.key_labels().into_iter().map(str::to_owned).collect(),
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
            events: s
                .events
                .iter()
                .map(|e| e.as_str().to_owned())
                .chain(s.business.iter().map(|b| match b.strip_suffix('.') {
                    Some(prefix) => format!("{prefix}.*"),
                    None => b.clone(),
                }))
                .collect(),
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
