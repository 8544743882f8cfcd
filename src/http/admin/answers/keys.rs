//! The answer about a tenant's consumers and their keys: never a hash.

use serde::Serialize;
use utoipa::ToSchema;

/// `GET /keys?tenant=`: every consumer (`api_keys` label) of the tenant, in
/// file order, with today's counts (UTC).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    pub tenant: String,
    /// Today, UTC (`2026-12-07`): the day the counts are of.
    #[schema(format = Date)]
    pub day: String,
    pub consumers: Vec<KeyConsumer>,
    /// 401s today whose key named no consumer (no key, an unknown id, a
    /// wrong key without an id).
    pub unattributed_unauthorized_today: u64,
}

/// One consumer: its keys, its limits and what it used today (every node's
/// counts, to within about a second).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConsumer {
    pub label: String,
    pub keys: Vec<ApiKey>,
    /// Requests admitted today (what the quota counts).
    pub requests_today: u64,
    /// Requests refused today with 429 (`rate_limited`, `quota_exceeded`).
    pub limited_today: u64,
    /// 401s today with one of its keys (a wrong secret for one of its ids, an
    /// expired key, a trigger it may not call).
    pub unauthorized_today: u64,
    #[schema(required = true)]
    pub rate: Option<ConsumerRate>,
    #[schema(required = true)]
    pub quota: Option<ConsumerQuota>,
}

/// A key of a consumer. A key pasted without an id (`label: "<hash>"`) has
/// `id` null.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    #[schema(required = true)]
    pub id: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    pub expired: bool,
    /// Its last use on any node (as of the last write of the counts).
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
}

/// `rate:` and `burst:` (per node).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerRate {
    /// As written: `100/s`, `600/min`, `1000/h`.
    pub limit: String,
    /// Requests at once.
    pub burst: u32,
}

/// `quota:` (requests per UTC day) and today's use of it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerQuota {
    pub limit: u64,
    pub used_today: u64,
    pub remaining: u64,
    /// The next UTC midnight.
    #[schema(format = DateTime)]
    pub resets_at: String,
}
