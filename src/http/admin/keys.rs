//! A tenant's consumers: their keys (ids, expiry, last use), limits and
//! today's counts, from the store (every node's, as of their last write) and
//! what this node has not written yet.

use std::collections::HashMap;

use actix_web::{get, web};
use serde::Deserialize;

use crate::domain::{DAY_MICROS, Micros, format_rfc3339, now_micros, utc_day};
use crate::flow::Tenant;

use super::answers::{ApiKey, ConsumerQuota, ConsumerRate, KeyConsumer, KeyList};
use super::extract::Admin;
use super::{ApiError, Json};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct KeysQuery {
    /// Tenant name
    tenant: String,
}

/// Today's counts of one label: (requests, limited, unauthorized).
type Counts = (u64, u64, u64);

/// A tenant's consumers and their keys, with today's use. No hashes.
#[utoipa::path(
    operation_id = "list_keys",
    params(KeysQuery),
    responses((status = 200, description = "The tenant's consumers", body = KeyList))
)]
#[get("/keys")]
pub async fn list(q: web::Query<KeysQuery>, who: Admin) -> Result<Json<KeyList>, ApiError> {
    let state = &who.state;
    let name = who.tenant(&q.tenant)?;
    let catalog = state.catalog.get();
    let entry = catalog
        .tenant(name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no tenant `{name}`")))?;
    let now = now_micros();
    let day = utc_day(now);
    let (rows, uses) = state.queue.store().usage_of(name.as_str(), day).await?;
    let mut counts: HashMap<String, Counts> = rows
        .into_iter()
        .map(|r| (r.label, (r.requests, r.limited, r.unauthorized)))
        .collect();
    for (label, (r, l, u)) in state.usage.pending(name.as_str(), day) {
        let c = counts.entry(label).or_default();
        *c = (c.0 + r, c.1 + l, c.2 + u);
    }
    let mut last_used: HashMap<(String, String), Micros> = uses
        .into_iter()
        .map(|u| ((u.label, u.key_id), u.last_used))
        .collect();
    for (key, at) in state.usage.last_used(name.as_str()) {
        let known = last_used.entry(key).or_default();
        *known = (*known).max(at);
    }
    let consumers = entry
        .tenant
        .key_labels()
        .into_iter()
        .map(|label| consumer(&entry.tenant, label, &counts, &last_used, now))
        .collect();
    Ok(Json(KeyList {
        tenant: name.to_string(),
        day: format_rfc3339(day * DAY_MICROS)[..10].to_owned(),
        consumers,
        unattributed_unauthorized_today: counts.get("").map_or(0, |c| c.2),
    }))
}

fn consumer(
    tenant: &Tenant,
    label: &str,
    counts: &HashMap<String, Counts>,
    last_used: &HashMap<(String, String), Micros>,
    now: Micros,
) -> KeyConsumer {
    let used = |id: &str| {
        last_used
            .get(&(label.to_owned(), id.to_owned()))
            .map(|at| format_rfc3339(*at))
    };
    let pasted = tenant
        .api_keys
        .iter()
        .filter(|(l, _)| l == label)
        .map(|_| ApiKey {
            id: None,
            expires_at: None,
            expired: false,
            last_used_at: used(""),
        });
    let with_ids = tenant
        .key_ids
        .values()
        .filter(|k| k.label == label)
        .map(|k| {
            let expires = k
                .expires
                .map(|at| (at.unix_timestamp_nanos() / 1000) as Micros);
            ApiKey {
                id: Some(k.id.clone()),
                expires_at: expires.map(format_rfc3339),
                expired: expires.is_some_and(|at| at <= now),
                last_used_at: used(&k.id),
            }
        });
    let (requests, limited, unauthorized) = counts.get(label).copied().unwrap_or_default();
    let limits = tenant.limits.get(label);
    KeyConsumer {
        label: label.to_owned(),
        keys: pasted.chain(with_ids).collect(),
        requests_today: requests,
        limited_today: limited,
        unauthorized_today: unauthorized,
        rate: limits
            .and_then(|l| l.rate)
            .map(|(rate, burst)| ConsumerRate {
                limit: rate.to_string(),
                burst,
            }),
        quota: limits.and_then(|l| l.quota).map(|q| ConsumerQuota {
            limit: q,
            used_today: requests,
            remaining: q.saturating_sub(requests),
            resets_at: format_rfc3339((utc_day(now) + 1) * DAY_MICROS),
        }),
    }
}
