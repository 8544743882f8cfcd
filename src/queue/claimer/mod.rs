//! Execution for the shared store: work is claimed from the store every node shares.
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
mod message;
mod news;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use crate::domain::Micros;
use crate::store::{Claimed, ClaimedMessage, LaneClaim, SharedStore, StoreError};

use super::dispatcher::Dispatcher;
use super::job::Job;
use super::wake::{Kind, Wake};

const MAX_MESSAGES: usize = 64;
const CLAIM_BATCH: usize = 32;
const MAX_LANES: usize = 16;
const POLL: Duration = Duration::from_millis(250);
const BACKOFF: Duration = Duration::from_millis(500);
const BACKLOG_COUNT: Duration = Duration::from_secs(1);
/// How often a node reads the database's clock again (see `SharedStore::sync_clock`).
const CLOCK_EVERY: Duration = Duration::from_secs(30);

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

struct Claimer {
    store: Arc<dyn SharedStore>,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Wake>,
    /// Each tenant's claimed work on this node (see `claim_cap`).
    load: Arc<tenants::TenantLoad>,
}

/// A claimer made but not yet running: the dispatcher already hands it what it
/// must run (held until it starts), so that startup recovery finishes before
/// anything is claimed or run.
pub(crate) struct Ready {
    claimer: Arc<Claimer>,
    claimed_here: mpsc::UnboundedReceiver<Job>,
}

/// Makes the claimer over the handle `wake` the dispatcher wakes it through;
/// `claimed_here` receives what the dispatcher hands over to run here. Nothing
/// runs until [`Ready::start`].
pub(crate) fn prepare(
    store: Arc<dyn SharedStore>,
    dispatcher: Arc<Dispatcher>,
    wake: Arc<Wake>,
    claimed_here: mpsc::UnboundedReceiver<Job>,
) -> Ready {
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

    /// How much of one tenant's work this node claims: its running places
    /// (`tenant_max_running`) and as many again waiting for them, so that a
    /// tenant's backlog keeps its places busy but leaves claim slots to others.
    fn claim_cap(&self) -> usize {
        self.dispatcher.tenant_max().saturating_mul(2)
    }

    async fn claim(&self, kind: Kind, want: usize) -> Result<Vec<Work>, StoreError> {
        let now = self.store.now();
        let shares = self.load.shares(self.claim_cap());
        let ordered = matches!(kind, Kind::Lanes);
        Ok(match self.store.claim(ordered, want, now, &shares).await? {
            Claimed::Messages(m) => m.into_iter().map(Work::Message).collect(),
            Claimed::Lanes(l) => l.into_iter().map(Work::Lane).collect(),
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
}
