//! Running unordered messages: those claimed from the shared queue and those
//! this node stored claimed as it accepted them, each under its lease.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::{Micros, TriggerKey, now_micros};
use crate::engine::{Stop, StopReason};
use crate::store::ClaimedMessage;

use super::super::job::{AttemptEnd, Job, JobInput};
use super::Claimer;
use super::lane::fail_status_of as fail_status;

impl Claimer {
    /// Runs the messages this node stored claimed, each on a task of its own.
    pub(super) async fn run_claimed_here(
        self: Arc<Self>,
        mut claimed: mpsc::UnboundedReceiver<Job>,
    ) {
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

    pub(super) async fn run_message(self: &Arc<Self>, c: ClaimedMessage) {
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
            input: JobInput::from(c.input),
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
        if !self.store.guard_message(
            job.id,
            attempt,
            Box::new(move || on_lost.stop(StopReason::LeaseLost)),
        ) {
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
        let eventful = !done.completion.events.is_empty();
        let written = self.store.end_attempt(done.completion, fail).await;
        self.wake.end();
        // A discarded end (logged by the store) is no result: nobody hears of it.
        if !written.await.unwrap_or(false) {
            return;
        }
        self.dispatcher.announce(eventful);
        if let Some(w) = done.wake {
            self.dispatcher.waiters().notify(job.id, w);
        }
        if let AttemptEnd::RetryAt(at) = done.end {
            self.wake_at(at, false);
        }
    }
}
