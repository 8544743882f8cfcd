//! Sync callers waiting for a message that runs through the queue (ordered sync
//! triggers, sync requests with an Idempotency-Key).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::domain::{MessageId, MessageStatus, StoredResponse};
use crate::engine::ExecError;

/// What a waiting caller learns.
#[derive(Debug, Clone)]
pub enum WaitOutcome {
    /// The flow's `respond` step answered (the flow may still be running).
    Responded(StoredResponse),
    /// The execution ended without a response.
    Finished {
        status: MessageStatus,
        error: Option<ExecError>,
    },
}

pub type WaitReceiver = oneshot::Receiver<WaitOutcome>;

#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<MessageId, oneshot::Sender<WaitOutcome>>>,
    /// Which waited-for messages started and which were cancelled before they
    /// did (`response.on_timeout: cancel`): one lock, so that a message either
    /// starts or is cancelled, never both.
    marks: Mutex<Marks>,
}

#[derive(Default)]
struct Marks {
    started: HashSet<MessageId>,
    cancelled: HashSet<MessageId>,
}

/// Whether a message about to start its first attempt may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// It runs; `waited_here`: a caller on this node waits for it (its
    /// timeout decides here), else any caller waits elsewhere or is gone.
    Run { waited_here: bool },
    /// Its caller was answered at the timeout and it is not to run.
    Cancelled,
}

impl Waiters {
    pub fn register(&self, id: MessageId, tx: oneshot::Sender<WaitOutcome>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, tx);
        }
    }

    pub fn has(&self, id: MessageId) -> bool {
        self.map
            .lock()
            .map(|m| m.contains_key(&id))
            .unwrap_or(false)
    }

    /// Every message a caller is waiting for.
    pub fn ids(&self) -> Vec<MessageId> {
        self.map
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Wakes the caller waiting for `id`, if any (once).
    pub fn notify(&self, id: MessageId, outcome: WaitOutcome) {
        let tx = self.map.lock().ok().and_then(|mut m| m.remove(&id));
        self.marks().started.remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }

    /// Forgets a caller that stopped waiting (timeout, disconnect); whether
    /// its message had started.
    pub fn forget(&self, id: MessageId) -> bool {
        let mut marks = self.marks();
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
        marks.started.remove(&id)
    }

    /// Forgets a caller answered at its timeout, and cancels its message
    /// unless it has started: true when it will not run.
    pub fn cancel(&self, id: MessageId) -> bool {
        let mut marks = self.marks();
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
        if marks.started.remove(&id) {
            return false;
        }
        marks.cancelled.insert(id);
        true
    }

    /// Called as message `id` is about to start its first attempt: whether it
    /// runs, or was cancelled (once).
    pub fn starting(&self, id: MessageId) -> Start {
        let mut marks = self.marks();
        if marks.cancelled.remove(&id) {
            return Start::Cancelled;
        }
        let waited_here = self.has(id);
        if waited_here {
            marks.started.insert(id);
        }
        Start::Run { waited_here }
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waited_for_message_either_starts_or_is_cancelled() {
        let w = Waiters::default();
        let (started, waiting) = (MessageId::new(), MessageId::new());
        let (tx, _a) = oneshot::channel();
        w.register(started, tx);
        let (tx, _b) = oneshot::channel();
        w.register(waiting, tx);
        assert_eq!(w.starting(started), Start::Run { waited_here: true });
        assert!(!w.cancel(started), "it started: it runs to its end");
        assert!(w.cancel(waiting));
        assert!(!w.has(waiting), "its caller is forgotten");
        assert_eq!(w.starting(waiting), Start::Cancelled);
        assert_eq!(
            w.starting(waiting),
            Start::Run { waited_here: false },
            "told once"
        );
        assert!(w.marks().started.is_empty() && w.marks().cancelled.is_empty());
    }
}
