//! Runs stored messages: lanes for ordered triggers (one message at a time, in
//! acceptance order, holding the lane through retries), a concurrency limit per
//! trigger, the retry schedule, and the per-trigger backlog used for admission.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::{
    AttemptRecord, MessageId, MessageStatus, Micros, Mode, NewMessage, Outcome, RunMeta, TriggerKey,
};
use crate::engine::{self, ExecError, Executor};
use crate::events::Events;
use crate::flow::{OnExhausted, SharedCatalog, Trigger};
use crate::ops::metrics::{ExecOutcome, Metrics};
use crate::store::{Completion, PendingMessage, Store};

use super::waiters::{WaitOutcome, Waiters};

/// A message the dispatcher holds until it is finished.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: MessageId,
    pub key: TriggerKey,
    pub lane: Option<String>,
    pub mode: Mode,
    pub attempts: u32,
    pub run_at: Micros,
    /// `Err`: the stored input cannot be read back; the attempt fails saying so.
    pub input: Result<Arc<Value>, crate::store::Unreadable>,
    /// On a shared store, the epoch of the lane claim it runs under.
    pub lane_epoch: i64,
}

impl Job {
    pub fn new(m: NewMessage) -> Self {
        Self {
            id: m.id,
            key: TriggerKey {
                tenant: m.tenant,
                trigger: m.trigger,
            },
            lane: m.lane,
            mode: m.mode,
            attempts: 0,
            run_at: m.received_at,
            input: Ok(Arc::new(m.input)),
            lane_epoch: 0,
        }
    }

    fn recovered(p: PendingMessage) -> Self {
        Self {
            id: p.id,
            key: TriggerKey {
                tenant: p.tenant,
                trigger: p.trigger,
            },
            lane: p.lane,
            mode: p.mode,
            attempts: p.attempts,
            run_at: p.run_at,
            input: p.input.map(Arc::new),
            lane_epoch: 0,
        }
    }
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Job>,
    active: bool,
    /// A finished message that failed and holds the lane (`on_exhausted: block`).
    blocked_by: Option<MessageId>,
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

/// How an attempt ended for the dispatcher.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttemptEnd {
    Done {
        blocking: bool,
    },
    RetryAt(Micros),
    /// Stopped from outside (its lease was lost, or the node is stopping): not
    /// a result of the flow. Nothing is written; the message runs again.
    Stopped(engine::StopReason),
}

/// An attempt that ran: its record, what comes next, and what a waiting caller
/// is told once the record is written (then `Dispatcher::announce` tells the
/// subscribers).
pub(crate) struct Attempted {
    pub completion: Completion,
    pub end: AttemptEnd,
    pub wake: Option<WaitOutcome>,
}

pub struct Dispatcher {
    store: Store,
    catalog: SharedCatalog,
    triggers: Mutex<HashMap<TriggerKey, Arc<TriggerState>>>,
    waiters: Waiters,
    max_backlog: usize,
    /// Where executions run (pushes come from the enqueuer's own thread).
    runtime: tokio::runtime::Handle,
    /// Set when executions are claimed from a shared store: a stored message is
    /// not run here on push; the claimer is woken instead.
    claimed: std::sync::OnceLock<Arc<super::claimer::Wake>>,
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
    pub fn new(
        store: Store,
        catalog: SharedCatalog,
        max_backlog: usize,
        runtime: tokio::runtime::Handle,
        executor: Executor,
        tenant_max: usize,
    ) -> Self {
        let events = Events::start(store.clone(), catalog.clone());
        Self {
            store,
            catalog,
            triggers: Mutex::new(HashMap::new()),
            waiters: Waiters::default(),
            max_backlog,
            runtime,
            claimed: std::sync::OnceLock::new(),
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

    /// Metrics and events of an execution that did not go through the queue.
    pub fn executed_sync(&self, key: &TriggerKey, c: &Completion) {
        let outcome = match c.outcome {
            Outcome::Succeeded => ExecOutcome::Succeeded,
            _ => ExecOutcome::Failed,
        };
        self.metrics
            .trigger(key.tenant.as_str(), key.trigger.as_str())
            .executed(outcome, c.finished_at - c.started_at);
        self.events.message_finished(key, c.id, c.status);
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

    /// From now on executions are claimed from the store by a claimer woken by `wake`.
    pub(crate) fn claim_from_store(&self, wake: Arc<super::claimer::Wake>) {
        let _ = self.claimed.set(wake);
    }

    /// Whether executions are claimed from a shared store (lanes live there).
    pub fn shared(&self) -> bool {
        self.claimed.get().is_some()
    }

    /// Which of these accepted messages this node runs itself (`Store::submit`'s
    /// `mine`): with a shared store, unordered ones while it holds fewer than its
    /// share; otherwise none is marked, as every message runs here anyway.
    pub fn claims(&self, messages: &[NewMessage]) -> Vec<bool> {
        let Some(wake) = self.claimed.get() else {
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
        if let (Some(wake), true) = (self.claimed.get(), n > 0) {
            wake.unreserve(n);
        }
    }

    /// The claimer's side of this node, with a shared store.
    pub(crate) fn claimer(&self) -> Option<&Arc<super::claimer::Wake>> {
        self.claimed.get()
    }

    /// Hands over a message stored claimed by this node (see `claims`).
    pub fn push_claimed(self: &Arc<Self>, job: Job) {
        let Some(wake) = self.claimed.get() else {
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
        if let Some(wake) = self.claimed.get() {
            // Any node may run it.
            self.count_as_shared(&job.key);
            wake.work(job.lane.is_some());
            return;
        }
        match job.lane.clone() {
            None => {
                let this = self.clone();
                self.runtime
                    .spawn(async move { this.run_unordered(job).await });
            }
            Some(lane) => {
                let s = self.state(&job.key);
                let start = {
                    let mut lanes = lock(&s.lanes);
                    let l = lanes.entry(lane.clone()).or_default();
                    l.queue.push_back(job.clone());
                    let start = !l.active && l.blocked_by.is_none();
                    if start {
                        l.active = true;
                    }
                    start
                };
                if start {
                    let this = self.clone();
                    self.runtime
                        .spawn(async move { this.run_lane(job.key, lane).await });
                }
            }
        }
    }

    /// After a restart: every unfinished message, in acceptance order.
    pub fn recover(self: &Arc<Self>, pending: Vec<PendingMessage>) {
        for p in pending {
            let key = TriggerKey {
                tenant: p.tenant.clone(),
                trigger: p.trigger.clone(),
            };
            if p.blocking {
                if let Some(lane) = &p.lane {
                    let s = self.state(&key);
                    lock(&s.lanes).entry(lane.clone()).or_default().blocked_by = Some(p.id);
                }
                continue;
            }
            self.state(&key).backlog.fetch_add(1, Ordering::AcqRel);
            self.push(Job::recovered(p));
        }
    }

    /// Whether the lane of an ordered trigger is held by a failed message.
    pub fn blocked_by(&self, key: &TriggerKey, lane: &str) -> Option<MessageId> {
        let s = self.state(key);
        let lanes = lock(&s.lanes);
        lanes.get(lane).and_then(|l| l.blocked_by)
    }

    /// An operator let go of a blocked lane: it runs again, `front` (a replay of
    /// the blocking message) first. The job's backlog place must be taken.
    pub fn unblock(self: &Arc<Self>, key: &TriggerKey, lane: &str, front: Option<Job>) {
        if let Some(wake) = self.claimed.get() {
            // The store let go of the lane (and put `front` at its head): any
            // node's claimer takes it up; here only the backlog place is returned.
            if front.is_some() {
                self.release(key);
            }
            wake.work(true);
            return;
        }
        let s = self.state(key);
        let start = {
            let mut lanes = lock(&s.lanes);
            let l = lanes.entry(lane.to_owned()).or_default();
            l.blocked_by = None;
            if let Some(job) = front {
                l.queue.push_front(job);
            }
            let start = !l.active && !l.queue.is_empty();
            if start {
                l.active = true;
            }
            start
        };
        if start {
            let this = self.clone();
            let (key, lane) = (key.clone(), lane.to_owned());
            tokio::spawn(async move { this.run_lane(key, lane).await });
        }
    }

    async fn run_unordered(self: Arc<Self>, mut job: Job) {
        loop {
            sleep_until(job.run_at, self.store.now()).await;
            let concurrency = self.trigger(&job.key).map_or(1, |t| t.delivery.concurrency);
            let permit = self.permit(&job.key, concurrency).await;
            let end = self.attempt(&mut job).await;
            drop(permit);
            match end {
                AttemptEnd::Done { .. } | AttemptEnd::Stopped(_) => break,
                AttemptEnd::RetryAt(at) => job.run_at = at,
            }
        }
        self.release(&job.key);
    }

    async fn run_lane(self: Arc<Self>, key: TriggerKey, lane: String) {
        let state = self.state(&key);
        loop {
            let next = {
                let mut lanes = lock(&state.lanes);
                let Some(l) = lanes.get_mut(&lane) else {
                    return;
                };
                match l.queue.pop_front() {
                    Some(job) => job,
                    None => {
                        l.active = false;
                        if l.blocked_by.is_none() {
                            lanes.remove(&lane);
                        }
                        return;
                    }
                }
            };
            let mut job = next;
            let blocking = loop {
                sleep_until(job.run_at, self.store.now()).await;
                let concurrency = self.trigger(&key).map_or(1, |t| t.delivery.concurrency);
                let permit = self.permit(&key, concurrency).await;
                let end = self.attempt(&mut job).await;
                drop(permit);
                match end {
                    AttemptEnd::Done { blocking } => break blocking,
                    AttemptEnd::RetryAt(at) => job.run_at = at,
                    // The process is stopping: the lane waits for the next start.
                    AttemptEnd::Stopped(_) => return,
                }
            };
            self.release(&key);
            if blocking {
                let mut lanes = lock(&state.lanes);
                if let Some(l) = lanes.get_mut(&lane) {
                    l.blocked_by = Some(job.id);
                    l.active = false;
                }
                tracing::warn!(trigger = %key, lane, message = %job.id, "ordered lane blocked by a failed message");
                self.events.lane_blocked(&key, job.id);
                return;
            }
        }
    }

    pub(crate) fn trigger(&self, key: &TriggerKey) -> Option<Arc<Trigger>> {
        self.catalog
            .get()
            .trigger(key.tenant.as_str(), key.trigger.as_str())
            .cloned()
    }

    /// One attempt: run the flow, record it, decide what comes next. The
    /// message is marked running once it has its tenant's place.
    async fn attempt(&self, job: &mut Job) -> AttemptEnd {
        let slot = self.running_slot(job.key.tenant.as_str()).await;
        let started_at = self.store.now();
        self.store
            .started(
                job.id,
                AttemptRecord {
                    number: job.attempts + 1,
                    started_at,
                    finished_at: None,
                    outcome: None,
                    error: None,
                    error_code: None,
                },
            )
            .await;
        let done = self
            .run_attempt_in(job, started_at, &engine::Stop::new(), slot)
            .await;
        if let AttemptEnd::Stopped(_) = done.end {
            // Left running: recovery at the next start runs it again.
            return done.end;
        }
        let (id, status) = (done.completion.id, done.completion.status);
        self.store.finished(done.completion).await;
        self.announce(&job.key, id, status);
        if let Some(w) = done.wake {
            self.waiters.notify(job.id, w);
        }
        done.end
    }

    /// Tells the subscribers that a message finished, once its end was written.
    pub(crate) fn announce(&self, key: &TriggerKey, id: MessageId, status: MessageStatus) {
        if status.is_final() {
            self.events.message_finished(key, id, status);
        }
    }

    /// Runs the flow for the job's next attempt (counting it) and decides what
    /// comes next; the caller records the completion, then wakes a waiting caller
    /// with `wake`.
    pub(crate) async fn run_attempt(
        &self,
        job: &mut Job,
        started_at: Micros,
        stop: &engine::Stop,
    ) -> Attempted {
        self.run_attempt_in(job, started_at, stop, None).await
    }

    /// As `run_attempt`, in the tenant's place `slot` when one is held already
    /// (else it waits for one).
    async fn run_attempt_in(
        &self,
        job: &mut Job,
        started_at: Micros,
        stop: &engine::Stop,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Attempted {
        let trigger = self.trigger(&job.key);
        job.attempts += 1;
        let number = job.attempts;
        let waiting = self.waiters.has(job.id);
        let meta = RunMeta {
            message_id: job.id,
            attempt: number,
            // A lane changes hands on the embedded store only when it restarts.
            lane: job.lane.clone().map(|lane| {
                let epoch = if self.shared() {
                    job.lane_epoch
                } else {
                    self.store.generation()
                };
                (lane, epoch)
            }),
        };
        let (result, response, trace) = match (&trigger, &job.input) {
            (Some(t), Ok(input)) => {
                // A stop while waiting for a place: the engine answers it at once.
                let _running = match slot {
                    Some(s) => Some(s),
                    None => tokio::select! {
                        biased;
                        _ = stop.stopped() => None,
                        slot = self.running_slot(job.key.tenant.as_str()) => slot,
                    },
                };
                let ex = self
                    .executor
                    .execute_with(t, input, Some(&meta), None, stop)
                    .await;
                let trace = ex.trace_text();
                (ex.result, ex.response, trace)
            }
            // Running it on anything but its input would be wrong, and so
            // would every later attempt.
            (Some(_), Err(why)) => (
                Err(ExecError::Refused {
                    step: "-".into(),
                    message: why.to_string(),
                }),
                None,
                "[]".to_owned(),
            ),
            (None, _) => (
                Err(ExecError::Step {
                    step: "-".into(),
                    message: format!("trigger {} is not loaded", job.key),
                }),
                None,
                "[]".to_owned(),
            ),
        };
        let stopped = match &result {
            Err(ExecError::Stopped { reason, .. }) => Some(*reason),
            _ => None,
        };
        // A waiting caller hears of the response only once the record is on its
        // way to the store (the caller of this records, then wakes), so that a
        // repeat of its Idempotency-Key finds the message finished.
        let responded = response
            .as_ref()
            .filter(|_| waiting)
            .map(|r| WaitOutcome::Responded(r.clone()));
        let finished_at = self.store.now();
        let m = self
            .metrics
            .trigger(job.key.tenant.as_str(), job.key.trigger.as_str());
        m.queue_wait.observe_us(started_at - job.run_at);
        let outcome = if result.is_ok() {
            ExecOutcome::Succeeded
        } else {
            ExecOutcome::Failed
        };
        if stopped.is_none() {
            m.executed(outcome, finished_at - started_at);
        }
        let retry: Vec<Duration> = trigger
            .as_ref()
            .map(|t| t.delivery.retry.clone())
            .unwrap_or_else(|| crate::flow::compile::DEFAULT_RETRY.to_vec());
        let on_exhausted = trigger
            .as_ref()
            .map_or(OnExhausted::Block, |t| t.delivery.on_exhausted);
        let (status, run_at) = match &result {
            Ok(()) => (MessageStatus::Succeeded, finished_at),
            Err(e) if job.mode == Mode::Sync || !e.retryable() => {
                (MessageStatus::Failed, finished_at)
            }
            Err(_) => match retry.get(number as usize - 1) {
                Some(delay) => (
                    MessageStatus::Retrying,
                    finished_at + delay.as_micros() as i64,
                ),
                None => (MessageStatus::Dead, finished_at),
            },
        };
        let blocking = job.lane.is_some()
            && status.is_final()
            && status != MessageStatus::Succeeded
            && on_exhausted == OnExhausted::Block;
        if let Err(e) = &result
            && stopped.is_none()
        {
            tracing::info!(trigger = %job.key, message = %job.id, attempt = number, status = status.as_str(), error = %e, "execution failed");
        }
        let completion = Completion {
            id: job.id,
            attempt: number,
            started_at,
            finished_at,
            outcome: if result.is_ok() {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
            status,
            run_at,
            blocking,
            response,
            trace,
            error: result.as_ref().err().map(ToString::to_string),
            error_code: result.as_ref().err().map(ExecError::code),
        };
        if let Some(reason) = stopped {
            Attempted {
                completion,
                end: AttemptEnd::Stopped(reason),
                wake: None,
            }
        } else if status.is_final() {
            Attempted {
                completion,
                end: AttemptEnd::Done { blocking },
                wake: responded.or(Some(WaitOutcome::Finished {
                    status,
                    error: result.err(),
                })),
            }
        } else {
            Attempted {
                completion,
                end: AttemptEnd::RetryAt(run_at),
                wake: responded,
            }
        }
    }
}

async fn sleep_until(at: Micros, now: Micros) {
    let wait = at - now;
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
}
