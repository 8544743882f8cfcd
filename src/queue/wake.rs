//! The handle between the dispatcher and the shared model's claimer: the
//! dispatcher wakes the claim loops and hands over the messages this node
//! stored claimed; the claimer takes them. Made before both (see
//! `Execution::shared`), so that neither points back at the other.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::domain::MessageId;

use super::job::Job;

/// The two kinds of work claimed from the shared queue.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Messages,
    Lanes,
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
    /// A handle, and the receiving end of what `run_here` hands over (for the claimer).
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Job>) {
        let (here, claimed_here) = mpsc::unbounded_channel();
        let wake = Self {
            lanes: Notify::new(),
            messages: Notify::new(),
            here,
            held_here: AtomicUsize::new(0),
            waiting: Default::default(),
            stopping: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            ended: Notify::new(),
        };
        (wake, claimed_here)
    }

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

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn wait_for_slot(&self, id: MessageId) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    /// Whether a message that waited may start (it was not handed back); if so it
    /// counts as running (under the same lock `hand_back` takes).
    pub(crate) fn start(&self, id: MessageId) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let start = waiting.remove(&id);
        if start {
            self.running.fetch_add(1, Ordering::AcqRel);
        }
        start
    }

    pub(crate) fn end(&self) {
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

    pub(crate) fn of(&self, kind: Kind) -> &Notify {
        match kind {
            Kind::Messages => &self.messages,
            Kind::Lanes => &self.lanes,
        }
    }

    pub(crate) fn all(&self) {
        self.lanes.notify_one();
        self.messages.notify_one();
    }
}
