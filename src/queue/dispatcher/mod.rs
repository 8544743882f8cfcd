//! Runs stored messages: a concurrency limit per trigger, each tenant's running
//! places, the per-trigger backlog used for admission, and one attempt's
//! result (the retry schedule). What is pushed runs here (the embedded model,
//! `embedded`) or wakes the shared model's claimer, through a handle made with
//! the model (`Runs`).

mod attempt;
mod by_hand;
mod embedded;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::{NewMessage, TriggerKey};
use crate::engine::Executor;
use crate::events::Events;
use crate::flow::{SharedCatalog, Trigger};
use crate::ops::metrics::{ExecOutcome, Metrics};
use crate::store::{Completion, Store};

pub use super::job::Job;
use super::waiters::Waiters;
use super::wake::Wake;
use embedded::Lane;

/// How the dispatcher runs what is pushed to it, as the execution model says.
pub(crate) enum Runs {
    /// Here, each message at its time (embedded model).
    Here,
    /// Here, each message once `run_due` reaches its time (embedded model
    /// stepped by hand, for tests).
    ByHand,
    /// Claimed from the shared store: the claimer is woken through the handle.
    Claimed(Arc<Wake>),
}

/// Per-trigger state on this node.
pub struct TriggerState {
    backlog: AtomicUsize,
    /// On a shared store: the trigger's unfinished messages in the shared queue
    /// at the last count, plus those this node accepted since (approximate).
    shared: AtomicUsize,
    limit: Mutex<(usize, Arc<Semaphore>)>,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl TriggerState {
    fn new() -> Self {
        Self {
            backlog: AtomicUsize::new(0),
            shared: AtomicUsize::new(0),
            limit: Mutex::new((0, Arc::new(Semaphore::new(0)))),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Lanes of this trigger held by a failed message on this node.
    pub fn blocked_lanes(&self) -> usize {
        lock(&self.lanes)
            .values()
            .filter(|l| l.blocked_by.is_some())
            .count()
    }
}

pub struct Dispatcher {
    store: Store,
    catalog: SharedCatalog,
    triggers: Mutex<HashMap<TriggerKey, Arc<TriggerState>>>,
    waiters: Waiters,
    max_backlog: usize,
    /// Where executions run (pushes come from the enqueuer's own thread).
    runtime: tokio::runtime::Handle,
    /// With the shared execution model: a stored message is not run here on
    /// push; the claimer is woken through this instead.
    shared: Option<Arc<Wake>>,
    /// Stepped by hand: messages wait for `run_due` instead of the clock.
    hand: Option<Arc<by_hand::Hand>>,
    metrics: Arc<Metrics>,
    events: Events,
    executor: Executor,
    /// Per tenant: its executions running at once from the queue on this node
    /// (`tenant_max_running`), so that one tenant's backlog leaves room for others.
    running: Mutex<HashMap<String, Arc<Semaphore>>>,
    tenant_max: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        catalog: SharedCatalog,
        max_backlog: usize,
        runtime: tokio::runtime::Handle,
        executor: Executor,
        tenant_max: usize,
        runs: Runs,
    ) -> Self {
        let events = Events::start(store.clone(), catalog.clone());
        let (shared, hand) = match runs {
            Runs::Here => (None, None),
            Runs::ByHand => (None, Some(Arc::default())),
            Runs::Claimed(wake) => (Some(wake), None),
        };
        Self {
            store,
            catalog,
            triggers: Mutex::new(HashMap::new()),
            waiters: Waiters::default(),
            max_backlog,
            runtime,
            shared,
            hand,
            metrics: Arc::new(Metrics::default()),
            events,
            executor,
            running: Mutex::new(HashMap::new()),
            tenant_max: tenant_max.max(1),
        }
    }

    /// `tenant_max_running`: a tenant's executions running at once here.
    pub fn tenant_max(&self) -> usize {
        self.tenant_max
    }

    /// What executions run on (jq workers, default budgets).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// A place among `tenant`'s executions running from the queue; waits while
    /// the tenant has `tenant_max_running` of them.
    async fn running_slot(&self, tenant: &str) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut running = lock(&self.running);
            match running.get(tenant) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(Semaphore::new(self.tenant_max));
                    running.insert(tenant.to_owned(), s.clone());
                    s
                }
            }
        };
        sem.acquire_owned().await.ok()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The triggers seen on this node and their state.
    pub fn states(&self) -> Vec<(TriggerKey, Arc<TriggerState>)> {
        lock(&self.triggers)
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Metrics of an execution that did not go through the queue.
    pub fn executed_sync(&self, key: &TriggerKey, c: &Completion) {
        self.metrics
            .trigger(key.tenant.as_str(), key.trigger.as_str())
            .executed(ExecOutcome::of(c.status), c.finished_at - c.started_at);
    }

    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    pub fn state(&self, key: &TriggerKey) -> Arc<TriggerState> {
        let mut t = lock(&self.triggers);
        if let Some(s) = t.get(key) {
            return s.clone();
        }
        let s = Arc::new(TriggerState::new());
        t.insert(key.clone(), s.clone());
        s
    }

    /// Takes a place in the trigger's backlog, or refuses when it is full.
    pub fn reserve(&self, key: &TriggerKey) -> bool {
        let s = self.state(key);
        let shared = s.shared.load(Ordering::Relaxed);
        let mut current = s.backlog.load(Ordering::Relaxed);
        loop {
            if current + shared >= self.max_backlog {
                return false;
            }
            match s.backlog.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    pub fn release(&self, key: &TriggerKey) {
        let s = self.state(key);
        let _ = s
            .backlog
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// A permit to execute one message of `trigger` (its `concurrency`).
    pub async fn permit(
        &self,
        key: &TriggerKey,
        concurrency: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let s = self.state(key);
            let mut limit = lock(&s.limit);
            if limit.0 != concurrency {
                // A reload changed the limit: new executions use a new semaphore.
                *limit = (concurrency, Arc::new(Semaphore::new(concurrency)));
            }
            limit.1.clone()
        };
        sem.acquire_owned().await.ok()
    }

    /// Sets each trigger's count of unfinished messages in the shared queue
    /// (triggers not listed have none).
    pub(crate) fn set_shared_backlogs(&self, counts: &HashMap<TriggerKey, usize>) {
        for (key, s) in lock(&self.triggers).iter() {
            let n = counts.get(key).copied().unwrap_or(0);
            s.shared.store(n, Ordering::Relaxed);
        }
        for (key, n) in counts {
            self.state(key).shared.store(*n, Ordering::Relaxed);
        }
    }

    /// Which of these accepted messages this node runs itself (`Store::submit`'s
    /// `mine`): with a shared store, unordered ones while it holds fewer than its
    /// share; otherwise none is marked, as every message runs here anyway.
    pub fn claims(&self, messages: &[NewMessage]) -> Vec<bool> {
        let Some(wake) = self.shared.as_ref() else {
            return Vec::new();
        };
        let mut room = wake.reserve(messages.iter().filter(|m| m.lane.is_none()).count());
        messages
            .iter()
            .map(|m| {
                let mine = m.lane.is_none() && room > 0;
                room -= usize::from(mine);
                mine
            })
            .collect()
    }

    /// Gives back what `claims` reserved for `n` messages that were not stored.
    pub fn unclaim(&self, n: usize) {
        if let (Some(wake), true) = (self.shared.as_ref(), n > 0) {
            wake.unreserve(n);
        }
    }

    /// Hands over a message stored claimed by this node (see `claims`).
    pub fn push_claimed(self: &Arc<Self>, job: Job) {
        let Some(wake) = self.shared.as_ref() else {
            return self.push(job);
        };
        self.count_as_shared(&job.key);
        wake.run_here(job);
    }

    /// A message stored in the shared queue leaves this node's backlog and counts
    /// in the shared one (as the store's next count will).
    fn count_as_shared(&self, key: &TriggerKey) {
        self.release(key);
        self.state(key).shared.fetch_add(1, Ordering::AcqRel);
    }

    /// Hands a stored message over for execution. Its backlog place is already taken.
    pub fn push(self: &Arc<Self>, job: Job) {
        if let Some(wake) = self.shared.as_ref() {
            // Any node may run it.
            self.count_as_shared(&job.key);
            wake.work(job.lane.is_some());
            return;
        }
        self.push_here(job);
    }

    pub(crate) fn trigger(&self, key: &TriggerKey) -> Option<Arc<Trigger>> {
        self.catalog
            .get()
            .trigger(key.tenant.as_str(), key.trigger.as_str())
            .cloned()
    }

    /// After an end was sent to the store: when it carried events, the
    /// fan-out takes them once they are committed.
    pub(crate) fn announce(&self, eventful: bool) {
        if eventful {
            self.events.sent();
        }
    }

    /// An operator let go of a blocked lane: it runs again, `front` (a replay of
    /// the blocking message) first. The job's backlog place must be taken.
    pub fn unblock(self: &Arc<Self>, key: &TriggerKey, lane: &str, front: Option<Job>) {
        if let Some(wake) = self.shared.as_ref() {
            // The store let go of the lane (and put `front` at its head): any
            // node's claimer takes it up; here only the backlog place is returned.
            if front.is_some() {
                self.release(key);
            }
            wake.work(true);
            return;
        }
        self.unblock_here(key, lane, front)
    }
}
