//! The queue's two execution models behind one interface, chosen once in
//! `startup` from the store it opened:
//!
//! - **Embedded**: one node. Every message accepted here runs here; lanes,
//!   retries and blocked lanes live in this process and are rebuilt from the
//!   store at each start.
//! - **Shared**: several nodes on one store. Work is claimed from the store
//!   under leases (see `claimer`); lanes and blocked lanes live in the store.
//!
//! The rest of the queue asks the model, never which store it runs on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::{AttemptRecord, NewMessage, now_micros};
use crate::engine;
use crate::store::{SharedStats, SharedStore, Store, StoreError};

use super::claimer;
use super::dispatcher::{Dispatcher, Runs};
use super::job::Job;
use super::wake::Wake;

/// Batches handed to the shared store and not yet committed: each is a transaction
/// on a connection of its own, so while one waits for its commit the next is
/// written. Outcomes are taken in submission order, so messages reach the
/// dispatcher in acceptance order. Two, not more: with eight in flight most
/// batches held one to three messages, and PostgreSQL spent ~100 µs per message
/// on them against ~30 µs in a batch of twenty. The embedded store takes one
/// batch at a time: everything that arrives while a batch commits goes into the
/// next, and its single writer would otherwise commit (and fsync) smaller
/// batches more often, which measured slower.
const IN_FLIGHT_SHARED: usize = 2;

/// How this node runs the messages it stores.
pub enum Execution {
    /// Every message runs where it was accepted; `by_hand`: each waits for
    /// `Queue::run_due` instead of the clock (tests step time this way).
    Embedded { by_hand: bool },
    /// Work is claimed from a store several nodes share.
    Shared(Shared),
}

/// The shared model: the store, the handle the dispatcher wakes the claimer
/// through, and the claimer until recovery starts it.
pub struct Shared {
    store: Arc<dyn SharedStore>,
    wake: Arc<Wake>,
    claimer: Mutex<Claiming>,
}

/// Where the claimer is in its start.
enum Claiming {
    /// Not made yet: what the dispatcher hands over to run here waits in this.
    Unmade(mpsc::UnboundedReceiver<Job>),
    /// Made, not running before recovery has finished.
    Ready(claimer::Ready),
    Started,
}

impl Execution {
    /// One node: every message runs here.
    pub fn embedded() -> Self {
        Self::Embedded { by_hand: false }
    }

    /// One node whose messages run only when [`crate::queue::Queue::run_due`]
    /// is given a time at or past theirs, with that time as their clock: tests
    /// step the dispatcher with it instead of waiting.
    pub fn embedded_by_hand() -> Self {
        Self::Embedded { by_hand: true }
    }

    /// Several nodes sharing `store`: work is claimed from it.
    pub fn shared(store: Arc<dyn SharedStore>) -> Self {
        let (wake, claimed_here) = Wake::new();
        Self::Shared(Shared {
            store,
            wake: Arc::new(wake),
            claimer: Mutex::new(Claiming::Unmade(claimed_here)),
        })
    }

    /// How the dispatcher runs what is pushed to it: here, or by waking the
    /// claimer through the handle made with the shared model.
    pub(crate) fn runs(&self) -> Runs {
        match self {
            Self::Embedded { by_hand: false } => Runs::Here,
            Self::Embedded { by_hand: true } => Runs::ByHand,
            Self::Shared(s) => Runs::Claimed(s.wake.clone()),
        }
    }

    /// Makes what runs messages besides the dispatcher (the shared model's
    /// claimer); nothing runs before [`Execution::recover`].
    pub(crate) fn prepare(&self, dispatcher: &Arc<Dispatcher>) {
        let Self::Shared(s) = self else {
            return;
        };
        let mut claiming = lock(&s.claimer);
        let state = std::mem::replace(&mut *claiming, Claiming::Started);
        *claiming = match state {
            Claiming::Unmade(here) => Claiming::Ready(claimer::prepare(
                s.store.clone(),
                dispatcher.clone(),
                s.wake.clone(),
                here,
            )),
            other => other,
        };
    }

    /// How many batches the enqueuer may have handed to the store uncommitted.
    pub(crate) fn batches_in_flight(&self) -> usize {
        match self {
            Self::Embedded { .. } => 1,
            Self::Shared(_) => IN_FLIGHT_SHARED,
        }
    }

    /// Whether lanes (and the failed messages blocking them) live in the store,
    /// shared by every node, rather than in this process.
    pub fn lanes_in_store(&self) -> bool {
        matches!(self, Self::Shared(_))
    }

    /// The failed message holding an ordered lane, wherever lanes live.
    pub(crate) async fn lane_blocked_by(
        &self,
        dispatcher: &Dispatcher,
        key: &crate::domain::TriggerKey,
        lane: &str,
    ) -> Result<Option<crate::domain::MessageId>, StoreError> {
        match self {
            Self::Embedded { .. } => Ok(dispatcher.blocked_by(key, lane)),
            Self::Shared(s) => s.store.lane_blocked_by(key, lane).await,
        }
    }

    /// The shared store's pool and this node's leases (for `/_metrics`).
    pub fn store_stats(&self) -> Option<SharedStats> {
        match self {
            Self::Embedded { .. } => None,
            Self::Shared(s) => Some(s.store.stats()),
        }
    }

    /// Re-queues every unfinished message after a restart, then starts
    /// executing: nothing is claimed or run before recovery has finished. On a
    /// shared store only what lapsed is freed (the work of nodes that stopped,
    /// each lane's epoch moved on); this process holds nothing yet, and
    /// recovery never touches its claims.
    pub(crate) async fn recover(
        &self,
        store: &Store,
        dispatcher: &Arc<Dispatcher>,
    ) -> Result<usize, StoreError> {
        match self {
            Self::Embedded { .. } => {
                let pending = store.recover(now_micros()).await?;
                let n = pending.len();
                dispatcher.recover(pending);
                Ok(n)
            }
            Self::Shared(s) => {
                let n = s.store.reclaim(s.store.now()).await? as usize;
                let ready = std::mem::replace(&mut *lock(&s.claimer), Claiming::Started);
                if let Claiming::Ready(ready) = ready {
                    ready.start();
                }
                Ok(n)
            }
        }
    }

    /// As the node stops, with a shared store: it claims nothing more, the
    /// unordered messages it claimed and has not started go back to the shared
    /// queue at once (instead of waiting for their leases to lapse), and the
    /// attempts running here get up to `within` to finish; those that do not are
    /// taken over by other nodes once their leases lapse.
    pub(crate) async fn stop(&self, within: Duration) {
        let Self::Shared(s) = self else {
            return;
        };
        match s.store.hand_back(s.wake.hand_back()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                messages = n,
                "handed unstarted messages back to the shared queue"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand messages back; they run elsewhere once their leases lapse")
            }
        }
        let left = s.wake.until_idle(within).await;
        if left > 0 {
            tracing::warn!(
                attempts = left,
                "stopping with attempts still running; other nodes take them over once their leases lapse"
            );
        }
    }

    /// Stores a sync message whose execution outlives its timeout as running its
    /// first attempt here. On a shared store it is stored claimed by this node, so
    /// no other node runs it meanwhile, and the execution is stopped if the lease
    /// is lost.
    pub(crate) async fn hand_over(
        &self,
        store: &Store,
        message: NewMessage,
        started_at: i64,
        stop: engine::Stop,
    ) -> Result<(), StoreError> {
        let id = message.id;
        if let Self::Shared(s) = self {
            s.store.enqueue_claiming(&[message], &[true]).await?;
            let on_lost = stop.clone();
            if !s.store.guard_message(
                id,
                1,
                Box::new(move || on_lost.stop(engine::StopReason::LeaseLost)),
            ) {
                stop.stop(engine::StopReason::LeaseLost);
            }
            return Ok(());
        }
        store.enqueue(&[message]).await?;
        let attempt = AttemptRecord {
            number: 1,
            started_at,
            finished_at: None,
            outcome: None,
            error: None,
            error_code: None,
        };
        store.started(id, attempt).await;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
