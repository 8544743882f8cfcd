//! This node's leases: what it holds (each message by attempt, each lane by
//! epoch), until when, and who must hear when one is lost.
//!
//! A lease is renewed by the heartbeat (`heartbeat`) and lost when a renewal
//! finds it gone (another node took the work over, or it lapsed first) or when
//! no renewal came in time: past `until - margin` by this node's clock the node
//! counts it lost without asking the database (`expire`), since another node,
//! whose clock may differ a little, may take the work over from then on. Losing
//! a lease calls what was registered for it (`guard_*`): the queue stops the
//! execution running under it. Work is started under a lease only while it is
//! live, so a node cut off from the database starts nothing and stops what runs
//! within one lease.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::domain::{MessageId, Micros};
use crate::store::types::StoreError;

use super::claims::LaneClaim;
use super::{PgStore, db};

/// A lane's key: tenant, trigger, lane.
type LaneKey = (String, String, String);
/// What to do when a lease is lost.
type OnLost = Box<dyn FnOnce() + Send>;

/// One lease: its fencing value (a message's attempt, a lane's epoch), when it
/// lapses on the database, and who is told if it is lost. An `ending` lease's
/// work is over and its end is being written: it is renewed meanwhile, but a
/// renewal that finds it gone (the end was written) or no renewal is no loss.
struct Lease<T> {
    token: T,
    until: Micros,
    on_lost: Option<OnLost>,
    ending: bool,
}

impl<T> Lease<T> {
    fn new(token: T, until: Micros) -> Self {
        Self {
            token,
            until,
            on_lost: None,
            ending: false,
        }
    }
}

/// The leases of one kind, by key.
struct Leases<K, T>(Mutex<HashMap<K, Lease<T>>>);

impl<K, T> Default for Leases<K, T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq + Clone, T: Copy + PartialEq> Leases<K, T> {
    fn map(&self) -> MutexGuard<'_, HashMap<K, Lease<T>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.map().len()
    }

    /// Holds `key` at `token`. A lease it replaces (an older attempt of the same
    /// message) is lost: the database gave the key to the newer one.
    fn hold(&self, key: K, token: T, until: Micros) {
        let old = self.map().insert(key, Lease::new(token, until));
        if let Some(old) = old.filter(|o| o.token != token) {
            lost(vec![old.on_lost]);
        }
    }

    /// Stops renewing `key` at `token` (its work ended); a newer token stays.
    fn release(&self, key: &K, token: T) {
        let mut map = self.map();
        if map.get(key).is_some_and(|l| l.token == token) {
            map.remove(key);
        }
    }

    fn release_any(&self, key: &K) {
        self.map().remove(key);
    }

    /// The work under `key` at `token` is over; its end is being written.
    fn ending(&self, key: &K, token: T) {
        if let Some(l) = self.map().get_mut(key).filter(|l| l.token == token) {
            l.ending = true;
            l.on_lost = None;
        }
    }

    /// Whether `key` is held at `token` and live at `now` (`margin` before it lapses).
    fn live(&self, key: &K, token: T, now: Micros, margin: Micros) -> bool {
        self.map()
            .get(key)
            .is_some_and(|l| l.token == token && l.until - margin > now)
    }

    /// Registers `on_lost` if the lease is live; otherwise returns it unused.
    fn guard(
        &self,
        key: &K,
        token: T,
        now: Micros,
        margin: Micros,
        on_lost: OnLost,
    ) -> Result<(), OnLost> {
        match self.map().get_mut(key) {
            Some(l) if l.token == token && l.until - margin > now => {
                l.on_lost = Some(on_lost);
                Ok(())
            }
            _ => Err(on_lost),
        }
    }

    /// Drops the leases past `now + margin`; returns what to call.
    fn expire(&self, now: Micros, margin: Micros) -> Vec<Option<OnLost>> {
        let mut map = self.map();
        let gone: Vec<K> = map
            .iter()
            .filter(|(_, l)| !l.ending && l.until - margin <= now)
            .map(|(k, _)| k.clone())
            .collect();
        gone.iter()
            .filter_map(|k| map.remove(k))
            .map(|l| l.on_lost)
            .collect()
    }

    fn snapshot(&self) -> Vec<(K, T)> {
        self.map()
            .iter()
            .map(|(k, l)| (k.clone(), l.token))
            .collect()
    }

    /// After a renewal of `sent`: those `renewed` now last until `until`; the
    /// others (unless released or replaced meanwhile) are lost.
    fn settle(
        &self,
        sent: Vec<(K, T)>,
        renewed: impl Fn(&K) -> bool,
        until: Micros,
    ) -> Vec<Option<OnLost>> {
        let mut map = self.map();
        let mut gone = Vec::new();
        for (key, token) in sent {
            let Some(l) = map.get_mut(&key).filter(|l| l.token == token) else {
                continue;
            };
            if renewed(&key) {
                l.until = l.until.max(until);
            } else if !l.ending
                && let Some(l) = map.remove(&key)
            {
                gone.push(l.on_lost);
            }
        }
        gone
    }
}

/// Calls what was registered for leases that were lost; returns how many.
fn lost(calls: Vec<Option<OnLost>>) -> usize {
    let n = calls.len();
    for f in calls.into_iter().flatten() {
        f();
    }
    n
}

/// What this node holds leases on: the heartbeat renews these and nothing else,
/// so work whose task ended without a result is left to lapse.
#[derive(Default)]
pub(super) struct Held {
    messages: Leases<uuid::Uuid, u32>,
    lanes: Leases<LaneKey, i64>,
    /// Leases lost so far, and attempts' ends discarded as late (for metrics).
    lost: std::sync::atomic::AtomicU64,
    discarded: std::sync::atomic::AtomicU64,
}

impl Held {
    pub(super) fn hold_message(&self, id: uuid::Uuid, attempt: u32, until: Micros) {
        self.messages.hold(id, attempt, until)
    }

    /// These attempts are over and their ends are being written (see `Lease`).
    pub(super) fn ending(&self, ended: &[(uuid::Uuid, u32)]) {
        for (id, attempt) in ended {
            self.messages.ending(id, *attempt);
        }
    }

    /// Stops renewing these attempts' leases (their ends were written).
    pub(super) fn release(&self, ended: impl IntoIterator<Item = (uuid::Uuid, u32)>) {
        for (id, attempt) in ended {
            self.messages.release(&id, attempt);
        }
    }

    /// Stops renewing these messages, whatever their attempt (given back).
    pub(super) fn release_any(&self, ids: impl IntoIterator<Item = uuid::Uuid>) {
        for id in ids {
            self.messages.release_any(&id);
        }
    }

    pub(super) fn hold_lane(&self, lane: LaneKey, epoch: i64, until: Micros) {
        self.lanes.hold(lane, epoch, until)
    }

    pub(super) fn counts(&self) -> (usize, usize) {
        (self.messages.len(), self.lanes.len())
    }

    /// Counts `n` more leases lost; returns `n`.
    fn count_lost(&self, n: usize) -> usize {
        self.lost
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        n
    }

    pub(super) fn count_discarded(&self, n: usize) {
        self.discarded
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Leases lost and ends discarded so far.
    pub(super) fn losses(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.lost.load(Relaxed), self.discarded.load(Relaxed))
    }
}

fn lane_key(lane: &LaneClaim) -> LaneKey {
    (
        lane.tenant.as_str().to_owned(),
        lane.trigger.as_str().to_owned(),
        lane.lane.clone(),
    )
}

/// How long before a lease lapses on the database this node counts it lost.
/// Nodes' clocks each follow the database's to within `CLOCK_TOLERANCE`, so two
/// may disagree by twice that: the node stops first. Short leases keep a
/// quarter of their length for the renewals.
pub fn fence_margin(lease: Duration) -> Duration {
    let clocks = Duration::from_micros(2 * super::connect::CLOCK_TOLERANCE as u64);
    (clocks + lease / 10).min(lease / 4)
}

/// Renews this node's leases on the attempts it runs. Served by the UNIQUE
/// index on id. A lease that lapsed is not renewed, even if no node took the
/// message over: its holder has stopped working under it.
pub(super) const RENEW_MESSAGES: &str = "UPDATE messages m SET lease_until = $2
     FROM unnest($3::uuid[], $4::int4[]) AS u(id, attempt)
     WHERE m.id = u.id AND m.holder = $1 AND m.attempts = u.attempt AND m.status = 'running'
       AND m.lease_until >= $5
     RETURNING m.id";

/// Renews this node's lanes at their epochs. Served by the lanes primary key.
/// Rows are locked in key order, as enqueues lock them: in any other order the
/// two can deadlock.
const RENEW_LANES: &str = "WITH k AS (
        SELECT l.tenant, l.trigger, l.lane FROM lanes l
        JOIN unnest($3::text[], $4::text[], $5::text[], $6::int8[]) AS u(t, g, n, e)
          ON l.tenant = u.t AND l.trigger = u.g AND l.lane = u.n AND l.epoch = u.e
        WHERE l.holder = $1 AND l.lease_until >= $7
        ORDER BY 1, 2, 3 FOR UPDATE OF l)
     UPDATE lanes l SET lease_until = $2 FROM k
     WHERE l.tenant = k.tenant AND l.trigger = k.trigger AND l.lane = k.lane
     RETURNING l.tenant, l.trigger, l.lane";

impl PgStore {
    fn margin_us(&self) -> Micros {
        fence_margin(self.lease).as_micros() as Micros
    }

    /// Whether this node holds the message at `attempt` under a live lease; if
    /// so `on_lost` is called when that lease is lost. Work starts only then.
    pub fn guard_message(
        &self,
        id: MessageId,
        attempt: u32,
        on_lost: impl FnOnce() + Send + 'static,
    ) -> bool {
        let (now, margin) = (self.now(), self.margin_us());
        self.held
            .messages
            .guard(&id.as_uuid(), attempt, now, margin, Box::new(on_lost))
            .is_ok()
    }

    /// Whether this node still holds the message at `attempt` under a live lease.
    pub fn message_live(&self, id: MessageId, attempt: u32) -> bool {
        self.held
            .messages
            .live(&id.as_uuid(), attempt, self.now(), self.margin_us())
    }

    /// As `guard_message`, for a claimed lane.
    pub fn guard_lane(&self, lane: &LaneClaim, on_lost: impl FnOnce() + Send + 'static) -> bool {
        let (now, margin) = (self.now(), self.margin_us());
        self.held
            .lanes
            .guard(&lane_key(lane), lane.epoch, now, margin, Box::new(on_lost))
            .is_ok()
    }

    /// Whether this node still holds the lane at its epoch under a live lease:
    /// its holder checks before each message it runs.
    pub fn lane_live(&self, lane: &LaneClaim) -> bool {
        self.held
            .lanes
            .live(&lane_key(lane), lane.epoch, self.now(), self.margin_us())
    }

    /// Stops renewing a lane's lease (its task ended): it lapses unless released.
    pub fn forget_lane(&self, lane: &LaneClaim) {
        self.held.lanes.release(&lane_key(lane), lane.epoch);
    }

    /// The lane's lease was renewed until `until` (its results were committed).
    pub(super) fn renewed_lane(&self, lane: &LaneClaim, until: Micros) {
        let key = lane_key(lane);
        let sent = vec![(key.clone(), lane.epoch)];
        lost(self.held.lanes.settle(sent, |_| true, until));
    }

    /// Counts as lost every lease that no renewal kept live until `now` (with
    /// the margin); returns how many were lost.
    pub fn expire(&self, now: Micros) -> usize {
        let margin = self.margin_us();
        let n = lost(self.held.messages.expire(now, margin))
            + lost(self.held.lanes.expire(now, margin));
        self.held.count_lost(n)
    }

    /// Renews this node's leases on the attempts and lanes it still works on.
    /// Those the database no longer gives it, and those that lapsed before the
    /// renewal (`expire`), are lost. Returns how many were lost.
    pub async fn heartbeat(&self, now: Micros) -> Result<usize, StoreError> {
        let mut gone = self.expire(now);
        let messages = self.held.messages.snapshot();
        let lanes = self.held.lanes.snapshot();
        if messages.is_empty() && lanes.is_empty() {
            return Ok(gone);
        }
        let until = now + self.lease_us();
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.0).collect();
        let attempts: Vec<i32> = messages.iter().map(|m| m.1 as i32).collect();
        let mut keys: (Vec<String>, Vec<String>, Vec<String>, Vec<i64>) = Default::default();
        for ((t, g, l), e) in &lanes {
            keys.0.push(t.clone());
            keys.1.push(g.clone());
            keys.2.push(l.clone());
            keys.3.push(*e);
        }
        let (renewed_messages, renewed_lanes) = self
            .with(move |store, client| async move {
                let node: &str = &store.node;
                let mut renewed = (std::collections::HashSet::new(), Vec::new());
                if !ids.is_empty() {
                    let stmt = client.prepare_cached(RENEW_MESSAGES).await.map_err(db)?;
                    let rows = client
                        .query(&stmt, &[&node, &until, &ids, &attempts, &now])
                        .await
                        .map_err(db)?;
                    renewed.0 = rows.iter().map(|r| r.get::<_, uuid::Uuid>(0)).collect();
                }
                if !keys.0.is_empty() {
                    let stmt = client.prepare_cached(RENEW_LANES).await.map_err(db)?;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                        [&node, &until, &keys.0, &keys.1, &keys.2, &keys.3, &now];
                    let rows = client.query(&stmt, &params).await.map_err(db)?;
                    renewed.1 = rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect::<Vec<LaneKey>>();
                }
                Ok(renewed)
            })
            .await?;
        let taken_over = lost(self.held.messages.settle(
            messages,
            |id| renewed_messages.contains(id),
            until,
        )) + lost(self.held.lanes.settle(
            lanes,
            |k| renewed_lanes.contains(k),
            until,
        ));
        gone += self.held.count_lost(taken_over);
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counter() -> (Arc<AtomicUsize>, OnLost) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    /// Ending one attempt never stops renewing another attempt of the same message.
    #[test]
    fn leases_are_held_per_attempt() {
        let held = Held::default();
        let id = uuid::Uuid::now_v7();
        held.hold_message(id, 1, 1_000);
        let (first_lost, f) = counter();
        assert!(held.messages.guard(&id, 1, 0, 0, f).is_ok());
        held.hold_message(id, 2, 2_000);
        assert_eq!(
            first_lost.load(Ordering::SeqCst),
            1,
            "a newer attempt takes the lease over"
        );
        held.release([(id, 1)]);
        assert!(held.messages.live(&id, 2, 0, 0), "attempt 2 is still held");
        assert_eq!(held.messages.snapshot(), vec![(id, 2)]);
        held.release([(id, 2)]);
        assert_eq!(held.counts(), (0, 0));
    }

    #[test]
    fn a_lease_is_lost_past_its_end_less_the_margin_or_when_not_renewed() {
        let held = Held::default();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        held.hold_message(a, 1, 1_000);
        held.hold_message(b, 1, 5_000);
        let (a_lost, f) = counter();
        assert!(held.messages.guard(&a, 1, 0, 100, f).is_ok());
        assert!(held.messages.live(&a, 1, 899, 100));
        assert!(!held.messages.live(&a, 1, 900, 100));
        let (_, g) = counter();
        assert!(held.messages.guard(&a, 1, 900, 100, g).is_err());
        assert_eq!(lost(held.messages.expire(900, 100)), 1);
        assert_eq!(a_lost.load(Ordering::SeqCst), 1);

        let (b_lost, f) = counter();
        assert!(held.messages.guard(&b, 1, 0, 100, f).is_ok());
        let sent = held.messages.snapshot();
        assert_eq!(lost(held.messages.settle(sent.clone(), |_| true, 9_000)), 0);
        assert!(held.messages.live(&b, 1, 8_000, 100));
        assert_eq!(lost(held.messages.settle(sent, |_| false, 9_000)), 1);
        assert_eq!(b_lost.load(Ordering::SeqCst), 1);
        assert_eq!(held.counts(), (0, 0));

        // An attempt whose end is being written is no loss, renewed or not.
        held.hold_message(a, 2, 1_000);
        held.ending(&[(a, 2)]);
        assert_eq!(lost(held.messages.expire(5_000, 100)), 0);
        let sent = held.messages.snapshot();
        assert_eq!(lost(held.messages.settle(sent, |_| false, 9_000)), 0);
        held.release([(a, 2)]);
        assert_eq!(held.counts(), (0, 0));
    }

    #[test]
    fn the_margin_covers_two_clocks_and_leaves_short_leases_room() {
        assert_eq!(
            fence_margin(Duration::from_secs(15)),
            Duration::from_millis(2_000)
        );
        assert_eq!(
            fence_margin(Duration::from_secs(3)),
            Duration::from_millis(750)
        );
        assert_eq!(
            fence_margin(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
    }
}
