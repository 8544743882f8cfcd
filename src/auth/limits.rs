//! The counters behind a consumer's limits, each one atomic word so that the
//! request path takes no lock: the rate's token bucket (GCRA: the time at
//! which the bucket would be full again), and counts per UTC day. What the
//! answer's `RateLimit-*` headers say is decided here too.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds in a second.
const SECOND: u64 = 1_000_000_000;

/// Whole seconds in `nanos`, rounded up.
fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(SECOND)
}

/// A token bucket as one word: the theoretical arrival time (GCRA) in
/// nanoseconds since the registry's start. Each request moves it one interval
/// on; a request that would move it more than `burst` intervals past now is
/// refused.
#[derive(Default)]
pub struct Bucket {
    tat: AtomicU64,
}

/// What the bucket says of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Requests that could be made now.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

impl Bucket {
    /// Takes a token at `now` (nanoseconds), one per `interval` nanoseconds
    /// and `burst` at most at once; `Err(seconds)` to wait when there is none.
    pub fn take(&self, now: u64, interval: u64, burst: u32) -> Result<Taken, u64> {
        let tolerance = interval.saturating_mul(u64::from(burst));
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(interval);
            let ahead = next - now;
            if ahead > tolerance {
                return Err(ceil_secs(ahead - tolerance).max(1));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Taken {
                        remaining: (tolerance - ahead) / interval,
                        reset: ceil_secs(ahead),
                    });
                }
                Err(seen) => tat = seen,
            }
        }
    }

    /// Seconds until the bucket is full again, taking nothing.
    pub fn full_in(&self, now: u64) -> u64 {
        ceil_secs(self.tat.load(Ordering::Relaxed).saturating_sub(now))
    }
}

/// Bits of a packed count that hold the count; the day is above them.
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

fn pack(day: u32, n: u64) -> u64 {
    (u64::from(day) << COUNT_BITS) | n.min(COUNT_MASK)
}

fn unpack(v: u64) -> (u32, u64) {
    ((v >> COUNT_BITS) as u32, v & COUNT_MASK)
}

/// A UTC day as the counters keep it (days since 1970, 24 bits).
pub fn day_of(utc_day: i64) -> u32 {
    utc_day.clamp(0, (1 << (64 - COUNT_BITS)) - 1) as u32
}

/// A count of one UTC day in one word. A count of an earlier day that meets
/// a later one is not lost: it is set aside (`spill`) until it is flushed.
#[derive(Default)]
pub struct DayCount {
    word: AtomicU64,
    /// (day, count) set aside when the day changed under them (rare: at
    /// midnight, or when a failed flush gives its counts back).
    spilled: Mutex<Vec<(u32, u64)>>,
}

impl DayCount {
    /// Adds `n` to `day`'s count.
    pub fn add(&self, day: u32, n: u64) {
        let mut v = self.word.load(Ordering::Relaxed);
        loop {
            let (d, c) = unpack(v);
            let (next, aside) = match d.cmp(&day) {
                std::cmp::Ordering::Equal => (pack(day, c + n), None),
                std::cmp::Ordering::Less => (pack(day, n), Some((d, c))),
                std::cmp::Ordering::Greater => {
                    self.set_aside(day, n);
                    return;
                }
            };
            match self
                .word
                .compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if let Some((d, c)) = aside.filter(|a| a.1 > 0) {
                        self.set_aside(d, c);
                    }
                    return;
                }
                Err(seen) => v = seen,
            }
        }
    }

    /// Adds one to `day`'s count unless `base` (counted elsewhere) plus the
    /// count has reached `quota`: then `None`. Else the count with this one,
    /// plus `base`.
    pub fn admit(&self, day: u32, base: u64, quota: Option<u64>) -> Option<u64> {
        let mut v = self.word.load(Ordering::Relaxed);
        loop {
            let (d, c) = unpack(v);
            let here = if d == day { c } else { 0 };
            if quota.is_some_and(|q| base + here >= q) {
                return None;
            }
            if d > day {
                // The clock went back across midnight: counted, not limited.
                self.set_aside(day, 1);
                return Some(base + 1);
            }
            match self.word.compare_exchange_weak(
                v,
                pack(day, here + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if d != day && c > 0 {
                        self.set_aside(d, c);
                    }
                    return Some(base + here + 1);
                }
                Err(seen) => v = seen,
            }
        }
    }

    /// `day`'s count not yet taken.
    pub fn today(&self, day: u32) -> u64 {
        let (d, c) = unpack(self.word.load(Ordering::Relaxed));
        if d == day { c } else { 0 }
    }

    /// Takes every count not yet taken, by day, leaving zero.
    pub fn take(&self) -> Vec<(u32, u64)> {
        let mut out = match self.spilled.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        let mut v = self.word.load(Ordering::Relaxed);
        loop {
            let (d, c) = unpack(v);
            if c == 0 {
                break;
            }
            match self.word.compare_exchange_weak(
                v,
                pack(d, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    out.push((d, c));
                    break;
                }
                Err(seen) => v = seen,
            }
        }
        out
    }

    fn set_aside(&self, day: u32, n: u64) {
        match self.spilled.lock() {
            Ok(mut s) => s.push((day, n)),
            Err(p) => p.into_inner().push((day, n)),
        }
    }
}

/// A day's total as the store last said (with what is being added to it):
/// (day, count) in one word.
#[derive(Default)]
pub struct DayTotal(AtomicU64);

impl DayTotal {
    pub fn get(&self, day: u32) -> u64 {
        let (d, c) = unpack(self.0.load(Ordering::Relaxed));
        if d == day { c } else { 0 }
    }

    pub fn set(&self, day: u32, n: u64) {
        self.0.store(pack(day, n), Ordering::Relaxed);
    }

    /// Adds `n` (negative: takes it off) to `day`'s total. A total of an
    /// earlier day (none read yet, or yesterday's before the first flush of
    /// the day) becomes `day`'s, starting from nothing: what this node counts
    /// is held against the quota while it is on its way to the store.
    pub fn adjust(&self, day: u32, n: i64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let (d, c) = unpack(v);
                match d.cmp(&day) {
                    std::cmp::Ordering::Equal => Some(pack(d, c.saturating_add_signed(n))),
                    std::cmp::Ordering::Less => Some(pack(day, 0u64.saturating_add_signed(n))),
                    std::cmp::Ordering::Greater => None,
                }
            });
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

impl RateLimitHeaders {
    /// Of two limits, the one closest to exhaustion: the smaller share left
    /// (the rate's on a tie, whose reset is the sooner).
    pub fn closest(rate: Option<Self>, quota: Option<Self>) -> Option<Self> {
        match (rate, quota) {
            (Some(r), Some(q)) => {
                // r.remaining / r.limit <= q.remaining / q.limit, without division.
                let rate_first = u128::from(r.remaining) * u128::from(q.limit)
                    <= u128::from(q.remaining) * u128::from(r.limit);
                Some(if rate_first { r } else { q })
            }
            (r, q) => r.or(q),
        }
    }
}

/// Why a consumer's request is refused, with the seconds to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its rate (per node): `rate_limited`.
    Rate { retry_after: u64 },
    /// Its daily quota: `quota_exceeded`, until the next UTC midnight.
    Quota { retry_after: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_bucket_lets_a_burst_through_then_one_per_interval() {
        let b = Bucket::default();
        let (interval, burst) = (100 * MS, 3);
        let now = 10 * SECOND;
        let remaining: Vec<u64> = (0..3)
            .map(|_| b.take(now, interval, burst).unwrap().remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert_eq!(b.take(now, interval, burst), Err(1), "rounded up");
        // One interval later, one more.
        let later = now + interval;
        let t = b.take(later, interval, burst).unwrap();
        assert_eq!(t.remaining, 0);
        assert_eq!(t.reset, 1, "full again within a second");
        assert!(b.take(later, interval, burst).is_err());
        // Long after, the whole burst again (never more).
        let much_later = now + 100 * SECOND;
        assert_eq!(b.take(much_later, interval, burst).unwrap().remaining, 2);
        assert_eq!(b.full_in(much_later), 1);
    }

    #[test]
    fn an_hourly_rate_says_how_long_to_wait() {
        let b = Bucket::default();
        let hour = 3600 * SECOND;
        assert_eq!(
            b.take(0, hour, 1).unwrap(),
            Taken {
                remaining: 0,
                reset: 3600
            }
        );
        assert_eq!(b.take(SECOND, hour, 1), Err(3599));
    }

    #[test]
    fn day_counts_start_again_each_day_and_keep_the_last_days_count() {
        let c = DayCount::default();
        c.add(5, 2);
        c.add(5, 1);
        assert_eq!(c.today(5), 3);
        // Midnight: the new day starts at zero; the old count is kept aside.
        c.add(6, 1);
        assert_eq!(c.today(6), 1);
        assert_eq!(c.today(5), 0);
        // A count given back for an earlier day goes aside too.
        c.add(5, 4);
        let mut taken = c.take();
        taken.sort();
        assert_eq!(taken, [(5, 3), (5, 4), (6, 1)]);
        assert!(c.take().is_empty());
        assert_eq!(c.today(6), 0);
    }

    #[test]
    fn a_quota_admits_up_to_its_count_with_what_others_counted() {
        let c = DayCount::default();
        assert_eq!(c.admit(7, 3, Some(5)), Some(4));
        assert_eq!(c.admit(7, 3, Some(5)), Some(5));
        assert_eq!(c.admit(7, 3, Some(5)), None);
        assert_eq!(c.admit(7, 0, None), Some(3), "no quota: only counted");
        assert_eq!(c.admit(8, 0, Some(1)), Some(1), "a new day");
        assert_eq!(c.take().iter().map(|t| t.1).sum::<u64>(), 4);
    }

    #[test]
    fn day_totals_belong_to_their_day() {
        let t = DayTotal::default();
        t.set(3, 10);
        t.adjust(3, 5);
        assert_eq!((t.get(3), t.get(4)), (15, 0));
        t.adjust(3, -20);
        assert_eq!(t.get(3), 0);
        // Counted on a later day (after midnight, or before any reading): the
        // total becomes that day's, so the count is held against its quota.
        t.set(3, 10);
        t.adjust(4, 100);
        assert_eq!((t.get(3), t.get(4)), (0, 100));
        t.adjust(3, 7);
        assert_eq!(t.get(4), 100, "an earlier day's count leaves today's alone");
        let fresh = DayTotal::default();
        fresh.adjust(9, 2);
        assert_eq!(fresh.get(9), 2);
    }

    #[test]
    fn the_headers_describe_the_limit_closest_to_exhaustion() {
        let rate = RateLimitHeaders {
            limit: 10,
            remaining: 5,
            reset: 1,
        };
        let quota = RateLimitHeaders {
            limit: 1000,
            remaining: 100,
            reset: 3600,
        };
        assert_eq!(
            RateLimitHeaders::closest(Some(rate), Some(quota)),
            Some(quota)
        );
        let full = RateLimitHeaders {
            remaining: 900,
            ..quota
        };
        assert_eq!(
            RateLimitHeaders::closest(Some(rate), Some(full)),
            Some(rate)
        );
        assert_eq!(RateLimitHeaders::closest(None, Some(quota)), Some(quota));
        assert_eq!(RateLimitHeaders::closest(None, None), None);
    }
}
