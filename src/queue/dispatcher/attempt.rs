//! One attempt of a message, whichever model runs it: the flow runs, and its
//! result decides what comes next (done, a retry at its time, or a block).

use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::domain::{MessageStatus, Micros, Mode, Outcome, RunMeta};
use crate::engine::{self, ExecError};
use crate::flow::{OnExhausted, OnTimeout, Trigger};
use crate::ops::metrics::ExecOutcome;
use crate::store::Completion;

use super::super::job::{AttemptEnd, Attempted, Job};
use super::super::waiters::{Start, WaitOutcome};
use super::Dispatcher;

impl Dispatcher {
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
    pub(super) async fn run_attempt_in(
        &self,
        job: &mut Job,
        started_at: Micros,
        stop: &engine::Stop,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Attempted {
        let trigger = self.trigger(&job.key);
        // Only sync messages have callers waiting (and a timeout to cancel on).
        let mut waited_here = None;
        if job.attempts == 0 && job.mode == Mode::Sync {
            let here = match self.waiters.starting(job.id) {
                Start::Cancelled => return self.cancelled(job, started_at),
                Start::Run { waited_here } => waited_here,
            };
            // Its caller waited on another node, or on this one before a
            // restart: past the timeout it was answered (or lost), so it is
            // cancelled by the time alone.
            if !here && past_its_callers_timeout(job, trigger.as_deref(), started_at) {
                return self.cancelled(job, started_at);
            }
            waited_here = Some(here);
        }
        job.attempts += 1;
        let number = job.attempts;
        let waiting = waited_here.unwrap_or_else(|| self.waiters.has(job.id));
        let meta = RunMeta {
            message_id: job.id,
            attempt: number,
            // A lane changes hands on the embedded store only when it restarts.
            lane: job.lane.clone().map(|lane| (lane, job.lane_epoch)),
        };
        let input = job.input.document();
        let (result, response, trace, emitted) = match (&trigger, &input) {
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
                    .execute(t, input, Some(&meta), None, stop, None)
                    .await;
                let trace = ex.trace_text();
                (ex.result, ex.response, trace, ex.emitted)
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
                Vec::new(),
            ),
            (None, _) => (
                Err(ExecError::Step {
                    step: "-".into(),
                    message: format!("trigger {} is not loaded", job.key),
                }),
                None,
                "[]".to_owned(),
                Vec::new(),
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
        let finished_at = self.now();
        let m = self
            .metrics
            .trigger(job.key.tenant.as_str(), job.key.trigger.as_str());
        m.queue_wait.observe_us(started_at - job.run_at);
        let retry: Vec<Duration> = trigger
            .as_ref()
            .map(|t| t.delivery.retry.clone())
            .unwrap_or_else(|| crate::flow::model::DEFAULT_RETRY.to_vec());
        let on_exhausted = trigger
            .as_ref()
            .map_or(OnExhausted::Block, |t| t.delivery.on_exhausted);
        let (status, run_at) = match &result {
            Ok(()) => (MessageStatus::Succeeded, finished_at),
            Err(e) if e.is_rejection() => (MessageStatus::Rejected, finished_at),
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
        if stopped.is_none() {
            m.executed(ExecOutcome::of(status), finished_at - started_at);
        }
        let blocking =
            job.lane.is_some() && status.may_block() && on_exhausted == OnExhausted::Block;
        if let Err(e) = &result
            && stopped.is_none()
        {
            let who = input
                .as_ref()
                .map(|input| crate::domain::Consumer::of_auth(&input["auth"]))
                .unwrap_or_default();
            tracing::info!(trigger = %job.key, message = %job.id, consumer = who.label, key_id = who.key_id, attempt = number, status = status.as_str(), error = %e, "execution failed");
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
            response: response.or_else(|| {
                let e = result.as_ref().err()?;
                engine::rejection_response(job.id, e)
            }),
            trace,
            error: result.as_ref().err().map(ToString::to_string),
            error_code: result.as_ref().err().map(ExecError::code),
            events: if stopped.is_some() {
                Vec::new()
            } else {
                self.events
                    .of_end(&job.key, job.id, status, blocking, &emitted, finished_at)
            },
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

    /// A message cancelled before it started (`response.on_timeout: cancel`):
    /// it ends `cancelled` without running, and its lane goes on.
    fn cancelled(&self, job: &mut Job, started_at: Micros) -> Attempted {
        job.attempts += 1;
        let finished_at = self.now();
        let status = MessageStatus::Cancelled;
        let events = self
            .events
            .of_end(&job.key, job.id, status, false, &[], finished_at);
        tracing::info!(trigger = %job.key, message = %job.id, "not run: its caller was answered at the timeout and the trigger cancels on timeout");
        Attempted {
            completion: Completion {
                id: job.id,
                attempt: job.attempts,
                started_at,
                finished_at,
                outcome: Outcome::Cancelled,
                status,
                run_at: finished_at,
                blocking: false,
                response: None,
                trace: "[]".to_owned(),
                error: Some(
                    "not run: its sync caller was answered 202 at the timeout (response.on_timeout: cancel)"
                        .to_owned(),
                ),
                error_code: Some("cancelled"),
                events,
            },
            end: AttemptEnd::Done { blocking: false },
            wake: None,
        }
    }
}

/// A sync message of a trigger that cancels on timeout, starting its first
/// attempt at `now` after its caller's timeout has passed since it was accepted.
fn past_its_callers_timeout(job: &Job, trigger: Option<&Trigger>, now: Micros) -> bool {
    let Some(t) = trigger else { return false };
    if job.mode != Mode::Sync || t.response.on_timeout != OnTimeout::Cancel {
        return false;
    }
    let timeout = Micros::try_from(t.response.timeout.as_micros()).unwrap_or(Micros::MAX);
    job.id
        .created_micros()
        .is_some_and(|accepted| now >= accepted.saturating_add(timeout))
}
