//! Consumers' use of their keys: every authenticated request is counted (per
//! consumer label and UTC day, with the time each key was last used) and held
//! against the consumer's limits; 401s are counted under the label when the
//! key names one, else under the tenant (label `""`).
//!
//! The request path reads one shard of a map (by a hash of tenant, label and
//! key id) and updates atomics: consumers do not wait on each other. About
//! once a second [`Usage::flush`] adds what this node counted to the store and
//! reads back every node's totals of the day, which the daily quotas are held
//! against: a quota holds across nodes to within that second. When the store
//! is away, requests go on; the counts wait for the next flush.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::domain::{DAY_MICROS, Micros, now_micros, utc_day};
use crate::flow::Tenant;
use crate::store::{KeyUse, Store, StoreError, UsageDelta, UsageRow};

use super::limits::{Bucket, DayCount, DayTotal, RateLimitHeaders, Refusal, day_of};

const SHARDS: usize = 16;

/// Slots by the hash of (tenant, label, key id); a hash shared by two
/// holds both.
type Shard = RwLock<HashMap<u64, Vec<Arc<Slot>>>>;

/// Admitted requests of a day by (tenant, label).
type Totals = HashMap<(String, String), u64>;

/// One consumer (label) of one tenant; label `""`: 401s naming no key.
pub struct Consumer {
    tenant: String,
    label: String,
    bucket: Bucket,
    /// Admitted requests (what the quota counts) not yet flushed.
    requests: DayCount,
    /// 429s (rate or quota) not yet flushed.
    limited: DayCount,
    /// 401s not yet flushed.
    unauthorized: DayCount,
    /// The day's admitted requests of every node, as of the last flush.
    stored: DayTotal,
}

/// One key of a consumer (`key_id` empty: its keys without ids).
struct Slot {
    consumer: Arc<Consumer>,
    key_id: String,
    /// Microseconds; 0 when never used here.
    last_used: AtomicI64,
    /// `last_used` as last written to the store.
    flushed: AtomicI64,
}

/// How a consumer's request fares against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// For a consumer with limits: what the `RateLimit-*` headers say.
    pub headers: Option<RateLimitHeaders>,
    /// Set when the request is refused.
    pub refused: Option<Refusal>,
}

/// What a flush does and how often it fails (for `/_metrics`).
#[derive(Default)]
pub struct UsageStats {
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
}

/// Every consumer's counters on this node.
pub struct Usage {
    epoch: Instant,
    hasher: std::hash::RandomState,
    /// hash of (tenant, label, key id) -> the slots with that hash.
    shards: Box<[Shard]>,
    consumers: Mutex<HashMap<(String, String), Arc<Consumer>>>,
    /// Every node's admitted requests of a day, per (tenant, label), from the
    /// last flush: the start of a consumer first seen after it.
    totals: Mutex<(u32, Totals)>,
    pub stats: UsageStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Seconds from `now` to the next UTC midnight (at least 1).
pub fn to_midnight(now: Micros) -> u64 {
    let next = (utc_day(now) + 1) * DAY_MICROS;
    ((next - now) as u64).div_ceil(1_000_000).max(1)
}

impl Default for Usage {
    fn default() -> Self {
        Self::new()
    }
}

impl Usage {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            consumers: Mutex::default(),
            totals: Mutex::default(),
            stats: UsageStats::default(),
        }
    }

    /// The slot of a key, made on its first use.
    fn slot(&self, tenant: &str, label: &str, key_id: &str) -> Arc<Slot> {
        let hash = self.hasher.hash_one((tenant, label, key_id));
        let shard = &self.shards[hash as usize % SHARDS];
        let matches = |s: &&Arc<Slot>| {
            s.key_id == key_id && s.consumer.label == label && s.consumer.tenant == tenant
        };
        if let Ok(map) = shard.read()
            && let Some(found) = map.get(&hash).and_then(|v| v.iter().find(matches))
        {
            return found.clone();
        }
        let consumer = self.consumer(tenant, label);
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(hash).or_default();
        if let Some(found) = list.iter().find(matches) {
            return found.clone();
        }
        let slot = Arc::new(Slot {
            consumer,
            key_id: key_id.to_owned(),
            last_used: AtomicI64::new(0),
            flushed: AtomicI64::new(0),
        });
        list.push(slot.clone());
        slot
    }

    fn consumer(&self, tenant: &str, label: &str) -> Arc<Consumer> {
        let key = (tenant.to_owned(), label.to_owned());
        let mut all = lock(&self.consumers);
        all.entry(key.clone())
            .or_insert_with(|| {
                let c = Consumer {
                    tenant: key.0.clone(),
                    label: key.1.clone(),
                    bucket: Bucket::default(),
                    requests: DayCount::default(),
                    limited: DayCount::default(),
                    unauthorized: DayCount::default(),
                    stored: DayTotal::default(),
                };
                let totals = lock(&self.totals);
                if let Some(n) = totals.1.get(&key) {
                    c.stored.set(totals.0, *n);
                }
                Arc::new(c)
            })
            .clone()
    }

    /// A request that key `key_id` (`None`: a key without an id) of consumer
    /// `label` authenticated: counted, and held against the label's limits.
    pub fn admit(&self, tenant: &Tenant, label: &str, key_id: Option<&str>) -> Admission {
        let now = now_micros();
        let day = day_of(utc_day(now));
        let slot = self.slot(tenant.name.as_str(), label, key_id.unwrap_or(""));
        slot.last_used.store(now, Ordering::Relaxed);
        let c = &slot.consumer;
        let limits = if tenant.limits.is_empty() {
            None
        } else {
            tenant.limits.get(label)
        };
        let Some(limits) = limits else {
            c.requests.add(day, 1);
            return Admission {
                headers: None,
                refused: None,
            };
        };
        let stored = c.stored.get(day);
        let quota_headers = |used: u64, q: u64| RateLimitHeaders {
            limit: q,
            remaining: q.saturating_sub(used),
            reset: to_midnight(now),
        };
        // A spent quota is said first: waiting for the rate would not help.
        if let Some(q) = limits.quota
            && stored + c.requests.today(day) >= q
        {
            return self.refuse(
                c,
                day,
                quota_headers(q, q),
                Refusal::Quota {
                    retry_after: to_midnight(now),
                },
            );
        }
        let elapsed = self.epoch.elapsed().as_nanos() as u64;
        let rate = match limits.rate {
            None => None,
            Some((rate, burst)) => match c.bucket.take(elapsed, rate.interval_nanos(), burst) {
                Ok(t) => Some(RateLimitHeaders {
                    limit: u64::from(burst),
                    remaining: t.remaining,
                    reset: t.reset,
                }),
                Err(wait) => {
                    let headers = RateLimitHeaders {
                        limit: u64::from(burst),
                        remaining: 0,
                        reset: c.bucket.full_in(elapsed),
                    };
                    return self.refuse(c, day, headers, Refusal::Rate { retry_after: wait });
                }
            },
        };
        match c.requests.admit(day, stored, limits.quota) {
            Some(used) => Admission {
                headers: RateLimitHeaders::closest(
                    rate,
                    limits.quota.map(|q| quota_headers(used, q)),
                ),
                refused: None,
            },
            None => {
                let q = limits.quota.unwrap_or_default();
                self.refuse(
                    c,
                    day,
                    quota_headers(q, q),
                    Refusal::Quota {
                        retry_after: to_midnight(now),
                    },
                )
            }
        }
    }

    fn refuse(&self, c: &Consumer, day: u32, headers: RateLimitHeaders, why: Refusal) -> Admission {
        c.limited.add(day, 1);
        Admission {
            headers: Some(headers),
            refused: Some(why),
        }
    }

    /// A 401 of `tenant`, counted under `label` when the key named one.
    pub fn unauthorized(&self, tenant: &Tenant, label: Option<&str>) {
        let day = day_of(utc_day(now_micros()));
        let slot = self.slot(tenant.name.as_str(), label.unwrap_or(""), "");
        slot.consumer.unauthorized.add(day, 1);
    }

    fn every_slot(&self) -> Vec<Arc<Slot>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            out.extend(map.values().flatten().cloned());
        }
        out
    }

    /// Adds what this node counted since the last flush to the store, and
    /// reads back every node's totals of today. On failure the counts are
    /// kept for the next flush (and the error returned, to be logged).
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let now = now_micros();
        let today = day_of(utc_day(now));
        let consumers: Vec<Arc<Consumer>> = lock(&self.consumers).values().cloned().collect();
        let mut deltas = Vec::new();
        // (consumer, kind, day, count), to give back if the store fails.
        let mut taken: Vec<(Arc<Consumer>, usize, u32, u64)> = Vec::new();
        for c in &consumers {
            let counts = [&c.requests, &c.limited, &c.unauthorized];
            for (kind, count) in counts.iter().enumerate() {
                for (day, n) in count.take() {
                    if kind == 0 {
                        // Still counted against the quota while it is on its way.
                        c.stored.adjust(day, n as i64);
                    }
                    let mut d = UsageDelta {
                        day: i64::from(day),
                        tenant: c.tenant.clone(),
                        label: c.label.clone(),
                        requests: 0,
                        limited: 0,
                        unauthorized: 0,
                    };
                    *[&mut d.requests, &mut d.limited, &mut d.unauthorized][kind] = n;
                    deltas.push(d);
                    taken.push((c.clone(), kind, day, n));
                }
            }
        }
        // The keys used since their last flush, with that use.
        let used: Vec<(Arc<Slot>, Micros)> = self
            .every_slot()
            .into_iter()
            .filter_map(|s| {
                let at = s.last_used.load(Ordering::Relaxed);
                (at > s.flushed.load(Ordering::Relaxed)).then_some((s, at))
            })
            .collect();
        let uses = used
            .iter()
            .map(|(s, at)| KeyUse {
                tenant: s.consumer.tenant.clone(),
                label: s.consumer.label.clone(),
                key_id: s.key_id.clone(),
                last_used: *at,
            })
            .collect();
        match store.add_usage(deltas, uses, i64::from(today)).await {
            Ok(rows) => {
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                for (s, at) in &used {
                    s.flushed.fetch_max(*at, Ordering::Relaxed);
                }
                self.totals_read(today, &consumers, rows);
                Ok(())
            }
            Err(e) => {
                self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                for (c, kind, day, n) in taken {
                    [&c.requests, &c.limited, &c.unauthorized][kind].add(day, n);
                    if kind == 0 {
                        c.stored.adjust(day, -(n as i64));
                    }
                }
                Err(e)
            }
        }
    }

    /// Every node's totals of `today`, as a flush read them.
    fn totals_read(&self, today: u32, consumers: &[Arc<Consumer>], rows: Vec<UsageRow>) {
        let by: HashMap<(String, String), u64> = rows
            .into_iter()
            .map(|r| ((r.tenant, r.label), r.requests))
            .collect();
        for c in consumers {
            let key = (c.tenant.clone(), c.label.clone());
            c.stored.set(today, by.get(&key).copied().unwrap_or(0));
        }
        *lock(&self.totals) = (today, by);
    }

    /// This node's counts of `tenant` not yet flushed, by label: (requests,
    /// limited, unauthorized) of `day`.
    pub fn pending(&self, tenant: &str, day: i64) -> HashMap<String, (u64, u64, u64)> {
        let day = day_of(day);
        lock(&self.consumers)
            .values()
            .filter(|c| c.tenant == tenant)
            .map(|c| {
                let counts = (
                    c.requests.today(day),
                    c.limited.today(day),
                    c.unauthorized.today(day),
                );
                (c.label.clone(), counts)
            })
            .collect()
    }

    /// When each key of `tenant` was last used here: (label, key id) -> time.
    pub fn last_used(&self, tenant: &str) -> HashMap<(String, String), Micros> {
        self.every_slot()
            .into_iter()
            .filter(|s| s.consumer.tenant == tenant)
            .filter_map(|s| {
                let at = s.last_used.load(Ordering::Relaxed);
                (at > 0).then(|| ((s.consumer.label.clone(), s.key_id.clone()), at))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Limits, Rate, TenantName};

    fn tenant(limits: Option<Limits>) -> Tenant {
        let mut t = Tenant::empty(TenantName::parse("t").unwrap());
        if let Some(l) = limits {
            t.limits.insert("shop".into(), l);
        }
        t
    }

    #[test]
    fn an_unlimited_consumer_is_counted_and_gets_no_headers() {
        let u = Usage::new();
        let t = tenant(None);
        for _ in 0..3 {
            assert_eq!(u.admit(&t, "shop", Some("abcdefgh")).headers, None);
        }
        u.admit(&t, "shop", None);
        u.unauthorized(&t, Some("shop"));
        u.unauthorized(&t, None);
        let day = utc_day(now_micros());
        let pending = u.pending("t", day);
        assert_eq!(pending["shop"], (4, 0, 1));
        assert_eq!(pending[""], (0, 0, 1));
        let used = u.last_used("t");
        assert!(used.contains_key(&("shop".into(), "abcdefgh".into())));
        assert!(used.contains_key(&("shop".into(), String::new())));
    }

    #[test]
    fn a_rate_refuses_past_its_burst_and_a_quota_past_its_count() {
        let u = Usage::new();
        let rate = Rate::parse("1/h").unwrap();
        let t = tenant(Some(Limits {
            rate: Some((rate, 2)),
            quota: None,
        }));
        let first = u.admit(&t, "shop", None);
        assert_eq!(first.refused, None);
        assert_eq!(first.headers.map(|h| (h.limit, h.remaining)), Some((2, 1)));
        assert_eq!(u.admit(&t, "shop", None).refused, None);
        let third = u.admit(&t, "shop", None);
        assert!(matches!(third.refused, Some(Refusal::Rate { retry_after }) if retry_after > 3500));
        assert_eq!(third.headers.map(|h| h.remaining), Some(0));

        let q = tenant(Some(Limits {
            rate: None,
            quota: Some(2),
        }));
        let u = Usage::new();
        let h = u.admit(&q, "shop", None).headers.unwrap();
        assert_eq!((h.limit, h.remaining), (2, 1));
        assert!(h.reset >= 1 && h.reset <= 86_400);
        assert_eq!(u.admit(&q, "shop", None).refused, None);
        let over = u.admit(&q, "shop", None);
        assert!(matches!(over.refused, Some(Refusal::Quota { .. })));
        let day = utc_day(now_micros());
        assert_eq!(u.pending("t", day)["shop"], (2, 1, 0));
    }

    #[test]
    fn seconds_to_midnight_are_rounded_up() {
        assert_eq!(to_midnight(0), 86_400);
        assert_eq!(to_midnight(DAY_MICROS - 1), 1);
        assert_eq!(to_midnight(DAY_MICROS - 1_500_000), 2);
    }
}
