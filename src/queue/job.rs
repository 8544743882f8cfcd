//! A message as the queue holds it while it runs, and how one attempt ended.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{MessageId, Micros, Mode, NewMessage, TriggerKey};
use crate::engine;
use crate::store::{Completion, PendingMessage};

use super::waiters::WaitOutcome;

/// A message the dispatcher holds until it is finished.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: MessageId,
    pub key: TriggerKey,
    pub lane: Option<String>,
    pub mode: Mode,
    pub attempts: u32,
    pub run_at: Micros,
    /// `Err`: the stored input cannot be read back; the attempt fails saying so.
    pub input: Result<Arc<Value>, crate::store::Unreadable>,
    /// The epoch of the lane's holder it runs under: on a shared store its lane
    /// claim's, on the embedded store the store's generation.
    pub lane_epoch: i64,
}

impl Job {
    pub fn new(m: NewMessage) -> Self {
        Self {
            id: m.id,
            key: TriggerKey {
                tenant: m.tenant,
                trigger: m.trigger,
            },
            lane: m.lane,
            mode: m.mode,
            attempts: 0,
            run_at: m.received_at,
            input: Ok(Arc::new(m.input)),
            lane_epoch: 0,
        }
    }

    pub(crate) fn recovered(p: PendingMessage) -> Self {
        Self {
            id: p.head.id,
            key: TriggerKey {
                tenant: p.head.tenant,
                trigger: p.head.trigger,
            },
            lane: p.head.lane,
            mode: p.head.mode,
            attempts: p.attempts,
            run_at: p.run_at,
            input: p.input.map(Arc::new),
            lane_epoch: 0,
        }
    }
}

/// How an attempt ended for the dispatcher.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttemptEnd {
    Done {
        blocking: bool,
    },
    RetryAt(Micros),
    /// Stopped from outside (its lease was lost, or the node is stopping): not
    /// a result of the flow. Nothing is written; the message runs again.
    Stopped(engine::StopReason),
}

/// An attempt that ran: its record, what comes next, and what a waiting caller
/// is told once the record is written (then `Dispatcher::announce` tells the
/// subscribers).
pub(crate) struct Attempted {
    pub completion: Completion,
    pub end: AttemptEnd,
    pub wake: Option<WaitOutcome>,
}
