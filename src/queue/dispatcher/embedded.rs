//! The embedded model: every message runs on the node that stored it. Lanes
//! for ordered triggers live here (one message at a time, in acceptance order,
//! holding the lane through retries), retries wait for their time, and a
//! failed message may block its lane until an operator lets go of it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::domain::{AttemptRecord, MessageId, TriggerKey};
use crate::engine;
use crate::store::PendingMessage;

use super::super::job::{AttemptEnd, Job};
use super::by_hand::Busy;
use super::{Dispatcher, lock};

#[derive(Default)]
pub(super) struct Lane {
    queue: VecDeque<Job>,
    active: bool,
    /// A finished message that failed and holds the lane (`on_exhausted: block`).
    pub(super) blocked_by: Option<MessageId>,
}

impl Dispatcher {
    /// Runs a stored message here: at once if unordered, else in its lane.
    /// A job that will wait (behind its lane, or for a place its trigger has
    /// none of) is parked: see `JobInput`.
    pub(super) fn push_here(self: &Arc<Self>, mut job: Job) {
        match job.lane.clone() {
            None => {
                let concurrency = self.trigger(&job.key).map_or(1, |t| t.delivery.concurrency);
                if self.state(&job.key).backlog() > concurrency {
                    job.input.park();
                }
                let this = self.clone();
                let busy = self.busy();
                self.runtime
                    .spawn(async move { this.run_unordered(job, busy).await });
            }
            Some(lane) => {
                let s = self.state(&job.key);
                // Parked outside the lock; a lane that frees meanwhile only
                // reads the text back.
                let waits = lock(&s.lanes)
                    .get(&lane)
                    .is_some_and(|l| l.active || l.blocked_by.is_some());
                if waits {
                    job.input.park();
                }
                let start = {
                    let mut lanes = lock(&s.lanes);
                    let l = lanes.entry(lane.clone()).or_default();
                    let start = !l.active && l.blocked_by.is_none();
                    l.queue.push_back(job.clone());
                    if start {
                        l.active = true;
                    }
                    start
                };
                if start {
                    let this = self.clone();
                    let busy = self.busy();
                    self.runtime
                        .spawn(async move { this.run_lane(job.key, lane, busy).await });
                }
            }
        }
    }

    /// After a restart: every unfinished message, in acceptance order.
    pub fn recover(self: &Arc<Self>, pending: Vec<PendingMessage>) {
        for p in pending {
            let key = TriggerKey {
                tenant: p.head.tenant.clone(),
                trigger: p.head.trigger.clone(),
            };
            if p.blocking {
                if let Some(lane) = &p.head.lane {
                    let s = self.state(&key);
                    lock(&s.lanes).entry(lane.clone()).or_default().blocked_by = Some(p.head.id);
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

    /// Lets go of a blocked lane of this node: it runs again, `front` first.
    pub(super) fn unblock_here(self: &Arc<Self>, key: &TriggerKey, lane: &str, front: Option<Job>) {
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
            let busy = self.busy();
            tokio::spawn(async move { this.run_lane(key, lane, busy).await });
        }
    }

    async fn run_unordered(self: Arc<Self>, mut job: Job, busy: Busy) {
        loop {
            self.until_due(job.run_at, &busy).await;
            let concurrency = self.trigger(&job.key).map_or(1, |t| t.delivery.concurrency);
            let permit = self.permit(&job.key, concurrency).await;
            let end = self.attempt(&mut job).await;
            drop(permit);
            match end {
                AttemptEnd::Done { .. } | AttemptEnd::Stopped(_) => break,
                AttemptEnd::RetryAt(at) => {
                    job.run_at = at;
                    job.input.park();
                }
            }
        }
        self.release(&job.key);
    }

    async fn run_lane(self: Arc<Self>, key: TriggerKey, lane: String, busy: Busy) {
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
                self.until_due(job.run_at, &busy).await;
                let concurrency = self.trigger(&key).map_or(1, |t| t.delivery.concurrency);
                let permit = self.permit(&key, concurrency).await;
                let end = self.attempt(&mut job).await;
                drop(permit);
                match end {
                    AttemptEnd::Done { blocking } => break blocking,
                    AttemptEnd::RetryAt(at) => {
                        job.run_at = at;
                        job.input.park();
                    }
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
                return;
            }
        }
    }

    /// One attempt: run the flow, record it, decide what comes next. The
    /// message is marked running once it has its tenant's place.
    async fn attempt(&self, job: &mut Job) -> AttemptEnd {
        // A lane changes hands on the embedded store only when it restarts.
        job.lane_epoch = self.store.generation();
        let slot = self.running_slot(job.key.tenant.as_str()).await;
        let started_at = self.now();
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
        let eventful = !done.completion.events.is_empty();
        self.store.finished(done.completion).await;
        self.announce(eventful);
        if let Some(w) = done.wake {
            self.waiters.notify(job.id, w);
        }
        done.end
    }
}
