//! A message as the queue holds it while it runs, and how one attempt ended.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{MessageId, Micros, Mode, NewMessage, TriggerKey};
use crate::engine;
use crate::store::{Completion, PendingMessage, Unreadable};

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
    /// The input document (see [`JobInput`]).
    pub input: JobInput,
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
            input: JobInput::from(Ok(m.input)),
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
            input: JobInput::from(p.input),
            lane_epoch: 0,
        }
    }
}

/// A job's input document. A job that waits behind others (in a busy lane,
/// for a full trigger's place, for a retry) is parked: the document is held as
/// its JSON text, a fraction of the memory of the values (a 1 KB body's input
/// document takes about 10 KB as values), and read back when its attempt
/// starts. So a backlog of `max_backlog` messages costs about what their
/// bodies weigh.
#[derive(Debug, Clone)]
pub struct JobInput(Held);

#[derive(Debug, Clone)]
enum Held {
    Doc(Arc<Value>),
    Parked(Arc<str>),
    /// The stored input cannot be read back; the attempt fails saying so.
    Unreadable(Unreadable),
}

impl From<Result<Value, Unreadable>> for JobInput {
    fn from(input: Result<Value, Unreadable>) -> Self {
        Self(match input {
            Ok(v) => Held::Doc(Arc::new(v)),
            Err(e) => Held::Unreadable(e),
        })
    }
}

impl JobInput {
    /// Holds the document as text until [`JobInput::document`] is asked for.
    pub fn park(&mut self) {
        if let Held::Doc(doc) = &self.0 {
            self.0 = Held::Parked(crate::domain::json_text::to_string(doc).into());
        }
    }

    pub fn is_parked(&self) -> bool {
        matches!(self.0, Held::Parked(_))
    }

    /// The document, read back from its text if parked (and kept so until
    /// parked again).
    pub fn document(&mut self) -> Result<Arc<Value>, Unreadable> {
        if let Held::Parked(text) = &self.0 {
            self.0 = match crate::domain::depth::parse_stored(text) {
                Ok(v) => Held::Doc(Arc::new(v)),
                Err(e) => Held::Unreadable(Unreadable::Input(e)),
            };
        }
        match &self.0 {
            Held::Doc(doc) => Ok(doc.clone()),
            Held::Unreadable(e) => Err(e.clone()),
            Held::Parked(_) => unreachable!("read back above"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_input_reads_back_as_it_was() {
        let doc = serde_json::json!({"body": {"lines": [{"sku": "X-1", "qty": 2.5}], "n": null}, "params": {"a": "é"}});
        let mut input = JobInput::from(Ok(doc.clone()));
        assert!(!input.is_parked());
        input.park();
        assert!(input.is_parked());
        assert_eq!(*input.document().expect("readable"), doc);
        assert!(!input.is_parked(), "read back, it is held as values again");
    }

    #[test]
    fn an_unreadable_input_stays_unreadable_when_parked() {
        let e = Unreadable::Input(crate::domain::depth::parse_stored("[").unwrap_err());
        let mut input = JobInput::from(Err(e.clone()));
        input.park();
        assert!(!input.is_parked());
        assert_eq!(input.document().unwrap_err(), e);
    }
}
