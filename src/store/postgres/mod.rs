//! The shared store: PostgreSQL, for many flowgate nodes on one queue.
//!
//! The store is opened in `connect` (pool, migrations, the database's clock).
//! Accepting is group-committed by the enqueuer (`enqueue`: one transaction per
//! batch, rows sent as arrays through `unnest`). Execution is claimed from the
//! database: unordered messages one by one under a lease (`claims`), ordered
//! lanes as a whole under a lane lease (`lanes`), so at most one message of a
//! lane runs at a time on all nodes; `leases` renews them. Records of
//! executions are written behind, in batches (`writer`).
//!
//! Every query runs as a task on the runtime the store was opened on: the pool's
//! connections live there, never on an HTTP worker thread.

mod admin;
mod claims;
mod connect;
mod deliveries;
mod enqueue;
mod lanes;
mod leases;
mod outbox;
mod plans;
mod rows;
mod subscriptions;
mod usage;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{AttemptRecord, MessageId, MessageView, Micros, NewMessage};

use super::error::Cause;
use super::types::{Completion, PendingMessage, StoreError};

pub use claims::{Claim, ClaimedMessage, Ended, LaneClaim, LaneMessage, TenantShares, Wakeup};

pub(super) const PURGE_CHUNK: i64 = 5_000;

/// How the store reaches PostgreSQL and how long a node's claims last.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub pool_size: usize,
    /// How long a request waits for a connection before 503.
    pub connect_timeout: Duration,
    /// A node's claim on a message or lane lapses this long after its last heartbeat.
    pub lease: Duration,
    /// The longest a statement waits for a lock (`lock_timeout`).
    pub lock_timeout: Duration,
    /// A session idle inside a transaction this long is ended by the server,
    /// releasing its locks (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction_timeout: Duration,
}

impl PgOptions {
    /// The default of both timeouts for a lease: half of it, at most 5 s. Below
    /// the lease, so that a node paused inside a transaction (holding a lane's
    /// row) loses its session and locks before its lease lapses, and others
    /// neither wait on it longer nor are kept from taking its work over.
    pub fn session_timeout(lease: Duration) -> Duration {
        (lease / 2).min(Duration::from_secs(5))
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        let lease = Duration::from_secs(15);
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            lease,
            lock_timeout: Self::session_timeout(lease),
            idle_in_transaction_timeout: Self::session_timeout(lease),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// How the notification listener connects (parsed from the URL once).
    listener: Arc<(tokio_postgres::Config, crate::pgtls::MakeRustls)>,
    rt: tokio::runtime::Handle,
    node: Arc<str>,
    lease: Duration,
    timeout: Duration,
    writer: mpsc::Sender<writer::Op>,
    closed: Arc<AtomicBool>,
    held: Arc<leases::Held>,
    /// The database's clock minus this machine's, in microseconds (see `now`).
    clock_offset: Arc<AtomicI64>,
    /// Added to this machine's clock: tests play a node whose clock is wrong.
    local_skew: Arc<AtomicI64>,
}

/// The store cannot serve, for a reason of its own (closed, its writer gone).
pub(crate) fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(why.into())
}

/// Tells every node (this one too) that the shared queue has work, once the
/// transaction `c` belongs to commits.
async fn notify_work<C: deadpool_postgres::GenericClient>(c: &C) -> Result<(), StoreError> {
    c.execute("SELECT pg_notify('flowgate_work', '')", &[])
        .await
        .map_err(db)?;
    Ok(())
}

/// A statement's error: an outage or a bug, by its SQLSTATE (see
/// `store::error::postgres`).
fn db(e: tokio_postgres::Error) -> StoreError {
    super::error::postgres(e)
}

/// Why no pooled connection could be had, in the database's or the network's
/// words (the pool's own wrapping says nothing an operator can act on).
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::{HookError, PoolError, TimeoutType};
    match e {
        // A connection that could not be made is the database away, whatever
        // it said (even credentials refused, which an operator mends).
        PoolError::Backend(e) => match db(e) {
            StoreError::Statement(cause) => StoreError::Unavailable(cause),
            other => other,
        },
        PoolError::PostCreateHook(HookError::Backend(e)) => db(e),
        PoolError::Timeout(TimeoutType::Wait) => {
            unavailable("every connection is busy and none came free in time")
        }
        PoolError::Timeout(TimeoutType::Create) => {
            unavailable("connecting to PostgreSQL timed out")
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            unavailable("checking a pooled connection timed out")
        }
        PoolError::Closed => unavailable("the store is closed"),
        e => StoreError::Unavailable(Cause::of(e)),
    }
}

/// This node's use of the shared store, for `/_metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PgStats {
    /// The pool's size limit (`pool_size`).
    pub max: usize,
    pub in_use: usize,
    pub idle: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
    /// Leases this node renews: messages it runs and ordered lanes it holds.
    pub messages_held: usize,
    pub lanes_held: usize,
    /// Leases this node lost (the work under them stopped), since it started.
    pub leases_lost: u64,
    /// Attempts' ends this node sent that were discarded as late.
    pub results_discarded: u64,
    /// How far the database's clock is followed from this machine's (µs; 0 while
    /// they agree to within `CLOCK_TOLERANCE`).
    pub clock_offset: Micros,
}

impl PgStore {
    /// The time by the database's clock, read through this machine's (in
    /// microseconds since the epoch). Leases are written by one node and judged by
    /// another: measured on one clock, two nodes whose clocks disagree by more than
    /// a lease would take each other's work while it runs, and an ordered lane
    /// could run on two nodes at once.
    pub fn now(&self) -> Micros {
        self.local_now() + self.clock_offset.load(Ordering::Relaxed)
    }

    fn local_now(&self) -> Micros {
        crate::domain::now_micros() + self.local_skew.load(Ordering::Relaxed)
    }

    /// Sets this node's machine clock off by `by` microseconds (for tests).
    #[doc(hidden)]
    pub fn skew_local_clock(&self, by: Micros) {
        self.local_skew.store(by, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PgStats {
        let s = self.pool.status();
        PgStats {
            max: s.max_size,
            in_use: s.size.saturating_sub(s.available),
            idle: s.available,
            waiting: s.waiting,
            messages_held: self.held.counts().0,
            lanes_held: self.held.counts().1,
            leases_lost: self.held.losses().0,
            results_discarded: self.held.losses().1,
            clock_offset: self.clock_offset.load(Ordering::Relaxed),
        }
    }

    /// This process's name in leases.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lease_us(&self) -> i64 {
        self.lease.as_micros() as i64
    }

    /// Runs `f` with a pooled connection as a task on the store's runtime.
    async fn with<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Self, deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.spawn_with(f).await
    }

    /// As `with`, but the work starts now, on the store's runtime; the future
    /// returned only waits for it.
    fn spawn_with<T, F, Fut>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(Self, deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let this = self.clone();
        let running = (!self.closed.load(Ordering::Relaxed)).then(|| {
            self.rt.spawn(async move {
                let client = this.pool.get().await.map_err(pool_error)?;
                f(this, client).await
            })
        });
        async move {
            match running {
                Some(handle) => handle
                    .await
                    .map_err(|e| StoreError::Unavailable(Cause::of(e)))?,
                None => Err(unavailable("the store is closed")),
            }
        }
    }

    /// Records an attempt's start: the message runs here, under this node's lease
    /// (renewed from now on; it is taken when the record is written).
    pub async fn started(&self, id: MessageId, attempt: AttemptRecord) {
        self.held
            .hold_message(id.as_uuid(), attempt.number, self.now() + self.lease_us());
        self.send(writer::Op::Started(id, attempt)).await
    }

    pub async fn finished(&self, c: Completion) {
        self.send(writer::Op::Finished(Box::new(c), None, None))
            .await
    }

    /// Records an attempt's end; `fail_status` is the status of the `fail` step
    /// that ended it, for a sync caller answered on another node. The answer
    /// comes once it is written: whether the end was taken, or discarded because
    /// its attempt is no longer the message's current one or its lease lapsed
    /// (false too when it could not be written). The attempt's lease is renewed
    /// until then.
    pub async fn end_attempt(
        &self,
        c: Completion,
        fail_status: Option<u16>,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Finished(Box::new(c), fail_status, Some(tx)))
            .await;
        rx
    }

    pub async fn record_executed(&self, m: NewMessage, c: Completion) {
        self.send(writer::Op::Executed(Box::new((m, c)))).await
    }

    async fn send(&self, op: writer::Op) {
        if self.writer.send(op).await.is_err() {
            tracing::error!("store writer has stopped; an execution record was not written");
        }
    }

    /// Reads a message, after the records this process sent before (bounded by the
    /// connect timeout, so a database that is away cannot hold a status lookup).
    pub async fn get(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        let _ = tokio::time::timeout(self.timeout, self.flush()).await;
        self.with(move |_, client| async move { rows::get(&client, id).await })
            .await
    }

    /// After a restart: attempts whose lease lapsed (their node stopped) end as
    /// interrupted and their messages are queued again (see `reclaim`); returns
    /// every open message (unfinished or blocking) in acceptance order.
    pub async fn recover(&self, now: Micros) -> Result<Vec<PendingMessage>, StoreError> {
        let _ = tokio::time::timeout(self.timeout, self.flush()).await;
        self.reclaim(now).await?;
        self.with(move |_, client| async move {
            let rows = client.query(RECOVER, &[]).await.map_err(db)?;
            rows.iter().map(rows::pending).collect()
        })
        .await
    }

    /// Deletes finished messages received before `before` (in chunks), and lanes
    /// with nothing left in them; returns how many messages.
    pub async fn purge(&self, before: Micros) -> Result<u64, StoreError> {
        let _ = tokio::time::timeout(self.timeout, self.flush()).await;
        self.with(move |_, client| async move {
            let mut total = 0u64;
            loop {
                let n = client
                    .execute(
                        PURGE,
                        &[&before, &PURGE_CHUNK, &admin::id_floor(before + 1000)],
                    )
                    .await
                    .map_err(db)?;
                total += n;
                if n < PURGE_CHUNK as u64 {
                    break;
                }
            }
            // An enqueue holding a lane's row makes this wait, then see its count.
            client
                .execute(
                    "DELETE FROM lanes WHERE pending = 0 AND holder IS NULL AND blocked_by IS NULL",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(total)
        })
        .await
    }

    /// Waits until every record sent before it is written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(unavailable("the store is closed"));
        }
        let (tx, rx) = oneshot::channel();
        self.send(writer::Op::Flush(tx)).await;
        rx.await
            .map_err(|_| unavailable("the store writer has stopped"))
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush().await;
        self.closed.store(true, Ordering::Relaxed);
        self.pool.close();
        flushed
    }

    /// What a store connection's session runs with: `lock_timeout` and
    /// `idle_in_transaction_session_timeout`, as the server reports them.
    #[doc(hidden)]
    pub async fn session_timeouts(&self) -> Result<(String, String), StoreError> {
        self.with(|_, client| async move {
            let row = client
                .query_one(
                    "SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok((row.get(0), row.get(1)))
        })
        .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.with(|_, client| async move {
            client.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        })
        .await
    }
}

/// Every open message (unfinished or blocking), in acceptance order: three
/// disjoint parts, each served by its partial index (messages_unordered already
/// in seq order, messages_lane and messages_blocking sorted), merged.
pub(super) const RECOVER: &str =
    "SELECT id, tenant, trigger, lane, mode, status, received_at, run_at, attempts, blocking, input
     FROM (SELECT * FROM messages WHERE lane IS NULL AND finished_at IS NULL
           UNION ALL
           SELECT * FROM messages WHERE lane IS NOT NULL AND finished_at IS NULL
           UNION ALL
           SELECT * FROM messages WHERE blocking AND lane IS NOT NULL AND finished_at IS NOT NULL) m
     ORDER BY seq";

/// A chunk (`$2`) of the finished messages received before `$1`. Served by the
/// UNIQUE index on id: a message's id (UUIDv7) is minted when it is received, so
/// old messages are low ids (`$3`, the smallest id of `$1`'s next millisecond).
pub(super) const PURGE: &str = "DELETE FROM messages WHERE id IN (
    SELECT id FROM messages
    WHERE id < $3 AND received_at < $1 AND finished_at IS NOT NULL AND NOT blocking
    LIMIT $2)";
