//! The shared store: PostgreSQL, for many flowgate nodes on one queue.
//!
//! Accepting is group-committed by the enqueuer (one transaction per batch, rows
//! sent as arrays through `unnest`). Execution is claimed from the database
//! (`claims`): unordered messages one by one under a lease, ordered lanes as a
//! whole under a lane lease, so at most one message of a lane runs at a time on
//! all nodes. Records of executions are written behind, in batches (`writer`).
//!
//! Every query runs as a task on the runtime the store was opened on: the pool's
//! connections live there, never on an HTTP worker thread.

mod admin;
mod claims;
mod deliveries;
mod leases;
mod rows;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{AttemptRecord, MessageId, MessageView, Micros, NewMessage};

use super::error::Cause;
use super::types::{Completion, EnqueueOutcome, PendingMessage, StoreError};

pub use claims::{ClaimedMessage, Ended, LaneClaim, LaneMessage, TenantShares, Wakeup};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "messages",
        include_str!("../../../migrations/postgres/0001_messages.sql"),
    ),
    (
        2,
        "fail_status",
        include_str!("../../../migrations/postgres/0002_fail_status.sql"),
    ),
    (
        3,
        "admin",
        include_str!("../../../migrations/postgres/0003_admin.sql"),
    ),
    (
        4,
        "no_held_index",
        include_str!("../../../migrations/postgres/0004_no_held_index.sql"),
    ),
    (
        5,
        "lz4",
        include_str!("../../../migrations/postgres/0005_lz4.sql"),
    ),
    (
        6,
        "no_trigger_index",
        include_str!("../../../migrations/postgres/0006_no_trigger_index.sql"),
    ),
    (
        7,
        "no_finished_index",
        include_str!("../../../migrations/postgres/0007_no_finished_index.sql"),
    ),
    (
        8,
        "no_seq_index",
        include_str!("../../../migrations/postgres/0008_no_seq_index.sql"),
    ),
    (
        9,
        "no_running_status_index",
        include_str!("../../../migrations/postgres/0009_no_running_status_index.sql"),
    ),
    (
        10,
        "lane_epochs",
        include_str!("../../../migrations/postgres/0010_lane_epochs.sql"),
    ),
];

/// Set on each of the store's connections as it is made (with the lock and
/// idle-in-transaction timeouts, see `session_settings`). The store's statements
/// are each written to be served by an index (the query plan tests check them);
/// these rule out the two kinds of plan that pass those indexes by. The partial
/// indexes of unfinished messages keep an entry for every message finished since
/// the last vacuum (on a large table, a day's traffic or more): a bitmap scan
/// visits each such entry's row on every claim and backlog count, while a plain
/// index scan marks the dead ones and skips them from then on. And statistics
/// that lag the queue (a few per cent unfinished, no page yet all-visible) make a
/// whole-table scan look cheaper than the index for the backlog count. Set by
/// SQL rather than as startup options, which a connection pooler may refuse.
const SESSION_SETTINGS: &str = "SET enable_bitmapscan = off; SET enable_seqscan = off";

/// Any key shared by every flowgate node: serialises migrations.
const MIGRATION_LOCK: i64 = 0x666c_6f77_6761_7465;
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

/// Every setting made on a store connection as it is made.
fn session_settings(options: &PgOptions) -> String {
    format!(
        "{SESSION_SETTINGS}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
        options.lock_timeout.as_millis().max(1),
        options.idle_in_transaction_timeout.as_millis().max(1),
    )
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

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string().into())
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

/// Clock differences smaller than this are not followed (see `sync_clock`).
const CLOCK_TOLERANCE: Micros = 250_000;

/// The database's clock minus ours, from our clock just before and just after it
/// was read: the reading is taken to be from halfway between.
fn clock_offset(before: Micros, database: Micros, after: Micros) -> Micros {
    database - (before + (after - before) / 2)
}

/// How long a store connection may go without the server acknowledging what was
/// sent to it: generous beside `store_timeout`, short beside TCP's own ~15 minutes.
fn tcp_user_timeout(store_timeout: Duration) -> Duration {
    (store_timeout * 5).max(Duration::from_secs(10))
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
    /// Connects, runs the migrations under an advisory lock and starts the writer.
    /// Call from inside the runtime that will run the store's tasks.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let (mut config, tls) =
            crate::pgtls::parse(url).map_err(|e| StoreError::Config(format!("store URL: {e}")))?;
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        // A database cut off without the connection breaking (a lost route, a host
        // gone) leaves sent data unacknowledged: past this the kernel closes the
        // connection, where it would otherwise retransmit for a quarter of an hour
        // with the connection's statements waiting. Unanswered keepalive probes
        // count as well, so idle connections (the listener) notice too.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(tcp_user_timeout(options.connect_timeout));
        }
        // Operators may name each node's connections in the URL.
        if config.get_application_name().is_none() {
            config.application_name("flowgate");
        }
        let mut listen = config.clone();
        listen.application_name(format!(
            "{}-listen",
            config.get_application_name().unwrap_or_default()
        ));
        let listener = Arc::new((listen, tls.clone()));
        // The node's name in leases (`holder`): its connections' application name
        // (operators may name each node in the URL), made unique per process.
        let node: Arc<str> = format!(
            "{}-{}",
            config.get_application_name().unwrap_or("flowgate"),
            uuid::Uuid::now_v7().simple()
        )
        .into();
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Without timeouts `get()` waits for ever while the database is away.
        let settings: Arc<str> = session_settings(&options).into();
        let pool = Pool::builder(manager)
            .post_create(Hook::async_fn(move |client, _| {
                let settings = settings.clone();
                Box::pin(async move {
                    client
                        .batch_execute(&settings)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?;
        let (tx, rx) = mpsc::channel(writer::CHANNEL);
        let store = Self {
            pool,
            listener,
            rt: tokio::runtime::Handle::current(),
            node,
            lease: options.lease,
            timeout: options.connect_timeout,
            writer: tx,
            closed: Arc::new(AtomicBool::new(false)),
            held: Arc::default(),
            clock_offset: Arc::default(),
            local_skew: Arc::default(),
        };
        store.migrate().await?;
        store.sync_clock().await?;
        tokio::spawn(writer::run(store.clone(), rx));
        Ok(store)
    }

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

    /// Measures how far the database's clock is from this machine's (at start and
    /// now and then, so a clock that is stepped is followed). Three readings, the
    /// quickest one counts. A difference below `CLOCK_TOLERANCE` is left alone:
    /// leases last seconds, and following a few milliseconds of measuring noise
    /// would only set this node's records apart from its neighbours'.
    pub async fn sync_clock(&self) -> Result<(), StoreError> {
        let measured = self
            .with(|store, client| async move {
                let stmt = client
                    .prepare_cached(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
                    )
                    .await
                    .map_err(db)?;
                let mut best: Option<(Micros, Micros)> = None;
                for _ in 0..3 {
                    let before = store.local_now();
                    let row = client.query_one(&stmt, &[]).await.map_err(db)?;
                    let after = store.local_now();
                    let reading = (after - before, clock_offset(before, row.get(0), after));
                    if best.is_none_or(|b| reading.0 < b.0) {
                        best = Some(reading);
                    }
                }
                Ok(best.map_or(0, |b| b.1))
            })
            .await?;
        let current = self.clock_offset.load(Ordering::Relaxed);
        let followed = if measured.abs() < CLOCK_TOLERANCE {
            0
        } else {
            measured
        };
        if (followed - current).abs() >= CLOCK_TOLERANCE {
            if followed != 0 {
                tracing::warn!(
                    offset_ms = followed / 1000,
                    "this machine's clock is off from the database's; leases follow the database's"
                );
            }
            self.clock_offset.store(followed, Ordering::Relaxed);
        }
        Ok(())
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

    async fn migrate(&self) -> Result<(), StoreError> {
        self.with(|_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Another node's migration may take a while (an index rebuilt on a
            // large table): wait for it, and for running nodes' row locks.
            tx.batch_execute("SET LOCAL lock_timeout = 0")
                .await
                .map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(db)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await
            .map_err(db)?;
            let applied: Vec<(i64, String)> = tx
                .query(
                    "SELECT version, name FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            super::check_migrations_known(&applied, MIGRATIONS)?;
            for (version, name, sql) in MIGRATIONS {
                if applied.iter().any(|(v, _)| v == version) {
                    continue;
                }
                tx.batch_execute(sql).await.map_err(|e| {
                    StoreError::Config(format!("migration {version} ({name}): {e}"))
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    &[version, name, &crate::domain::now_micros()],
                )
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        })
        .await
    }

    /// Stores a batch in one transaction. Each lane's row is locked first (in key
    /// order, so batches from several nodes cannot deadlock): a lane's messages then
    /// take `seq` values in commit order, which is what "the lowest unfinished
    /// message" relies on across nodes.
    pub async fn enqueue(&self, batch: &[NewMessage]) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.enqueue_claiming(batch, &[]).await
    }

    /// As `enqueue`, and the messages marked in `mine` (unordered ones) are stored
    /// already claimed by this node, their first attempt started under its lease:
    /// the node that accepted them runs them without claiming them back, and if it
    /// dies their leases lapse and any node takes them over.
    ///
    /// The batch is read before this returns; the future owns what it needs.
    pub fn enqueue_claiming(
        &self,
        batch: &[NewMessage],
        mine: &[bool],
    ) -> impl Future<Output = Result<Vec<EnqueueOutcome>, StoreError>> + Send + 'static {
        let rows = rows::NewRows::from(batch);
        let mine: Vec<bool> = (0..batch.len())
            .map(|i| mine.get(i).copied().unwrap_or(false) && batch[i].lane.is_none())
            .collect();
        let now = self.now();
        self.spawn_with(move |store, mut client| async move {
            let lanes = rows.lanes();
            if lanes.0.is_empty() {
                // One statement is a transaction of its own: no BEGIN and COMMIT
                // round trips. Duplicates are read and others told after it commits.
                let out = insert_batch(&client, &store, &rows, &mine, now, false).await?;
                store.hold_claimed(&rows, &mine, &out, now);
                return Ok(out);
            }
            let tx = client.transaction().await.map_err(db)?;
            // Served by the lanes primary key.
            let lock = tx
                .prepare_cached(
                    "INSERT INTO lanes (tenant, trigger, lane)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ORDER BY 1, 2, 3
                     ON CONFLICT (tenant, trigger, lane) DO UPDATE SET pending = lanes.pending",
                )
                .await
                .map_err(db)?;
            tx.execute(&lock, &[&lanes.0, &lanes.1, &lanes.2])
                .await
                .map_err(db)?;
            let out = insert_batch(&tx, &store, &rows, &mine, now, true).await?;
            tx.commit().await.map_err(db)?;
            store.hold_claimed(&rows, &mine, &out, now);
            Ok(out)
        })
    }

    /// Leases taken as messages were stored (their first attempt, from `now`) are
    /// renewed by the heartbeat from now on.
    fn hold_claimed(
        &self,
        rows: &rows::NewRows,
        mine: &[bool],
        out: &[EnqueueOutcome],
        now: Micros,
    ) {
        let until = now + self.lease_us();
        for ((id, mine), o) in rows.id.iter().zip(mine).zip(out) {
            if *mine && matches!(o, EnqueueOutcome::Inserted) {
                self.held.hold_message(*id, 1, until);
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

/// The insert of a batch's messages (`$1`-`$9` arrays, one element a message;
/// those marked `mine` stored running under this node's lease, `$13` their attempt
/// log), and what it does on a conflict: `ON CONFLICT DO NOTHING` where the batch
/// has an Idempotency-Key (the partial unique index rejects a repeated one), nothing
/// where it has none. Ids are minted fresh for every message, so a batch without
/// keys cannot conflict, and a plain insert spares PostgreSQL the speculative
/// insertion `ON CONFLICT` makes of every row (~3 µs of its ~55 µs a message).
macro_rules! insert_messages {
    ($on_conflict:literal) => {
        concat!(insert_messages!(), $on_conflict)
    };
    () => {
        "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at,
                               idempotency_key, input, holder, lease_until, attempts, attempt_log)
         SELECT id, tenant, trigger, lane, mode, CASE WHEN mine THEN 'running' ELSE 'queued' END,
                received_at, received_at, ikey, input,
                CASE WHEN mine THEN $10::text END, CASE WHEN mine THEN $11::int8 + $12::int8 END,
                CASE WHEN mine THEN 1 ELSE 0 END,
                CASE WHEN mine THEN $13::jsonb ELSE '[]'::jsonb END
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                     $7::text[], $8::text[], $9::bool[])
              AS u(id, tenant, trigger, lane, mode, received_at, ikey, input, mine)"
    };
}

/// A batch without ordered messages: the insert alone.
const INSERT_UNORDERED: &str =
    concat!(insert_messages!(" ON CONFLICT DO NOTHING"), " RETURNING id");

/// As `INSERT_UNORDERED`, for a batch without Idempotency-Keys: every row goes in.
const INSERT_UNORDERED_NEW: &str = insert_messages!();

/// A batch with ordered messages: the lanes' counts grow by what was really
/// inserted, in the same statement.
macro_rules! insert_counting_lanes {
    ($on_conflict:literal) => {
        concat!(
            "WITH ins AS (",
            insert_messages!($on_conflict),
            " RETURNING id, tenant, trigger, lane),
             counted AS (
                UPDATE lanes l SET pending = l.pending + c.n
                FROM (SELECT tenant, trigger, lane, count(*) AS n FROM ins
                      WHERE lane IS NOT NULL GROUP BY 1, 2, 3) c
                WHERE l.tenant = c.tenant AND l.trigger = c.trigger AND l.lane = c.lane)
             SELECT id FROM ins"
        )
    };
}

const INSERT_COUNTING_LANES: &str = insert_counting_lanes!(" ON CONFLICT DO NOTHING");

/// As `INSERT_COUNTING_LANES`, for a batch without Idempotency-Keys.
const INSERT_COUNTING_LANES_NEW: &str = insert_counting_lanes!("");

/// Inserts a batch's messages (those in `mine` claimed by this node, their first
/// attempt started at `now`), counts them into their lanes, finds the first
/// message of each repeated Idempotency-Key, and tells other nodes of work left
/// for them. Ordered messages (`ordered`: the batch has some) need their lanes
/// locked first, in the same transaction.
async fn insert_batch<C: deadpool_postgres::GenericClient>(
    client: &C,
    store: &PgStore,
    rows: &rows::NewRows,
    mine: &[bool],
    now: Micros,
    ordered: bool,
) -> Result<Vec<EnqueueOutcome>, StoreError> {
    // A claimed message's attempt log is built once for the batch, not per row by
    // PostgreSQL's JSON functions.
    let claimed_log = serde_json::Value::Array(vec![rows::attempt_json(&AttemptRecord {
        number: 1,
        started_at: now,
        finished_at: None,
        outcome: None,
        error: None,
        error_code: None,
    })]);
    let keyed = rows.ikey.iter().any(Option::is_some);
    let insert = client
        .prepare_cached(match (ordered, keyed) {
            (true, true) => INSERT_COUNTING_LANES,
            (true, false) => INSERT_COUNTING_LANES_NEW,
            (false, true) => INSERT_UNORDERED,
            (false, false) => INSERT_UNORDERED_NEW,
        })
        .await
        .map_err(db)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
        &rows.id,
        &rows.tenant,
        &rows.trigger,
        &rows.lane,
        &rows.mode,
        &rows.received_at,
        &rows.ikey,
        &rows.input,
        &mine,
        &&*store.node,
        &now,
        &store.lease_us(),
        &claimed_log,
    ];
    // Which messages went in: every one of a batch without keys (its count says
    // so, with no ids sent back), else those the insert returns.
    let inserted: Option<std::collections::HashSet<uuid::Uuid>> = if !keyed && !ordered {
        let n = client.execute(&insert, &params).await.map_err(db)?;
        if n != rows.id.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "a batch of {} messages stored {n}",
                rows.id.len()
            )));
        }
        None
    } else {
        let returned = client.query(&insert, &params).await.map_err(db)?;
        Some(returned.iter().map(|r| r.get(0)).collect())
    };
    let went_in = |id: &uuid::Uuid| inserted.as_ref().is_none_or(|set| set.contains(id));
    let mut out = Vec::with_capacity(rows.id.len());
    for (i, id) in rows.id.iter().enumerate() {
        if went_in(id) {
            out.push(EnqueueOutcome::Inserted);
            continue;
        }
        // Served by messages_idempotency.
        let first = client
            .query_opt(
                "SELECT id FROM messages WHERE tenant = $1 AND trigger = $2 AND idempotency_key = $3",
                &[&rows.tenant[i], &rows.trigger[i], &rows.ikey[i]],
            )
            .await
            .map_err(db)?
            .map(|r| rows::message_id(r.get(0)));
        let Some(first) = first else {
            return Err(StoreError::Corrupt(format!(
                "message {id} conflicts but has no twin"
            )));
        };
        match rows::get(client, first).await? {
            Some(view) => out.push(EnqueueOutcome::Duplicate(Box::new(view))),
            None => return Err(StoreError::Corrupt(format!("message {first} vanished"))),
        }
    }
    // Other nodes hear of work only when some is left for them.
    let unclaimed = rows
        .id
        .iter()
        .zip(mine)
        .any(|(id, mine)| !mine && went_in(id));
    if unclaimed {
        notify_work(client).await?;
    }
    Ok(out)
}
