//! Execution for the shared store: every node claims work from PostgreSQL instead
//! of running what it accepted itself.
//!
//! - Unordered messages are claimed in batches, up to `MAX_MESSAGES` running on
//!   this node (and each trigger's `concurrency`).
//! - Ordered lanes are claimed whole: the holder runs the lane's messages one by
//!   one in acceptance order and writes each run of results in one commit, so a
//!   busy lane drains at many messages per commit. A retry or a block ends the run
//!   and releases the lane; so does a turn's budget, to share lanes among nodes.
//! - Leases are renewed by a heartbeat; a node that dies loses them after
//!   `lease`, and others take its work over. A late result is fenced out.
//! - Wake-ups come by LISTEN/NOTIFY, with a poll every `POLL` as a fallback.
//!   Sync callers waiting here for a message run elsewhere are answered from
//!   the store when its node says it is done (or when a poll finds it done).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::domain::{MessageId, MessageStatus, Micros, TriggerKey, now_micros};
use crate::engine::ExecError;
use crate::store::{ClaimedMessage, LaneClaim, PgStore, Wakeup};

use super::dispatcher::{AttemptEnd, Dispatcher, Job};
use super::waiters::WaitOutcome;

const MAX_MESSAGES: usize = 64;
const CLAIM_BATCH: usize = 32;
const MAX_LANES: usize = 16;
/// Messages read (and at most run before a commit) per round of a lane.
const LANE_BATCH: usize = 256;
/// A round's results are committed at the latest after this long.
const ROUND: Duration = Duration::from_millis(100);
/// A lane is released for others after this many messages or this long.
const LANE_TURN: usize = 20_000;
const LANE_TURN_TIME: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(250);
const BACKOFF: Duration = Duration::from_millis(500);

/// Wakes the claim loops.
#[derive(Default)]
pub struct Wake {
    lanes: Notify,
    messages: Notify,
}

impl Wake {
    pub fn work(&self, ordered: bool) {
        if ordered {
            self.lanes.notify_one();
        } else {
            self.messages.notify_one();
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
}

/// Starts claiming on the current runtime; from now on `dispatcher` wakes the
/// claimer instead of running what is pushed to it.
pub fn start(store: PgStore, dispatcher: Arc<Dispatcher>) {
    let wake = Arc::new(Wake::default());
    dispatcher.claim_from_store(wake.clone());
    let c = Arc::new(Claimer {
        store,
        dispatcher,
        wake,
    });
    tokio::spawn(c.clone().listen());
    tokio::spawn(c.clone().messages());
    tokio::spawn(c.clone().lanes());
    tokio::spawn(c.clone().heartbeat());
    tokio::spawn(c.poll_waiters());
}

impl Claimer {
    fn wake_at(self: &Arc<Self>, at: Micros, ordered: bool) {
        let wake = self.wake.clone();
        let wait = (at - now_micros()).max(0) as u64;
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

    /// Tells callers waiting here how their messages (run on any node) ended.
    async fn answer(&self, ids: Vec<MessageId>) {
        for id in ids {
            let Ok(Some(view)) = self.store.get(id).await else {
                continue;
            };
            if !view.status.is_final() {
                continue;
            }
            let outcome = match view.response {
                Some(r) => WaitOutcome::Responded(r),
                None => WaitOutcome::Finished {
                    status: view.status,
                    error: (view.status != MessageStatus::Succeeded).then(|| ExecError::Step {
                        step: "-".into(),
                        message: view.error.unwrap_or_default(),
                    }),
                },
            };
            self.dispatcher.waiters().notify(id, outcome);
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

    async fn heartbeat(self: Arc<Self>) {
        let every = self.store.lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.store.heartbeat(now_micros()).await {
                tracing::warn!(error = %e, "lease heartbeat failed");
            }
        }
    }

    async fn messages(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(MAX_MESSAGES));
        loop {
            let want = slots.available_permits().min(CLAIM_BATCH);
            let mut more = false;
            if want > 0 {
                match self.store.claim_messages(want, now_micros()).await {
                    Ok(claimed) => {
                        more = claimed.len() == want;
                        for c in claimed {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let this = self.clone();
                            tokio::spawn(async move {
                                this.run_message(c).await;
                                drop(permit);
                                this.wake.work(false);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming messages failed");
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                }
            }
            if !more {
                tokio::select! {
                    _ = self.wake.messages.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    async fn run_message(self: &Arc<Self>, c: ClaimedMessage) {
        let key = TriggerKey {
            tenant: c.tenant,
            trigger: c.trigger,
        };
        let concurrency = self
            .dispatcher
            .trigger(&key)
            .map_or(1, |t| t.delivery.concurrency);
        let permit = self.dispatcher.permit(&key, concurrency).await;
        let mut job = Job {
            id: c.id,
            key,
            lane: None,
            mode: c.mode,
            attempts: c.attempt.saturating_sub(1),
            run_at: c.started_at,
            input: Arc::new(c.input),
        };
        let done = self.dispatcher.run_attempt(&mut job, c.started_at).await;
        drop(permit);
        self.store.finished(done.completion).await;
        if let Some(w) = done.wake {
            self.dispatcher.waiters().notify(job.id, w);
        }
        if let AttemptEnd::RetryAt(at) = done.end {
            self.wake_at(at, false);
        }
    }

    async fn lanes(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(MAX_LANES));
        loop {
            let want = slots.available_permits();
            let mut more = false;
            if want > 0 {
                match self.store.claim_lanes(want, now_micros()).await {
                    Ok(claimed) => {
                        more = claimed.len() == want;
                        for lane in claimed {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let this = self.clone();
                            tokio::spawn(async move {
                                this.run_lane(lane).await;
                                drop(permit);
                                this.wake.work(true);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming lanes failed");
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                }
            }
            if !more {
                tokio::select! {
                    _ = self.wake.lanes.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    /// Runs a claimed lane until it is empty, waits for a retry, is blocked, or
    /// its turn is over. On any store error the lane is left to its lease.
    async fn run_lane(self: &Arc<Self>, lane: LaneClaim) {
        let key = TriggerKey {
            tenant: lane.tenant.clone(),
            trigger: lane.trigger.clone(),
        };
        let turn = Instant::now();
        let mut ran = 0usize;
        let mut blocked = None;
        loop {
            let batch = match self.store.lane_messages(&lane, 0, LANE_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, lane = lane.lane, "reading a lane failed");
                    self.store.forget_lane(&lane);
                    return;
                }
            };
            let mut release = batch.is_empty().then_some(0);
            let mut done = Vec::new();
            let mut wakes = Vec::new();
            let round = Instant::now();
            for m in batch {
                let now = now_micros();
                if m.run_at > now {
                    release = Some(m.run_at);
                    break;
                }
                let concurrency = self
                    .dispatcher
                    .trigger(&key)
                    .map_or(1, |t| t.delivery.concurrency);
                let permit = self.dispatcher.permit(&key, concurrency).await;
                let mut job = Job {
                    id: m.id,
                    key: key.clone(),
                    lane: Some(lane.lane.clone()),
                    mode: m.mode,
                    attempts: m.attempts,
                    run_at: m.run_at,
                    input: Arc::new(m.input),
                };
                let a = self.dispatcher.run_attempt(&mut job, now).await;
                drop(permit);
                done.push(a.completion);
                if let Some(w) = a.wake {
                    wakes.push((m.id, w));
                }
                match a.end {
                    AttemptEnd::Done { blocking: false } => {}
                    AttemptEnd::Done { blocking: true } => {
                        tracing::warn!(trigger = %key, lane = lane.lane, message = %m.id, "ordered lane blocked by a failed message");
                        release = Some(0);
                        blocked = Some(m.id);
                        break;
                    }
                    AttemptEnd::RetryAt(at) => {
                        release = Some(at);
                        break;
                    }
                }
                if round.elapsed() >= ROUND {
                    break;
                }
            }
            ran += done.len();
            if release.is_none() && (ran >= LANE_TURN || turn.elapsed() >= LANE_TURN_TIME) {
                // Back in line: other nodes and lanes get a turn.
                release = Some(now_micros());
            }
            match self
                .store
                .commit_lane(&lane, done, release, now_micros())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        lane = lane.lane,
                        "lost the lane's lease; its results were discarded"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lane = lane.lane, "writing a lane's results failed");
                    return;
                }
            }
            for (id, w) in wakes {
                self.dispatcher.waiters().notify(id, w);
            }
            if let Some(id) = blocked {
                self.dispatcher.events().lane_blocked(&key, id);
            }
            if let Some(at) = release {
                if at > now_micros() {
                    self.wake_at(at, true);
                }
                return;
            }
        }
    }
}
