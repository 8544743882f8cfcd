//! What the claimer hears: news from other nodes (work to claim, messages
//! done for callers waiting here), the database's clock and the shared backlog.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{MessageId, MessageStatus, TriggerKey};
use crate::engine::ExecError;
use crate::store::Wakeup;

use super::super::waiters::WaitOutcome;
use super::{BACKLOG_COUNT, CLOCK_EVERY, Claimer, POLL};

impl Claimer {
    pub(super) async fn listen(self: Arc<Self>) {
        let mut news = self.store.listen();
        while let Some(n) = news.recv().await {
            match n {
                Wakeup::Work => self.wake.all(),
                Wakeup::Done(ids) => {
                    let waiters = self.dispatcher.waiters();
                    let ids: Vec<MessageId> =
                        ids.into_iter().filter(|id| waiters.has(*id)).collect();
                    if !ids.is_empty() {
                        let this = self.clone();
                        tokio::spawn(async move { this.answer(ids).await });
                    }
                }
            }
        }
    }

    /// Tells callers waiting here how their messages (run on any node) ended:
    /// the flow's response, or its `fail` step's status and message.
    async fn answer(&self, ids: Vec<MessageId>) {
        let _ = tokio::time::timeout(self.store.lease(), self.store.flush()).await;
        let Ok(ended) = self.store.ended(ids).await else {
            return;
        };
        for e in ended {
            let outcome = match e.response {
                Some(r) => WaitOutcome::Responded(r),
                None => WaitOutcome::Finished {
                    status: e.status,
                    error: (e.status != MessageStatus::Succeeded).then(|| {
                        ExecError::recorded(
                            e.error_code.as_deref(),
                            e.error.unwrap_or_default(),
                            e.fail_status,
                        )
                    }),
                },
            };
            self.dispatcher.waiters().notify(e.id, outcome);
        }
    }

    pub(super) async fn poll_waiters(self: Arc<Self>) {
        loop {
            tokio::time::sleep(POLL * 2).await;
            let ids = self.dispatcher.waiters().ids();
            if !ids.is_empty() {
                self.answer(ids).await;
            }
        }
    }

    /// Reads the database's clock now and then, apart from the heartbeat so that
    /// renewing leases never waits on it.
    pub(super) async fn follow_clock(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CLOCK_EVERY).await;
            if let Err(e) = self.store.sync_clock().await {
                tracing::debug!(error = %e, "reading the database's clock failed");
            }
        }
    }

    /// Keeps each trigger's count of unfinished messages in the shared queue
    /// fresh enough for `max_backlog`.
    pub(super) async fn count_backlogs(self: Arc<Self>) {
        loop {
            match self.store.backlogs().await {
                Ok(rows) => {
                    let counts: HashMap<TriggerKey, usize> = rows
                        .into_iter()
                        .map(|(tenant, trigger, n)| {
                            (TriggerKey { tenant, trigger }, n.max(0) as usize)
                        })
                        .collect();
                    self.dispatcher.set_shared_backlogs(&counts);
                }
                Err(e) => tracing::debug!(error = %e, "counting the shared backlog failed"),
            }
            tokio::time::sleep(BACKLOG_COUNT).await;
        }
    }
}
