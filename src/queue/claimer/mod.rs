//! Execution for the shared store: every node claims work from PostgreSQL instead
//! of running what it accepted itself.
//!
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
//! - Leases are renewed by a heartbeat; a node that dies loses them after
//!   `lease`, and others take its work over. A late result is fenced out.
//! - Wake-ups come by LISTEN/NOTIFY, with a poll every `POLL` as a fallback.
//!   Sync callers waiting here for a message run elsewhere are answered from
//!   the store when its node says it is done (or when a poll finds it done).
//! - Admission: each trigger's unfinished messages in the shared queue are
//!   counted every `BACKLOG_COUNT`, and `max_backlog` applies to that count.

mod lane;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::domain::{MessageId, MessageStatus, Micros, TriggerKey, now_micros};
use crate::engine::ExecError;
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

/// Wakes the claim loops.
#[derive(Default)]
pub struct Wake {
    lanes: Notify,
    messages: Notify,
}

impl Wake {
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
    tokio::spawn(c.clone().claim_loop(Kind::Messages));
    tokio::spawn(c.clone().claim_loop(Kind::Lanes));
    tokio::spawn(c.clone().heartbeat());
    tokio::spawn(c.clone().count_backlogs());
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
                        let message = e.error.unwrap_or_default();
                        match e.fail_status {
                            Some(status) => ExecError::Fail {
                                step: "-".into(),
                                status,
                                message,
                            },
                            None => ExecError::Step {
                                step: "-".into(),
                                message,
                            },
                        }
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

    async fn heartbeat(self: Arc<Self>) {
        let every = self.store.lease() / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.store.heartbeat(now_micros()).await {
                tracing::warn!(error = %e, "lease heartbeat failed");
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

    async fn claim(&self, kind: Kind, want: usize) -> Result<Vec<Work>, StoreError> {
        let now = now_micros();
        Ok(match kind {
            Kind::Messages => self
                .store
                .claim_messages(want, now)
                .await?
                .into_iter()
                .map(Work::Message)
                .collect(),
            Kind::Lanes => self
                .store
                .claim_lanes(want, now)
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
            let want = free.min(kind.batch());
            if want > 0 && (!busy || free >= kind.refill()) {
                match self.claim(kind, want).await {
                    Ok(claimed) => {
                        busy = claimed.len() == want;
                        for work in claimed {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let this = self.clone();
                            tokio::spawn(async move {
                                match work {
                                    Work::Message(m) => this.run_message(m).await,
                                    Work::Lane(l) => this.run_lane(l).await,
                                }
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
        let fail = fail_status(&done);
        self.store.finished_with(done.completion, fail).await;
        if let Some(w) = done.wake {
            self.dispatcher.waiters().notify(job.id, w);
        }
        if let AttemptEnd::RetryAt(at) = done.end {
            self.wake_at(at, false);
        }
    }
}
