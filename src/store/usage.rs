//! What the store keeps of consumers (the `api_keys` labels of a tenant):
//! requests, 429s and 401s per UTC day, each key's last use, and the
//! `key.expiring` notices sent. Nodes add what they counted about once a
//! second and read the day's totals back, so that a daily quota holds across
//! the nodes of a shared store (to within that second).
//!
//! Each backend implements the same methods (`sqlite/usage.rs`,
//! `postgres/usage.rs`); days are days since 1970-01-01, UTC.

use crate::domain::Micros;

use super::{Store, StoreError};

/// What one node counted for one consumer on one day, to add to the store's.
/// `label` is empty for 401s that name no known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub day: i64,
    pub tenant: String,
    pub label: String,
    /// Admitted requests: what the quota counts.
    pub requests: u64,
    /// Refused with 429 (rate or quota).
    pub limited: u64,
    /// Answered 401.
    pub unauthorized: u64,
}

/// One consumer's counts on one day, as the store holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant: String,
    pub label: String,
    pub requests: u64,
    pub limited: u64,
    pub unauthorized: u64,
}

/// When a key was last used; `key_id` is empty for a label's keys without ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub tenant: String,
    pub label: String,
    pub key_id: String,
    pub last_used: Micros,
}

/// Counts as the databases keep them (signed 64-bit).
pub(super) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// And back; a negative count (never written) reads as none.
pub(super) fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Deltas with one entry per (day, tenant, label), in that order: one
/// statement may touch a row once, and every node locks rows in one order.
pub(super) fn merged(mut deltas: Vec<UsageDelta>) -> Vec<UsageDelta> {
    deltas.sort_by(|a, b| (a.day, &a.tenant, &a.label).cmp(&(b.day, &b.tenant, &b.label)));
    let mut out: Vec<UsageDelta> = Vec::with_capacity(deltas.len());
    for d in deltas {
        match out.last_mut() {
            Some(last) if (last.day, &last.tenant, &last.label) == (d.day, &d.tenant, &d.label) => {
                last.requests += d.requests;
                last.limited += d.limited;
                last.unauthorized += d.unauthorized;
            }
            _ => out.push(d),
        }
    }
    out
}

/// Key uses with one entry per key (the latest), in key order.
pub(super) fn latest(mut uses: Vec<KeyUse>) -> Vec<KeyUse> {
    uses.sort_by(|a, b| {
        (&a.tenant, &a.label, &a.key_id, b.last_used).cmp(&(
            &b.tenant,
            &b.label,
            &b.key_id,
            a.last_used,
        ))
    });
    uses.dedup_by(|b, a| (&a.tenant, &a.label, &a.key_id) == (&b.tenant, &b.label, &b.key_id));
    uses
}

impl Store {
    /// Adds `deltas` to the counts and records `uses` (a later use replaces an
    /// earlier one, never the reverse), in one transaction; then returns every
    /// consumer's counts of `day`, everything every node has added.
    pub async fn add_usage(
        &self,
        deltas: Vec<UsageDelta>,
        uses: Vec<KeyUse>,
        day: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let (deltas, uses) = (merged(deltas), latest(uses));
        each!(self, s => s.add_usage(deltas, uses, day).await)
    }

    /// A tenant's counts of `day` and the last use of each of its keys.
    pub async fn usage_of(
        &self,
        tenant: &str,
        day: i64,
    ) -> Result<(Vec<UsageRow>, Vec<KeyUse>), StoreError> {
        let tenant = tenant.to_owned();
        each!(self, s => s.usage_of(tenant, day).await)
    }

    /// Records that `key.expiring` is sent for key `key_id` of `tenant`
    /// expiring at `expires`, and writes `event` (its outbox row) in the same
    /// transaction: true for the one caller (of every node) that records it
    /// first, false once it is recorded (and `event` is not written).
    pub async fn claim_key_notice(
        &self,
        tenant: &str,
        key_id: &str,
        expires: Micros,
        now: Micros,
        event: crate::store::OutboxEvent,
    ) -> Result<bool, StoreError> {
        let (tenant, key_id) = (tenant.to_owned(), key_id.to_owned());
        each!(self, s => s.claim_key_notice(tenant, key_id, expires, now, event).await)
    }

    /// Deletes the counts of days before `day`, and notices of keys that
    /// expired before `before`; returns how many rows went.
    pub async fn purge_usage(&self, day: i64, before: Micros) -> Result<u64, StoreError> {
        each!(self, s => s.purge_usage(day, before).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: i64, label: &str, requests: u64) -> UsageDelta {
        UsageDelta {
            day,
            tenant: "t".into(),
            label: label.into(),
            requests,
            limited: 1,
            unauthorized: 0,
        }
    }

    #[test]
    fn deltas_merge_by_day_tenant_and_label_in_order() {
        let out = merged(vec![d(2, "a", 1), d(1, "b", 2), d(2, "a", 3), d(1, "a", 4)]);
        let keys: Vec<(i64, &str, u64, u64)> = out
            .iter()
            .map(|d| (d.day, d.label.as_str(), d.requests, d.limited))
            .collect();
        assert_eq!(keys, [(1, "a", 4, 1), (1, "b", 2, 1), (2, "a", 4, 2)]);
    }

    #[test]
    fn the_latest_use_of_a_key_is_kept() {
        let u = |id: &str, at: Micros| KeyUse {
            tenant: "t".into(),
            label: "l".into(),
            key_id: id.into(),
            last_used: at,
        };
        assert_eq!(
            latest(vec![u("b", 1), u("a", 5), u("a", 9), u("a", 7)]),
            [u("a", 9), u("b", 1)]
        );
    }
}
