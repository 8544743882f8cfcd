//! The fast path for sync triggers that are neither ordered nor idempotent: the
//! flow runs right away on the request's thread; the message is recorded behind.
//! Past the trigger's timeout the message is stored durably as running (so a crash
//! re-runs it), the caller gets 202, and the execution goes on in the background.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::oneshot;

use crate::domain::{MessageId, MessageStatus, NewMessage, Outcome, TriggerKey, now_micros};
use crate::engine::{self, ExecError, Execution};
use crate::events::Events;
use crate::flow::Trigger;
use crate::store::{Completion, Store};

use super::{AcceptError, Queue};

/// How a sync request ended for its caller.
#[derive(Debug)]
pub enum SyncResult {
    /// The flow finished (with or without a `respond`).
    Finished {
        result: Result<(), ExecError>,
        response: Option<crate::domain::StoredResponse>,
    },
    /// `respond` answered; the rest of the flow goes on in the background.
    Responded(crate::domain::StoredResponse),
    /// The timeout passed: the message is stored and keeps running.
    TimedOut,
}

enum Step {
    Done(Box<Execution>),
    Responded(crate::domain::StoredResponse),
    TimedOut,
}

/// The document back from the execution's shared handle (a copy only if still shared).
fn unwrap_input(input: Arc<serde_json::Value>) -> serde_json::Value {
    Arc::try_unwrap(input).unwrap_or_else(|shared| (*shared).clone())
}

fn completion(
    key: &TriggerKey,
    events: &Events,
    id: MessageId,
    started_at: i64,
    ex: &Execution,
    response: Option<crate::domain::StoredResponse>,
) -> Completion {
    let finished_at = now_micros();
    let status = match &ex.result {
        Ok(()) => MessageStatus::Succeeded,
        Err(e) if e.is_rejection() => MessageStatus::Rejected,
        Err(_) => MessageStatus::Failed,
    };
    Completion {
        id,
        attempt: 1,
        started_at,
        finished_at,
        outcome: if ex.result.is_ok() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        status,
        run_at: finished_at,
        blocking: false,
        response: response.or_else(|| {
            let e = ex.result.as_ref().err()?;
            engine::rejection_response(id, e)
        }),
        trace: ex.trace_text(),
        error: ex.result.as_ref().err().map(ToString::to_string),
        error_code: ex.result.as_ref().err().map(ExecError::code),
        events: events.of_end(key, id, status, false, &ex.emitted, finished_at),
    }
}

/// The log line of a sync execution that failed, as the dispatcher writes one
/// for the attempts it runs: which message, who sent it, and why.
fn log_failure(message: &NewMessage, c: &Completion) {
    if let Some(error) = &c.error {
        let who = message.consumer();
        tracing::info!(trigger = %message.trigger, tenant = %message.tenant, message = %message.id, consumer = who.label, key_id = who.key_id, attempt = c.attempt, status = c.status.as_str(), error, "execution failed");
    }
}

impl Queue {
    /// Runs `message` now. Its id is the one the caller sees in `X-Message-Id`.
    pub async fn execute_sync(
        &self,
        trigger: Arc<Trigger>,
        mut message: NewMessage,
    ) -> Result<SyncResult, AcceptError> {
        let key = TriggerKey {
            tenant: message.tenant.clone(),
            trigger: message.trigger.clone(),
        };
        let dispatcher = self.dispatcher().clone();
        if !dispatcher.reserve(&key) {
            return Err(AcceptError::BacklogFull);
        }
        let permit = dispatcher.permit(&key, trigger.delivery.concurrency).await;
        let started_at = now_micros();
        let (rtx, mut rrx) = oneshot::channel();
        let timeout = trigger.response.timeout;
        let t = trigger.clone();
        // The flow reads the document while it runs; the record gets it back after.
        let run_input = Arc::new(std::mem::take(&mut message.input));
        let input = run_input.clone();
        // Stopped only if the execution outlives its timeout on a shared store and
        // this node then loses the lease it stored the message under.
        let stop = engine::Stop::new();
        let run_stop = stop.clone();
        let meta = crate::domain::RunMeta {
            message_id: message.id,
            attempt: 1,
            lane: None,
        };
        let executor = dispatcher.executor().clone();
        let mut exec = Box::pin(async move {
            executor
                .execute(&t, &run_input, Some(&meta), Some(rtx), &run_stop, None)
                .await
        });
        let store = self.store().clone();
        let id = message.id;

        let finish_later = |exec: std::pin::Pin<
            Box<dyn std::future::Future<Output = Execution> + Send>,
        >,
                            store: Store,
                            mut message: NewMessage,
                            input: Arc<serde_json::Value>,
                            durable: bool| {
            let dispatcher = dispatcher.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let ex = exec.await;
                if let Err(ExecError::Stopped { reason, .. }) = &ex.result {
                    tracing::warn!(message = %message.id, %reason, "execution stopped; nothing is written for it and it runs again");
                    dispatcher.release(&key);
                    return;
                }
                message.input = unwrap_input(input);
                let response = ex.response.clone();
                let c = completion(
                    &key,
                    dispatcher.events(),
                    message.id,
                    started_at,
                    &ex,
                    response,
                );
                log_failure(&message, &c);
                dispatcher.executed_sync(&key, &c);
                let eventful = !c.events.is_empty();
                if durable {
                    store.finished(c).await;
                } else {
                    store.record_executed(message, c).await;
                }
                dispatcher.announce(eventful);
                dispatcher.release(&key);
            });
        };

        // The flow yields between steps; the deadline is read from the clock as
        // well as the timer, which a busy thread may not have fired yet.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline));
        let mut respond_open = true;
        let step = std::future::poll_fn(|cx| {
            if let Poll::Ready(ex) = exec.as_mut().poll(cx) {
                return Poll::Ready(Step::Done(Box::new(ex)));
            }
            if respond_open && let Poll::Ready(r) = Pin::new(&mut rrx).poll(cx) {
                match r {
                    Ok(r) => return Poll::Ready(Step::Responded(r)),
                    Err(_) => respond_open = false,
                }
            }
            if tokio::time::Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::TimedOut);
            }
            Poll::Pending
        })
        .await;
        drop(permit);
        match step {
            Step::Done(mut ex) => {
                drop(exec);
                message.input = unwrap_input(input);
                // A flow that responded and finished in one poll: the caller gets
                // the copy the responder holds, the record the execution's own.
                let answer = rrx.try_recv().ok();
                let recorded = match answer {
                    Some(_) => ex.response.take(),
                    None => ex.response.clone(),
                };
                let c = completion(&key, dispatcher.events(), id, started_at, &ex, recorded);
                log_failure(&message, &c);
                dispatcher.executed_sync(&key, &c);
                let eventful = !c.events.is_empty();
                store.record_executed(message, c).await;
                dispatcher.announce(eventful);
                dispatcher.release(&key);
                Ok(SyncResult::Finished {
                    result: ex.result,
                    response: answer.or(ex.response),
                })
            }
            Step::Responded(r) => {
                finish_later(exec, store, message, input, false);
                Ok(SyncResult::Responded(r))
            }
            Step::TimedOut => {
                // Hand over: durable as running before the caller hears 202.
                let mut stored = message.clone();
                stored.input = (*input).clone();
                if let Err(e) = self
                    .execution
                    .hand_over(&store, stored, started_at, stop)
                    .await
                {
                    dispatcher.metrics().store_error();
                    tracing::error!(message = %id, error = %e, "could not store a timed-out sync message");
                }
                finish_later(exec, store, message, input, true);
                Ok(SyncResult::TimedOut)
            }
        }
    }
}
