//! Time in the embedded model: a message waits for its time (its first
//! attempt, or a retry) on the clock, or, stepped by hand, until `run_due` is
//! given a time at or past it. Stepped by hand, attempts read the time given
//! to `run_due` as their clock, so a test walks a retry schedule of hours
//! without waiting for it.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::domain::Micros;

use super::{Dispatcher, lock};

/// The tasks of a dispatcher stepped by hand.
#[derive(Default)]
pub(super) struct Hand {
    /// The time `run_due` was last given: the clock of attempts.
    now: AtomicI64,
    /// Tasks waiting for their time, each with what starts it.
    due: Mutex<Vec<(Micros, oneshot::Sender<()>)>>,
    /// Tasks that neither wait for their time nor have ended.
    busy: AtomicUsize,
    settled: Notify,
}

impl Hand {
    fn settle_one(&self) {
        let before = self
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            self.settled.notify_waiters();
        }
    }

    /// Waits until every task waits for its time or has ended.
    async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `run_due` reaches `at`.
    async fn park(&self, at: Micros) {
        let (go, wait) = oneshot::channel();
        lock(&self.due).push((at, go));
        self.settle_one();
        if wait.await.is_err() {
            // Not started by `run_due` (which counts those it starts): busy again.
            self.busy.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A task of the embedded model, counted (stepped by hand) until it ends.
pub(super) struct Busy(Option<Arc<Hand>>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(hand) = &self.0 {
            hand.settle_one();
        }
    }
}

impl Dispatcher {
    /// The clock of attempts: the store's, or stepped by hand the time last
    /// given to `run_due`.
    pub(super) fn now(&self) -> Micros {
        match &self.hand {
            Some(hand) => hand.now.load(Ordering::Acquire),
            None => self.store.now(),
        }
    }

    /// Counts a task about to be spawned (stepped by hand), until it ends.
    pub(super) fn busy(&self) -> Busy {
        if let Some(hand) = &self.hand {
            hand.busy.fetch_add(1, Ordering::AcqRel);
        }
        Busy(self.hand.clone())
    }

    /// Waits for a message's time: on the clock, or stepped by hand until
    /// `run_due` reaches it.
    pub(super) async fn until_due(&self, at: Micros, busy: &Busy) {
        match &busy.0 {
            Some(hand) => hand.park(at).await,
            None => {
                let wait = at - self.store.now();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_micros(wait as u64)).await;
                }
            }
        }
    }

    /// Stepped by hand: starts every message whose time has come by `now`,
    /// with `now` as the clock of their attempts, and returns once each has
    /// ended or waits for a later time (a retry), with how many attempts ran.
    /// What comes due by `now` meanwhile (the next message of a lane) runs too.
    /// Without stepping by hand (`Execution::embedded_by_hand`) it does nothing.
    pub async fn run_due(&self, now: Micros) -> usize {
        let Some(hand) = &self.hand else {
            return 0;
        };
        hand.now.store(now, Ordering::Release);
        let mut ran = 0;
        loop {
            hand.settled().await;
            let due: Vec<oneshot::Sender<()>> = {
                let mut waiting = lock(&hand.due);
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiting)
                    .into_iter()
                    .partition(|(at, _)| *at <= now);
                *waiting = later;
                due.into_iter().map(|(_, go)| go).collect()
            };
            if due.is_empty() {
                return ran;
            }
            for go in due {
                hand.busy.fetch_add(1, Ordering::AcqRel);
                if go.send(()).is_ok() {
                    ran += 1;
                } else {
                    hand.settle_one();
                }
            }
        }
    }
}
