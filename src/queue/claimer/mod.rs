//! Execution for the shared store: work is claimed from PostgreSQL.
//!
//! - An unordered message accepted here is stored already claimed by this node
//!   (up to `HELD_HERE` held at once) and runs here without a claim of its own;
//!   the rest, and what a dead node held, is claimed from the shared queue.
//! - One claim loop per kind of work: unordered messages (up to `MAX_MESSAGES`
//!   running on this node, and each trigger's `concurrency`) and ordered lanes.
//!   While the queue holds more than a node takes, claims wait until a batch's
//!   worth of slots is free: a claim is a commit, and one per message would cost
//!   a WAL flush each.
//! - Ordered lanes are claimed whole: the holder runs the lane's messages one by
//!   one in acceptance order (each marked running, written behind) and writes each
//!   run of results in one commit, so a busy lane drains at many messages per
//!   commit. A retry or a block ends the run and releases the lane; so does a
//!   turn's budget, to share lanes among nodes. A lane claimed with nothing to run
//!   has its count repaired.
//! - Leases are renewed by a heartbeat, per attempt and per lane epoch; a node
//!   that dies loses them after `lease`, and others take its work over. A node
//!   fences itself: a lease whose renewal failed, came late or found it taken
//!   over is lost, and what runs under it is stopped through its [`Stop`]
//!   (nothing is written for it); held work starts only under a live lease, and
//!   a lane's holder checks its lease before each message. A late result that
//!   reaches the store is discarded there.
//! - Wake-ups come by LISTEN/NOTIFY, with a poll every `POLL` as a fallback.
//!   Sync callers waiting here for a message run elsewhere are answered from
//!   the store when its node says it is done (or when a poll finds it done).
//! - Admission: each trigger's unfinished messages in the shared queue are
//!   counted every `BACKLOG_COUNT`, and `max_backlog` applies to that count.
//!
//! [`Stop`]: crate::engine::Stop

mod lane;
mod leases;
mod tenants;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc};

use crate::domain::{MessageId, MessageStatus, Micros, TriggerKey, now_micros};
use crate::engine::{ExecError, Stop, StopReason};
use crate::store::{ClaimedMessage, LaneClaim, PgStore, StoreError, Wakeup};

use super::dispatcher::{AttemptEnd, Dispatcher, Job};

use super::waiters::WaitOutcome;
use lane::fail_status_of as fail_status;

const MAX_MESSAGES: usize = 64;
const CLAIM_BATCH: usize = 32;
const MAX_LANES: usize = 16;
const POLL: Duration = Duration::from_millis(250);
const BACKOFF: Duration = Duration::from_millis(500);
const BACKLOG_COUNT: Duration = Duration::from_secs(1);
/// How often a node reads the database's clock again (see `PgStore::sync_clock`).
const CLOCK_EVERY: Duration = Duration::from_secs(30);

/// The two kinds of work claimed from the shared queue.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Messages,
    Lanes,
}

impl Kind {
    /// How many may run on this node at once.
    fn slots(self) -> usize {
        match self {
            Kind::Messages => MAX_MESSAGES,
            Kind::Lanes => MAX_LANES,
        }
    }

    fn batch(self) -> usize {
        match self {
            Kind::Messages => CLAIM_BATCH,
            Kind::Lanes => MAX_LANES,
        }
    }

    /// Free slots worth a claim while the queue holds more than this node takes.
    fn refill(self) -> usize {
        match self {
            Kind::Messages => CLAIM_BATCH / 2,
            Kind::Lanes => 1,
        }
    }
}

enum Work {
    Message(ClaimedMessage),
    Lane(LaneClaim),
}

/// Unordered messages accepted here that this node may hold at once (stored
/// claimed by it, waiting for a slot or running); more go to the shared queue.
const HELD_HERE: usize = 512;

/// Wakes the claim loops, and hands over the messages this node claimed as it
/// stored them.
pub struct Wake {
    lanes: Notify,
    messages: Notify,
    here: mpsc::UnboundedSender<Job>,
    held_here: AtomicUsize,
    /// Unordered messages this node holds that wait for a slot (not started).
    waiting: std::sync::Mutex<HashSet<MessageId>>,
    /// Set when the node stops: no more claims, waiting messages are handed back.
    stopping: AtomicBool,
    /// Unordered attempts running here, and a signal each time one ends.
    running: AtomicUsize,
    ended: Notify,
}

impl Wake {
    /// Takes the messages that wait here and have not started, and stops claiming:
    /// the node is stopping and gives them back to the shared queue.
    pub fn hand_back(&self) -> Vec<MessageId> {
        self.stopping.store(true, Ordering::Release);
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.drain().collect()
    }

    /// Waits until no unordered attempt runs here, at most `within`; returns how
    /// many still run.
    pub async fn until_idle(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.ended.notified();
            let running = self.running.load(Ordering::Acquire);
            if running == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.running.load(Ordering::Acquire);
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn wait_for_slot(&self, id: MessageId) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    /// Whether a message that waited may start (it was not handed back); if so it
    /// counts as running (under the same lock `hand_back` takes).
    fn start(&self, id: MessageId) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let start = waiting.remove(&id);
        if start {
            self.running.fetch_add(1, Ordering::AcqRel);
        }
        start
    }

    fn end(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }

    /// Reserves room for up to `n` messages accepted here; returns how many fit.
    pub fn reserve(&self, n: usize) -> usize {
        let mut held = self.held_here.load(Ordering::Relaxed);
        loop {
            let take = n.min(HELD_HERE.saturating_sub(held));
            if take == 0 {
                return 0;
            }
            match self.held_here.compare_exchange_weak(
                held,
                held + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => held = now,
            }
        }
    }

    /// Gives back room reserved for messages that were not stored claimed.
    pub fn unreserve(&self, n: usize) {
        self.held_here.fetch_sub(n, Ordering::AcqRel);
    }

    /// Runs a message stored claimed by this node (its room reserved).
    pub fn run_here(&self, job: Job) {
        if let Err(e) = self.here.send(job) {
            // Only when the claimer is gone: the lease lapses and a node takes it over.
            tracing::warn!(message = %e.0.id, "the claimer has stopped; the message waits for its lease to lapse");
            self.unreserve(1);
        }
    }

    pub fn work(&self, ordered: bool) {
        self.of(if ordered { Kind::Lanes } else { Kind::Messages })
            .notify_one();
    }

    fn of(&self, kind: Kind) -> &Notify {
        match kind {
            Kind::Messages => &self.messages,
            Kind::Lanes => &self.lanes,
        }
    }

    fn all(&self) {
        self.lanes.notify_one();
        self.messages.notify_one();
    }
}

struct Claimer {
    store: PgStore,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Wake>,
    /// Each tenant's claimed work on this node (see `claim_cap`).
    load: Arc<tenants::TenantLoad>,
}

/// A claimer made but not yet running: the dispatcher already hands it what it
/// must run (held until it starts), so that startup recovery finishes before
/// anything is claimed or run.
pub struct Ready {
    claimer: Arc<Claimer>,
    claimed_here: mpsc::UnboundedReceiver<Job>,
}

/// Makes the claimer; from now on `dispatcher` wakes it instead of running what
/// is pushed to it. Nothing runs until [`Ready::start`].
pub fn prepare(store: PgStore, dispatcher: Arc<Dispatcher>) -> Ready {
    let (here, claimed_here) = mpsc::unbounded_channel();
    let wake = Arc::new(Wake {
        lanes: Notify::new(),
        messages: Notify::new(),
        here,
        held_here: AtomicUsize::new(0),
        waiting: Default::default(),
        stopping: AtomicBool::new(false),
        running: AtomicUsize::new(0),
        ended: Notify::new(),
    });
    dispatcher.claim_from_store(wake.clone());
    let claimer = Arc::new(Claimer {
        store,
        dispatcher,
        wake,
        load: Default::default(),
    });
    Ready {
        claimer,
        claimed_here,
    }
}

impl Ready {
    /// Starts claiming and running on the current runtime.
    pub fn start(self) {
        let c = self.claimer;
        tokio::spawn(c.clone().run_claimed_here(self.claimed_here));
        tokio::spawn(c.clone().listen());
        tokio::spawn(c.clone().claim_loop(Kind::Messages));
        tokio::spawn(c.clone().claim_loop(Kind::Lanes));
        tokio::spawn(c.clone().heartbeat());
        tokio::spawn(c.clone().watch_leases());
        tokio::spawn(c.clone().follow_clock());
        tokio::spawn(c.clone().count_backlogs());
        tokio::spawn(c.poll_waiters());
    }
}

impl Claimer {
    fn wake_at(self: &Arc<Self>, at: Micros, ordered: bool) {
        let wake = self.wake.clone();
        let wait = (at - self.store.now()).max(0) as u64;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(wait)).await;
            wake.work(ordered);
        });
    }

    async fn listen(self: Arc<Self>) {
        let mut news = self.store.listen();
        while let Some(n) = news.recv().await {
            match n {
                Wakeup::Work => self.wake.all(),
                Wakeup::Done(ids) => {
                    let waiters = self.dispatcher.waiters();
                    let ids: Vec<MessageId> =
                        ids.into_iter().filter(|id| waiters.has(*id)).collect();
                    if !ids.is_empty() {
                        let this = self.clone();
                        tokio::spawn(async move { this.answer(ids).await });
                    }
                }
            }
        }
    }

    /// Tells callers waiting here how their messages (run on any node) ended:
    /// the flow's response, or its `fail` step's status and message.
    async fn answer(&self, ids: Vec<MessageId>) {
        let _ = tokio::time::timeout(self.store.lease(), self.store.flush()).await;
        let Ok(ended) = self.store.ended(ids).await else {
            return;
        };
        for e in ended {
            let outcome = match e.response {
                Some(r) => WaitOutcome::Responded(r),
                None => WaitOutcome::Finished {
                    status: e.status,
                    error: (e.status != MessageStatus::Succeeded).then(|| {
                        ExecError::recorded(
                            e.error_code.as_deref(),
                            e.error.unwrap_or_default(),
                            e.fail_status,
                        )
                    }),
                },
            };
            self.dispatcher.waiters().notify(e.id, outcome);
        }
    }

    async fn poll_waiters(self: Arc<Self>) {
        loop {
            tokio::time::sleep(POLL * 2).await;
            let ids = self.dispatcher.waiters().ids();
            if !ids.is_empty() {
                self.answer(ids).await;
            }
        }
    }

    /// Reads the database's clock now and then, apart from the heartbeat so that
    /// renewing leases never waits on it.
    async fn follow_clock(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CLOCK_EVERY).await;
            if let Err(e) = self.store.sync_clock().await {
                tracing::debug!(error = %e, "reading the database's clock failed");
            }
        }
    }

    /// Keeps each trigger's count of unfinished messages in the shared queue
    /// fresh enough for `max_backlog`.
    async fn count_backlogs(self: Arc<Self>) {
        loop {
            match self.store.backlogs().await {
                Ok(rows) => {
                    let counts: HashMap<TriggerKey, usize> = rows
                        .into_iter()
                        .map(|(tenant, trigger, n)| {
                            (TriggerKey { tenant, trigger }, n.max(0) as usize)
                        })
                        .collect();
                    self.dispatcher.set_shared_backlogs(&counts);
                }
                Err(e) => tracing::debug!(error = %e, "counting the shared backlog failed"),
            }
            tokio::time::sleep(BACKLOG_COUNT).await;
        }
    }

    /// How much of one tenant's work this node claims: its running places
    /// (`tenant_max_running`) and as many again waiting for them, so that a
    /// tenant's backlog keeps its places busy but leaves claim slots to others.
    fn claim_cap(&self) -> usize {
        self.dispatcher.tenant_max().saturating_mul(2)
    }

    async fn claim(&self, kind: Kind, want: usize) -> Result<Vec<Work>, StoreError> {
        let now = self.store.now();
        let shares = self.load.shares(self.claim_cap());
        Ok(match kind {
            Kind::Messages => self
                .store
                .claim_messages_fairly(want, now, &shares)
                .await?
                .into_iter()
                .map(Work::Message)
                .collect(),
            Kind::Lanes => self
                .store
                .claim_lanes_fairly(want, now, &shares)
                .await?
                .into_iter()
                .map(Work::Lane)
                .collect(),
        })
    }

    /// Claims work of one kind while slots are free and runs each piece on a task
    /// of its own; sleeps until woken (by news, a finished piece, or the poll).
    async fn claim_loop(self: Arc<Self>, kind: Kind) {
        let slots = Arc::new(Semaphore::new(kind.slots()));
        // The last claim took all it asked for: there is more than this node takes.
        let mut busy = false;
        loop {
            let free = slots.available_permits();
            let want = if self.wake.stopping() {
                0
            } else {
                free.min(kind.batch())
            };
            if want > 0 && (!busy || free >= kind.refill()) {
                match self.claim(kind, want).await {
                    Ok(claimed) => {
                        busy = claimed.len() == want;
                        for work in claimed {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let held = self.load.hold(match &work {
                                Work::Message(m) => m.tenant.as_str(),
                                Work::Lane(l) => l.tenant.as_str(),
                            });
                            let this = self.clone();
                            tokio::spawn(async move {
                                match work {
                                    Work::Message(m) => this.run_message(m).await,
                                    Work::Lane(l) => this.run_lane(l).await,
                                }
                                drop(held);
                                drop(permit);
                                this.wake.of(kind).notify_one();
                            });
                        }
                        if busy && slots.available_permits() >= kind.refill() {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?kind, "claiming work failed");
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.of(kind).notified() => {}
                _ = tokio::time::sleep(POLL) => busy = false,
            }
        }
    }

    /// Runs the messages this node stored claimed, each on a task of its own.
    async fn run_claimed_here(self: Arc<Self>, mut claimed: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = claimed.recv().await {
            let held = self.load.hold(job.key.tenant.as_str());
            let this = self.clone();
            tokio::spawn(async move {
                this.run_job(job, None).await;
                drop(held);
                this.wake.unreserve(1);
            });
        }
    }

    async fn run_message(self: &Arc<Self>, c: ClaimedMessage) {
        let job = Job {
            id: c.id,
            key: TriggerKey {
                tenant: c.tenant,
                trigger: c.trigger,
            },
            lane: None,
            mode: c.mode,
            attempts: c.attempt.saturating_sub(1),
            run_at: c.started_at,
            input: c.input.map(Arc::new),
            lane_epoch: 0,
        };
        self.run_job(job, Some(c.started_at)).await
    }

    /// Runs a claimed message's attempt (started at the claim, or now when it was
    /// claimed as it was stored) under its lease, and writes its end behind.
    /// Nothing starts under a lease that is no longer live; an execution whose
    /// lease is lost is stopped and nothing is written for it.
    async fn run_job(self: &Arc<Self>, mut job: Job, claimed_at: Option<Micros>) {
        let concurrency = self
            .dispatcher
            .trigger(&job.key)
            .map_or(1, |t| t.delivery.concurrency);
        self.wake.wait_for_slot(job.id);
        let permit = self.dispatcher.permit(&job.key, concurrency).await;
        if !self.wake.start(job.id) {
            // Handed back by a stopping node; another node runs it.
            return;
        }
        let attempt = job.attempts + 1;
        let stop = Stop::new();
        let on_lost = stop.clone();
        if !self
            .store
            .guard_message(job.id, attempt, move || on_lost.stop(StopReason::LeaseLost))
        {
            tracing::info!(message = %job.id, attempt, "the lease on a message was lost before it started; it runs elsewhere");
            self.wake.end();
            return;
        }
        let started_at = claimed_at.unwrap_or_else(now_micros);
        let done = self
            .dispatcher
            .run_attempt(&mut job, started_at, &stop)
            .await;
        drop(permit);
        if let AttemptEnd::Stopped(reason) = done.end {
            tracing::warn!(message = %job.id, attempt, %reason, "execution stopped; nothing is written for it and it runs again");
            self.wake.end();
            return;
        }
        let fail = fail_status(&done);
        let status = done.completion.status;
        let written = self.store.end_attempt(done.completion, fail).await;
        self.wake.end();
        // A discarded end (logged by the store) is no result: nobody hears of it.
        if !written.await.unwrap_or(false) {
            return;
        }
        self.dispatcher.announce(&job.key, job.id, status);
        if let Some(w) = done.wake {
            self.dispatcher.waiters().notify(job.id, w);
        }
        if let AttemptEnd::RetryAt(at) = done.end {
            self.wake_at(at, false);
        }
    }
}
