//! What the shared execution model asks of a store that several nodes share:
//! claims, leases, lane turns and wake-ups. The queue sees only this trait, so
//! that it never names the backend that implements it (today PostgreSQL).

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{MessageId, Micros, NewMessage, TenantName, TriggerKey, TriggerName};

use super::postgres::PgStore;
use super::{
    ClaimedMessage, Completion, Ended, LaneClaim, LaneMessage, PgStats, StoreError, Submitted,
    TenantShares, Wakeup,
};

/// What a shared store's operations answer, once the database has.
pub type Fut<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Each trigger's count of unfinished messages in the shared queue.
pub type Backlogs = Vec<(TenantName, TriggerName, i64)>;

/// A shared store's pool and this node's leases, for `/_metrics`.
pub type SharedStats = PgStats;

/// What one claim took.
pub enum Claimed {
    Messages(Vec<ClaimedMessage>),
    Lanes(Vec<LaneClaim>),
}

/// A store whose work is claimed by the nodes that share it, under leases.
pub trait SharedStore: Send + Sync + 'static {
    /// The time leases and retries are measured in: the database's clock.
    fn now(&self) -> Micros;
    /// How long a lease lasts without renewal.
    fn lease(&self) -> Duration;
    /// Wake-ups from other nodes (work to claim, messages done).
    fn listen(&self) -> mpsc::Receiver<Wakeup>;
    /// Waits until every write sent before it is committed.
    fn flush(&self) -> Fut<'_, ()>;
    /// Reads the database's clock again.
    fn sync_clock(&self) -> Fut<'_, ()>;
    /// This node's pool and leases, for `/_metrics`.
    fn stats(&self) -> SharedStats;

    /// Stores a batch; those marked in `mine` are stored claimed by this node.
    fn enqueue_claiming(&self, batch: &[NewMessage], mine: &[bool]) -> Submitted;
    /// Each trigger's unfinished messages in the shared queue.
    fn backlogs(&self) -> Fut<'_, Backlogs>;
    /// How the given messages ended, for callers waiting on this node.
    fn ended(&self, ids: Vec<MessageId>) -> Fut<'_, Vec<Ended>>;
    /// Frees what lapsed (work of nodes that stopped); returns how much.
    fn reclaim(&self, now: Micros) -> Fut<'_, u64>;
    /// Gives messages this node claimed and did not start back to the queue.
    fn hand_back(&self, ids: Vec<MessageId>) -> Fut<'_, u64>;

    /// Claims up to `limit` pieces of work due at `now` (unordered messages, or
    /// ordered lanes whole), shared among tenants as `shares` says.
    fn claim<'a>(
        &'a self,
        ordered: bool,
        limit: usize,
        now: Micros,
        shares: &'a TenantShares,
    ) -> Fut<'a, Claimed>;
    /// A claimed lane's next messages in acceptance order.
    fn lane_messages<'a>(
        &'a self,
        lane: &'a LaneClaim,
        after_seq: i64,
        limit: usize,
    ) -> Fut<'a, Vec<LaneMessage>>;
    /// Writes a run of a lane's results in one commit, fenced by its epoch;
    /// false when the lane's lease was lost.
    fn commit_lane<'a>(
        &'a self,
        lane: &'a LaneClaim,
        done: Vec<(Completion, Option<u16>)>,
        release: Option<Micros>,
        now: Micros,
    ) -> Fut<'a, bool>;
    /// The failed message holding an ordered lane, if one does.
    fn lane_blocked_by<'a>(
        &'a self,
        key: &'a TriggerKey,
        lane: &'a str,
    ) -> Fut<'a, Option<MessageId>>;
    /// Repairs a lane's count of pending messages; returns what it was off by.
    fn recount_lane<'a>(&'a self, lane: &'a LaneClaim) -> Fut<'a, i64>;
    /// Records an attempt's end; answers whether the store took it.
    fn end_attempt(
        &self,
        c: Completion,
        fail_status: Option<u16>,
    ) -> BoxFuture<'_, oneshot::Receiver<bool>>;

    /// Whether this node holds the message's attempt under a live lease; if so
    /// `on_lost` is called when that lease is lost.
    fn guard_message(&self, id: MessageId, attempt: u32, on_lost: Box<dyn FnOnce() + Send>)
    -> bool;
    /// As `guard_message`, for a claimed lane.
    fn guard_lane(&self, lane: &LaneClaim, on_lost: Box<dyn FnOnce() + Send>) -> bool;
    /// Whether this node still holds the lane under a live lease.
    fn lane_live(&self, lane: &LaneClaim) -> bool;
    /// Stops renewing a lane's lease.
    fn forget_lane(&self, lane: &LaneClaim);
    /// Renews this node's leases; returns how many were lost.
    fn heartbeat(&self, now: Micros) -> Fut<'_, usize>;
    /// Counts leases no renewal kept live until `now` as lost; returns how many.
    fn expire(&self, now: Micros) -> usize;
}

impl SharedStore for PgStore {
    fn now(&self) -> Micros {
        PgStore::now(self)
    }
    fn lease(&self) -> Duration {
        PgStore::lease(self)
    }
    fn listen(&self) -> mpsc::Receiver<Wakeup> {
        PgStore::listen(self)
    }
    fn flush(&self) -> Fut<'_, ()> {
        Box::pin(PgStore::flush(self))
    }
    fn sync_clock(&self) -> Fut<'_, ()> {
        Box::pin(PgStore::sync_clock(self))
    }
    fn stats(&self) -> SharedStats {
        PgStore::stats(self)
    }
    fn enqueue_claiming(&self, batch: &[NewMessage], mine: &[bool]) -> Submitted {
        Box::pin(PgStore::enqueue_claiming(self, batch, mine))
    }
    fn backlogs(&self) -> Fut<'_, Backlogs> {
        Box::pin(PgStore::backlogs(self))
    }
    fn ended(&self, ids: Vec<MessageId>) -> Fut<'_, Vec<Ended>> {
        Box::pin(PgStore::ended(self, ids))
    }
    fn reclaim(&self, now: Micros) -> Fut<'_, u64> {
        Box::pin(PgStore::reclaim(self, now))
    }
    fn hand_back(&self, ids: Vec<MessageId>) -> Fut<'_, u64> {
        Box::pin(PgStore::hand_back(self, ids))
    }
    fn claim<'a>(
        &'a self,
        ordered: bool,
        limit: usize,
        now: Micros,
        shares: &'a TenantShares,
    ) -> Fut<'a, Claimed> {
        Box::pin(async move {
            Ok(if ordered {
                Claimed::Lanes(self.claim(limit, now, shares).await?)
            } else {
                Claimed::Messages(self.claim(limit, now, shares).await?)
            })
        })
    }
    fn lane_messages<'a>(
        &'a self,
        lane: &'a LaneClaim,
        after_seq: i64,
        limit: usize,
    ) -> Fut<'a, Vec<LaneMessage>> {
        Box::pin(PgStore::lane_messages(self, lane, after_seq, limit))
    }
    fn commit_lane<'a>(
        &'a self,
        lane: &'a LaneClaim,
        done: Vec<(Completion, Option<u16>)>,
        release: Option<Micros>,
        now: Micros,
    ) -> Fut<'a, bool> {
        Box::pin(PgStore::commit_lane(self, lane, done, release, now))
    }
    fn lane_blocked_by<'a>(
        &'a self,
        key: &'a TriggerKey,
        lane: &'a str,
    ) -> Fut<'a, Option<MessageId>> {
        Box::pin(PgStore::lane_blocked_by(self, key, lane))
    }
    fn recount_lane<'a>(&'a self, lane: &'a LaneClaim) -> Fut<'a, i64> {
        Box::pin(PgStore::recount_lane(self, lane))
    }
    fn end_attempt(
        &self,
        c: Completion,
        fail_status: Option<u16>,
    ) -> BoxFuture<'_, oneshot::Receiver<bool>> {
        Box::pin(PgStore::end_attempt(self, c, fail_status))
    }
    fn guard_message(
        &self,
        id: MessageId,
        attempt: u32,
        on_lost: Box<dyn FnOnce() + Send>,
    ) -> bool {
        PgStore::guard_message(self, id, attempt, on_lost)
    }
    fn guard_lane(&self, lane: &LaneClaim, on_lost: Box<dyn FnOnce() + Send>) -> bool {
        PgStore::guard_lane(self, lane, on_lost)
    }
    fn lane_live(&self, lane: &LaneClaim) -> bool {
        PgStore::lane_live(self, lane)
    }
    fn forget_lane(&self, lane: &LaneClaim) {
        PgStore::forget_lane(self, lane)
    }
    fn heartbeat(&self, now: Micros) -> Fut<'_, usize> {
        Box::pin(PgStore::heartbeat(self, now))
    }
    fn expire(&self, now: Micros) -> usize {
        PgStore::expire(self, now)
    }
}
