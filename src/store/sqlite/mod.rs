//! The embedded store: one SQLite file in WAL mode, written by one thread.
//!
//! Every write goes through a channel to the writer thread, which takes whatever
//! has queued up (up to `MAX_BATCH` operations) and applies it in one transaction
//! with one fsync (`synchronous=FULL`): group commit. Reads go through the same
//! channel so they see every write sent before them.

mod admin;
mod deliveries;
mod log;
mod outbox;
mod reads;
mod rows;
mod subscriptions;
#[cfg(test)]
mod tests;
mod usage;
mod writer;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{AttemptRecord, MessageId, MessageView, Micros, NewMessage};

use super::error::sqlite;
use super::types::{Completion, EnqueueOutcome, PendingMessage, StoreError, Submitted};
use log::attempt_json;
use rows::{FinishRow, NewRow, StartRow};
use writer::{Op, RECORDS_LINGER, Reply, Wake, writer};

const CHANNEL: usize = 65_536;
/// The page size of a new database file, see `open_with`.
const PAGE_SIZE: i64 = 1024;
/// The WAL's size at which it is checkpointed, see `open_with`.
const WAL_BYTES: i64 = 4 << 20;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "messages",
        include_str!("../../../migrations/sqlite/0001_messages.sql"),
    ),
    (
        2,
        "message_inputs",
        include_str!("../../../migrations/sqlite/0002_message_inputs.sql"),
    ),
    (
        3,
        "admin",
        include_str!("../../../migrations/sqlite/0003_admin.sql"),
    ),
    (
        4,
        "generation",
        include_str!("../../../migrations/sqlite/0004_generation.sql"),
    ),
    (
        5,
        "consumer_usage",
        include_str!("../../../migrations/sqlite/0005_consumer_usage.sql"),
    ),
    (
        6,
        "consumers",
        include_str!("../../../migrations/sqlite/0006_consumers.sql"),
    ),
    (
        7,
        "subscriptions",
        include_str!("../../../migrations/sqlite/0007_subscriptions.sql"),
    ),
    (
        8,
        "events",
        include_str!("../../../migrations/sqlite/0008_events.sql"),
    ),
];

#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
    wake: Arc<Wake>,
    /// Transactions the writer thread has committed.
    commits: Arc<AtomicU64>,
    /// See `generation`.
    generation: i64,
}

pub(super) fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(why.into())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        Self::open_with(path, RECORDS_LINGER)
    }

    /// `open`, with execution records held up to `linger` for more to join them.
    fn open_with(path: &str, linger: std::time::Duration) -> Result<Self, StoreError> {
        let path = Path::new(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", path.display())))?;
        // A new file gets 1 KiB pages (an existing one keeps its size: SQLite only
        // changes it by rebuilding the file). Every commit writes each page it
        // touched whole to the WAL, and a group commit touches the tail page of
        // `messages`, `message_inputs` and each index: with 4 KiB pages that was
        // ~14 KB written per accepted 1 KB message, ~9 KB with 1 KiB pages (and a
        // 1.4 KB input left a third of each 4 KiB page empty). Must come first.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // Checkpoint when the WAL holds ~4 MiB whatever the page size (SQLite's
        // default is 1,000 pages): each checkpoint writes every page changed since
        // the last one once more, so the tail pages that every commit rewrites are
        // written to the file once per 4 MiB of WAL, as with 4 KiB pages.
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sqlite)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_BYTES / page_size.max(512))
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        migrate(&mut conn)?;
        // Served by the table's one row.
        let generation = conn
            .query_row(
                "UPDATE generation SET value = value + 1 RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let commits = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Wake::default());
        let handle = thread::Builder::new()
            .name("flowgate-sqlite".into())
            .spawn({
                let commits = commits.clone();
                let wake = wake.clone();
                move || writer(conn, rx, linger, &commits, &wake)
            })
            .map_err(|e| StoreError::Config(format!("cannot start the store thread: {e}")))?;
        let _ = wake.thread.set(handle.thread().clone());
        Ok(Self {
            tx,
            wake,
            commits,
            generation,
        })
    }

    /// One more each time the file was opened (each start of flowgate): ordered
    /// flows read it as `.meta.lane_epoch`. On one node a lane changes hands
    /// only when flowgate restarts, and what ran before ran under a lower value.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(Reply<T>) -> Op,
    ) -> Result<T, StoreError> {
        self.begin(op).await.await
    }

    /// Sends `op` to the writer thread now; the future returned waits for its answer.
    async fn begin<T>(
        &self,
        op: impl FnOnce(Reply<T>) -> Op,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(op(tx)).await;
        self.wake.urgent();
        async move {
            sent.map_err(|_| unavailable("the store thread has stopped"))?;
            rx.await
                .map_err(|_| unavailable("the store thread has stopped"))?
        }
    }

    async fn send(&self, op: Op) {
        if self.tx.send(op).await.is_err() {
            tracing::error!("store thread has stopped; an execution record was not written");
        }
    }

    // Rows are serialized here, on the caller's thread: the writer thread is the
    // one serial resource and only binds text.
    pub async fn enqueue(&self, batch: &[NewMessage]) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.submit(batch).await.await
    }

    /// Hands a batch to the writer thread now; the future returned resolves once it
    /// is committed. Batches are written in the order they are submitted.
    pub async fn submit(&self, batch: &[NewMessage]) -> Submitted {
        let rows = batch.iter().map(NewRow::from).collect();
        Box::pin(self.begin(|r| Op::Enqueue(rows, r)).await)
    }
    pub async fn started(&self, id: MessageId, attempt: AttemptRecord) {
        self.send(Op::Started(StartRow {
            id: id.to_string(),
            number: attempt.number,
            attempt: attempt_json(&attempt),
        }))
        .await
    }
    pub async fn finished(&self, c: Completion) {
        self.send(Op::Finished(Box::new(FinishRow::from(&c)))).await
    }
    pub async fn record_executed(&self, m: NewMessage, c: Completion) {
        let row = (NewRow::from(&m), FinishRow::from(&c));
        self.send(Op::RecordExecuted(Box::new(row))).await
    }
    pub async fn get(&self, id: MessageId) -> Result<Option<MessageView>, StoreError> {
        self.call(|r| Op::Get(id, r)).await
    }
    pub async fn recover(&self, now: Micros) -> Result<Vec<PendingMessage>, StoreError> {
        self.call(|r| Op::Recover(now, r)).await
    }
    pub async fn purge(&self, before: Micros) -> Result<u64, StoreError> {
        self.call(|r| Op::Purge(before, r)).await
    }
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(Op::Flush).await
    }
    pub async fn close(&self) -> Result<(), StoreError> {
        self.call(Op::Close).await
    }

    /// Transactions committed so far (each batch the writer thread applied).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the writer thread, after every write sent before it.
    pub(super) async fn run_admin<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(|reply| {
            Op::Admin(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .map_err(sqlite)?;
    let applied = tx
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .and_then(|mut q| {
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(i64, String)>, _>>()
        })
        .map_err(sqlite)?;
    super::check_migrations_known(&applied, MIGRATIONS)?;
    for (version, name, sql) in MIGRATIONS {
        if !applied.iter().any(|(v, _)| v == version) {
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Config(format!("migration {version} ({name}): {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, crate::domain::now_micros()],
            )
            .map_err(sqlite)?;
        }
    }
    tx.commit().map_err(sqlite)
}
