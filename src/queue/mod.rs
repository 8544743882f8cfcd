//! Between the HTTP layer and the engine: accepting messages durably (group
//! commit), running them (lanes, concurrency, retries), answering sync callers,
//! recovery after a restart and retention.
//!
//! - `execution`: the embedded and the shared execution model behind one
//!   interface, chosen once in `startup`.
//! - `enqueuer`: group commit, on a thread of its own.
//! - `dispatcher`: backlog, permits and one attempt's result; the embedded
//!   model's lanes and retries (`Queue::run_due` steps them by hand).
//! - `claimer`: the shared model: work claimed from the store under leases.
//! - `wake`: the handle the dispatcher wakes the claimer through.
//! - `job`, `waiters`, `sync_exec`, `admin`: a message while it runs, callers
//!   waiting for it, the sync fast path, operators' actions.
//!
//! Dependencies point one way: execution -> claimer -> dispatcher -> wake,
//! job; the claimer reaches the store only through `store::SharedStore`.

mod admin;
mod claimer;
pub mod dispatcher;
pub mod enqueuer;
mod execution;
mod job;
mod sync_exec;
pub mod waiters;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{MessageId, MessageView, NewMessage, TriggerKey, now_micros};
use crate::flow::SharedCatalog;
use crate::store::{EnqueueOutcome, Store, StoreError};

pub use admin::LaneError;
pub use dispatcher::Dispatcher;
pub use execution::Execution;
pub use sync_exec::SyncResult;
pub use waiters::{WaitOutcome, WaitReceiver};

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the trigger's backlog is full")]
    BacklogFull,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The queue's bounds, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// `max_backlog`: messages per trigger queued or running on this node.
    pub max_backlog: usize,
    /// `store_timeout`: how long a caller waits for the store.
    pub store_timeout: Duration,
    /// `tenant_max_running`: a tenant's executions from the queue at once.
    pub tenant_max_running: usize,
}

#[derive(Clone)]
pub struct Queue {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    submit: mpsc::Sender<enqueuer::Submission>,
    /// How long a caller waits for the store to take its message (`store_timeout`).
    store_timeout: Duration,
    /// How messages run: here, or claimed from a shared store.
    execution: Arc<Execution>,
}

impl Queue {
    /// Starts the enqueuer; executions run on the current tokio runtime once
    /// `recover` has run. `execution` is the model chosen for `store`.
    pub fn start(
        store: Store,
        execution: Execution,
        catalog: SharedCatalog,
        limits: QueueLimits,
        executor: crate::engine::Executor,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::current();
        let store_timeout = limits.store_timeout;
        let dispatcher = Arc::new(Dispatcher::new(
            store.clone(),
            catalog,
            limits.max_backlog,
            runtime,
            executor,
            limits.tenant_max_running,
            execution.runs(),
        ));
        let (tx, rx) = mpsc::channel(enqueuer::MAX_BATCH * 8);
        enqueuer::start(
            rx,
            store.clone(),
            dispatcher.clone(),
            execution.batches_in_flight(),
        )
        .map_err(|e| StoreError::Config(format!("cannot start the enqueuer thread: {e}")))?;
        execution.prepare(&dispatcher);
        Ok(Self {
            store,
            dispatcher,
            submit: tx,
            store_timeout,
            execution: Arc::new(execution),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The execution model this queue runs (for what differs between them:
    /// where lanes live, the shared store's figures).
    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// Stepped by hand (`Execution::embedded_by_hand`): runs what is due by
    /// `now`, with `now` as its clock; see [`Dispatcher::run_due`].
    pub async fn run_due(&self, now: crate::domain::Micros) -> usize {
        self.dispatcher.run_due(now).await
    }

    /// As the node stops: see [`Execution::stop`].
    pub async fn stop(&self, within: Duration) {
        self.execution.stop(within).await
    }

    /// Re-queues every unfinished message after a restart, then starts executing:
    /// nothing is claimed or run before recovery has finished (see
    /// [`Execution::recover`]). Call once, before serving.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        self.execution.recover(&self.store, &self.dispatcher).await
    }

    /// Stores a message durably and queues it. Returns once it is committed: the
    /// id assigned (acceptance order) and whether it was new or a repeat of an
    /// Idempotency-Key. With `wait`, the caller is told how the execution went.
    pub async fn accept(
        &self,
        message: NewMessage,
        wait: bool,
    ) -> Result<(MessageId, EnqueueOutcome, Option<WaitReceiver>), AcceptError> {
        let key = TriggerKey {
            tenant: message.tenant.clone(),
            trigger: message.trigger.clone(),
        };
        if !self.dispatcher.reserve(&key) {
            return Err(AcceptError::BacklogFull);
        }
        let (wtx, wrx) = if wait {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        let (reply, mut answer) = oneshot::channel();
        let sent = self
            .submit
            .send(enqueuer::Submission {
                message,
                waiter: wtx,
                reply,
            })
            .await;
        let stopped = || StoreError::Unavailable("the enqueuer has stopped".into());
        let result = match sent {
            Ok(()) => match tokio::time::timeout(self.store_timeout, &mut answer).await {
                Ok(answered) => answered.unwrap_or_else(|_| Err(stopped())),
                Err(_) => {
                    // A database that stops answering (frozen, or cut off without
                    // the connection breaking) must not hold the caller: it gets 503
                    // and may send again. The message may still be stored when the
                    // database answers, and then runs (at least once); the backlog
                    // slot is settled when that answer comes.
                    let dispatcher = self.dispatcher.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        if !matches!(answer.await, Ok(Ok((_, EnqueueOutcome::Inserted)))) {
                            dispatcher.release(&key);
                        }
                    });
                    self.dispatcher.metrics().store_error();
                    return Err(self.no_answer().into());
                }
            },
            Err(_) => Err(stopped()),
        };
        match result {
            Ok((id, EnqueueOutcome::Inserted)) => Ok((id, EnqueueOutcome::Inserted, wrx)),
            Ok((id, dup)) => {
                self.dispatcher.release(&key);
                Ok((id, dup, None))
            }
            Err(e) => {
                self.dispatcher.release(&key);
                self.dispatcher.metrics().store_error();
                Err(e.into())
            }
        }
    }

    /// The failed message holding `lane` of trigger `key`, if one does (a
    /// store that does not answer within `store_timeout` is unavailable).
    pub async fn lane_blocked_by(
        &self,
        key: &TriggerKey,
        lane: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        self.in_time(self.execution.lane_blocked_by(&self.dispatcher, key, lane))
            .await
    }

    /// A message's state for its status URL; a store that does not answer within
    /// `store_timeout` is reported unavailable rather than holding the caller.
    pub async fn message(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        self.in_time(self.store.get(id)).await
    }

    /// Whether the store answers within `store_timeout` (for `/_ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.in_time(self.store.ping()).await
    }

    /// A store operation a caller waits for, given up after `store_timeout`.
    async fn in_time<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.store_timeout, op)
            .await
            .unwrap_or_else(|_| Err(self.no_answer()))
    }

    fn no_answer(&self) -> StoreError {
        StoreError::Unavailable(
            format!(
                "the store did not answer within {}",
                humantime::format_duration(self.store_timeout)
            )
            .into(),
        )
    }

    /// Deletes finished messages older than `retention`, now and then every `every`.
    pub fn start_retention(&self, retention: Duration, every: Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let before = now_micros() - retention.as_micros() as i64;
                match store.purge(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "retention: deleted old messages"),
                    Err(e) => tracing::warn!(error = %e, "retention: purge failed"),
                }
                match store.purge_deliveries(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "retention: deleted old event deliveries"),
                    Err(e) => tracing::warn!(error = %e, "retention: delivery purge failed"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}
