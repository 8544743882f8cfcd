//! Sync callers waiting for a message that runs through the queue (ordered sync
//! triggers, sync requests with an Idempotency-Key).

use std::collections::HashMap;
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
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }

    /// Forgets a caller that stopped waiting (timeout, disconnect).
    pub fn forget(&self, id: MessageId) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }
}
