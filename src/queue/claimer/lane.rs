//! Running a claimed ordered lane: its messages one at a time in acceptance
//! order (they stay `queued` in the store while they run), and each run of
//! results written in one commit fenced by the lane's holder and epoch. The
//! lane's lease is checked before each message; once it is lost, the message
//! running is stopped and nothing more starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::TriggerKey;
use crate::engine::{ExecError, Stop, StopReason};
use crate::store::LaneClaim;

use super::super::job::{AttemptEnd, Attempted, Job, JobInput};
use super::super::waiters::WaitOutcome;
use super::Claimer;

/// Messages read (and at most run before a commit) per round of a lane.
const LANE_BATCH: usize = 256;
/// A round's results are committed at the latest after this long.
const ROUND: Duration = Duration::from_millis(100);
/// A lane is released for others after this many messages or this long.
const LANE_TURN: usize = 20_000;
const LANE_TURN_TIME: Duration = Duration::from_secs(5);

/// The status of the `fail` step that ended an attempt.
pub(super) fn fail_status_of(a: &Attempted) -> Option<u16> {
    match &a.wake {
        Some(WaitOutcome::Finished {
            error: Some(ExecError::Fail { status, .. }),
            ..
        }) => Some(*status),
        _ => None,
    }
}

impl Claimer {
    /// Runs a claimed lane until it is empty, waits for a retry, is blocked, its
    /// turn is over or its lease is lost. On any store error the lane is left to
    /// its lease.
    pub(super) async fn run_lane(self: &Arc<Self>, lane: LaneClaim) {
        let key = TriggerKey {
            tenant: lane.tenant.clone(),
            trigger: lane.trigger.clone(),
        };
        let stop = Stop::new();
        let on_lost = stop.clone();
        if !self
            .store
            .guard_lane(&lane, Box::new(move || on_lost.stop(StopReason::LeaseLost)))
        {
            tracing::info!(
                lane = lane.lane,
                "the lease on a lane was lost before it ran"
            );
            self.store.forget_lane(&lane);
            return;
        }
        let turn = Instant::now();
        let mut ran = 0usize;
        loop {
            let batch = match self.store.lane_messages(&lane, 0, LANE_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, lane = lane.lane, "reading a lane failed");
                    self.store.forget_lane(&lane);
                    return;
                }
            };
            if batch.is_empty() && ran == 0 {
                // Claimed for work it does not have: its count drifted.
                match self.store.recount_lane(&lane).await {
                    Ok(n) if n != 0 => {
                        tracing::warn!(lane = lane.lane, pending = n, "repaired a lane's count")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, lane = lane.lane, "recounting a lane failed")
                    }
                }
            }
            let mut release = batch.is_empty().then_some(0);
            let mut done = Vec::new();
            let mut wakes = Vec::new();
            let round = Instant::now();
            for m in batch {
                let now = self.store.now();
                if stop.reason().is_some() || !self.store.lane_live(&lane) {
                    // The lease is lost: nothing more starts. What ran is
                    // written if the store still takes it (fenced).
                    tracing::warn!(lane = lane.lane, message = %m.id, "lost the lane's lease; its next message does not start here");
                    release = Some(now);
                    break;
                }
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
                    input: JobInput::from(m.input),
                    lane_epoch: lane.epoch,
                };
                let a = self.dispatcher.run_attempt(&mut job, now, &stop).await;
                drop(permit);
                if let AttemptEnd::Stopped(reason) = a.end {
                    tracing::warn!(lane = lane.lane, message = %m.id, %reason, "execution stopped; nothing is written for it and it runs again");
                    release = Some(self.store.now());
                    break;
                }
                let fail = fail_status_of(&a);
                let end = a.end;
                done.push((a.completion, fail));
                if let Some(w) = a.wake {
                    wakes.push((m.id, w));
                }
                match end {
                    // A stopped execution ended the round above.
                    AttemptEnd::Done { blocking: false } | AttemptEnd::Stopped(_) => {}
                    AttemptEnd::Done { blocking: true } => {
                        tracing::warn!(trigger = %key, lane = lane.lane, message = %m.id, "ordered lane blocked by a failed message");
                        release = Some(0);
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
            let eventful = done.iter().any(|(c, _)| !c.events.is_empty());
            if release.is_none() && (ran >= LANE_TURN || turn.elapsed() >= LANE_TURN_TIME) {
                // Back in line: other nodes and lanes get a turn.
                release = Some(self.store.now());
            }
            match self
                .store
                .commit_lane(&lane, done, release, self.store.now())
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
            self.dispatcher.announce(eventful);
            for (id, w) in wakes {
                self.dispatcher.waiters().notify(id, w);
            }
            if let Some(at) = release {
                if at > self.store.now() {
                    self.wake_at(at, true);
                }
                return;
            }
        }
    }
}
