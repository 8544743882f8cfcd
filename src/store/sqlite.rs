//! The embedded store: one SQLite file in WAL mode, written by one thread.
//!
//! Every write goes through a channel to the writer thread, which takes whatever
//! has queued up (up to `MAX_BATCH` operations) and applies it in one transaction
//! with one fsync (`synchronous=FULL`): group commit. Reads go through the same
//! channel so they see every write sent before them.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{
    AttemptRecord, MessageId, MessageStatus, MessageView, Micros, Mode, NewMessage, Outcome,
    TenantName, TriggerName,
};

use super::error::sqlite;
use super::types::{Completion, EnqueueOutcome, PendingMessage, StoreError, Submitted};

const MAX_BATCH: usize = 2048;
const CHANNEL: usize = 65_536;
const PURGE_CHUNK: usize = 5_000;

/// A message about to be inserted, as text.
struct NewRow {
    id: String,
    tenant: String,
    trigger: String,
    lane: Option<String>,
    mode: &'static str,
    received_at: Micros,
    idempotency_key: Option<String>,
    input: String,
}

impl From<&NewMessage> for NewRow {
    fn from(m: &NewMessage) -> Self {
        Self {
            id: m.id.to_string(),
            tenant: m.tenant.as_str().to_owned(),
            trigger: m.trigger.as_str().to_owned(),
            lane: m.lane.clone(),
            mode: m.mode.as_str(),
            received_at: m.received_at,
            idempotency_key: m.idempotency_key.clone(),
            input: m.input_text(),
        }
    }
}

struct StartRow {
    id: String,
    number: u32,
    attempt: String,
}

/// The end of an attempt, as text.
struct FinishRow {
    id: String,
    number: u32,
    status: &'static str,
    run_at: Micros,
    finished_at: Option<Micros>,
    blocking: bool,
    response: Option<String>,
    trace: String,
    error: Option<String>,
    attempt: String,
}

impl From<&Completion> for FinishRow {
    fn from(c: &Completion) -> Self {
        let attempt = AttemptRecord {
            number: c.attempt,
            started_at: c.started_at,
            finished_at: Some(c.finished_at),
            outcome: Some(c.outcome),
            error: c.error.clone(),
            error_code: c.error_code.map(str::to_owned),
        };
        Self {
            id: c.id.to_string(),
            number: c.attempt,
            status: c.status.as_str(),
            run_at: c.run_at,
            finished_at: c.status.is_final().then_some(c.finished_at),
            blocking: c.blocking,
            response: c.response.as_ref().map(json_text),
            trace: c.trace.clone(),
            error: c.error.clone(),
            attempt: attempt_json(&attempt),
        }
    }
}

fn attempt_json(a: &AttemptRecord) -> String {
    json_text(a)
}

fn parse_attempts(log: &str) -> Vec<AttemptRecord> {
    let items: Vec<serde_json::Value> = serde_json::from_str(log).unwrap_or_default();
    items.iter().map(AttemptRecord::from_json).collect()
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "messages",
        include_str!("../../migrations/sqlite/0001_messages.sql"),
    ),
    (
        2,
        "message_inputs",
        include_str!("../../migrations/sqlite/0002_message_inputs.sql"),
    ),
    (
        3,
        "admin",
        include_str!("../../migrations/sqlite/0003_admin.sql"),
    ),
    (
        4,
        "generation",
        include_str!("../../migrations/sqlite/0004_generation.sql"),
    ),
];

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
type EnqueueResult = Result<Vec<EnqueueOutcome>, StoreError>;
pub(super) type AdminJob = Box<dyn FnOnce(&mut Connection) + Send>;

enum Op {
    Enqueue(Vec<NewRow>, Reply<Vec<EnqueueOutcome>>),
    Started(StartRow),
    Finished(Box<FinishRow>),
    RecordExecuted(Box<(NewRow, FinishRow)>),
    Get(MessageId, Reply<Option<MessageView>>),
    Recover(Micros, Reply<Vec<PendingMessage>>),
    Purge(Micros, Reply<u64>),
    Flush(Reply<()>),
    /// Work of the operators' view (`sqlite_admin`): runs after the batch commits
    /// and answers through its own channel.
    Admin(AdminJob),
    /// Stops the writer thread after committing what came before.
    Close(Reply<()>),
}

#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
    wake: Arc<Wake>,
    /// Transactions the writer thread has committed.
    commits: Arc<AtomicU64>,
    /// See `generation`.
    generation: i64,
}

fn unavailable(why: &str) -> StoreError {
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
        conn.pragma_update(None, "journal_mode", "WAL")
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

/// Execution records that arrive with nothing else (no caller waits for their
/// commit) wait this long for more to join them, up to `LINGER_BATCH` of them:
/// at thousands of sync requests a second, many small commits, each writing the
/// tail pages of the table and of every index again, become a few larger ones.
/// Anything else that arrives (an accept, a read, a flush) ends the wait.
const RECORDS_LINGER: std::time::Duration = std::time::Duration::from_millis(1);
const LINGER_BATCH: usize = 256;

/// How an operation with a caller waiting ends a lingering batch's wait. Records
/// sent meanwhile do not wake the writer thread (it parks, so the channel has no
/// waker to call): at thousands of sync requests a second, a wake-up per record
/// cost the writer and the HTTP workers more than the records themselves.
#[derive(Default)]
struct Wake {
    urgent: std::sync::atomic::AtomicBool,
    thread: std::sync::OnceLock<thread::Thread>,
}

impl Wake {
    fn urgent(&self) {
        self.urgent.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The operations one transaction applies, and a close request that ends the thread.
struct Batch {
    ops: Vec<Op>,
    close: Option<Reply<()>>,
    records_only: bool,
}

impl Batch {
    fn new(first: Op) -> Self {
        let mut b = Self {
            ops: Vec::new(),
            close: None,
            records_only: true,
        };
        b.add(first);
        b
    }

    fn add(&mut self, op: Op) {
        match op {
            Op::Close(reply) => self.close = Some(reply),
            op => {
                self.records_only &=
                    matches!(op, Op::Started(_) | Op::Finished(_) | Op::RecordExecuted(_));
                self.ops.push(op);
            }
        }
    }

    /// Takes whatever has queued up, without waiting.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Op>) {
        while self.close.is_none() && self.ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => self.add(op),
                Err(_) => break,
            }
        }
    }

    fn lingers(&self) -> bool {
        self.close.is_none() && self.records_only && self.ops.len() < LINGER_BATCH
    }

    /// Waits up to `linger` for more records, taking them in when it wakes: at the
    /// deadline, or at once when an operation with a caller waiting arrives.
    fn linger(&mut self, rx: &mut mpsc::Receiver<Op>, wake: &Wake, linger: std::time::Duration) {
        let until = std::time::Instant::now() + linger;
        // A flag left from an operation already taken in; one sent after this
        // sets it again (after it is in the channel).
        wake.urgent.store(false, Ordering::Release);
        loop {
            self.drain(rx);
            if !self.lingers() {
                return;
            }
            if wake.urgent.swap(false, Ordering::AcqRel) {
                self.drain(rx);
                return;
            }
            let now = std::time::Instant::now();
            if now >= until {
                return;
            }
            thread::park_timeout(until - now);
        }
    }
}

/// The writer thread: batches of operations, one transaction each.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    linger: std::time::Duration,
    commits: &AtomicU64,
    wake: &Wake,
) {
    let mut full_sync = true;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Batch::new(first);
        batch.drain(&mut rx);
        if batch.lingers() {
            batch.linger(&mut rx, wake, linger);
        }
        let Batch { ops, close, .. } = batch;
        if !ops.is_empty() {
            // Accepted messages must survive power loss: their commit fsyncs the
            // WAL (and with it every earlier commit), and it comes first, so that
            // callers waiting for a 202 do not also wait for execution records.
            // Those only need to survive the process, which WAL without fsync gives.
            // A repeated Idempotency-Key reads the first message's state, so a
            // batch with keys keeps its order (one transaction).
            let reads_state = ops.iter().any(|op| match op {
                Op::Enqueue(batch, _) => batch.iter().any(|m| m.idempotency_key.is_some()),
                _ => false,
            });
            let (accepts, records): (Vec<Op>, Vec<Op>) = if reads_state {
                (ops, Vec::new())
            } else {
                ops.into_iter()
                    .partition(|op| matches!(op, Op::Enqueue(..)))
            };
            for (ops, accepting) in [(accepts, true), (records, false)] {
                if ops.is_empty() {
                    continue;
                }
                if accepting != full_sync {
                    let level = if accepting { "FULL" } else { "NORMAL" };
                    match conn.pragma_update(None, "synchronous", level) {
                        Ok(()) => full_sync = accepting,
                        Err(e) => tracing::error!(error = %e, "cannot set synchronous={level}"),
                    }
                }
                apply_batch(&mut conn, ops);
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(reply) = close {
            rx.close();
            let _ = reply.send(Ok(()));
            return;
        }
    }
}

fn apply_batch(conn: &mut Connection, ops: Vec<Op>) {
    let mut reads = Vec::new();
    let mut waiting: Vec<(Reply<Vec<EnqueueOutcome>>, EnqueueResult)> = Vec::new();
    let mut flushes = Vec::new();
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            fail_all(ops, &sqlite(e));
            return;
        }
    };
    // An attempt that started and finished within this batch is written once.
    let finishing: std::collections::HashSet<(String, u32)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Finished(r) => Some((r.id.clone(), r.number)),
            _ => None,
        })
        .collect();
    for op in ops {
        match op {
            Op::Started(r) if finishing.contains(&(r.id.clone(), r.number)) => {}
            Op::Enqueue(batch, reply) => {
                // All of a batch or none of it: a savepoint per batch.
                let r = tx.savepoint().map_err(sqlite).and_then(|sp| {
                    let out = batch
                        .iter()
                        .map(|m| insert_new(&sp, m))
                        .collect::<Result<Vec<_>, _>>()?;
                    sp.commit().map_err(sqlite)?;
                    Ok(out)
                });
                waiting.push((reply, r));
            }
            Op::Started(r) => log_err(started(&tx, &r), "record attempt start"),
            Op::Finished(r) => log_err(finished(&tx, &r), "record attempt end"),
            Op::RecordExecuted(b) => log_err(record_executed(&tx, &b.0, &b.1), "record execution"),
            Op::Flush(reply) | Op::Close(reply) => flushes.push(reply),
            read => reads.push(read),
        }
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, r) in waiting {
                let _ = reply.send(r);
            }
            for reply in flushes {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            let e = sqlite(e);
            for (reply, _) in waiting {
                let _ = reply.send(Err(e.clone()));
            }
            for reply in flushes {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
    for op in reads {
        match op {
            Op::Get(id, reply) => {
                let _ = reply.send(get(conn, id));
            }
            Op::Recover(now, reply) => {
                let _ = reply.send(recover(conn, now));
            }
            Op::Purge(before, reply) => {
                let _ = reply.send(purge(conn, before));
            }
            Op::Admin(job) => job(conn),
            _ => {}
        }
    }
}

fn fail_all(ops: Vec<Op>, why: &StoreError) {
    tracing::error!(error = %why, "store transaction could not start");
    for op in ops {
        match op {
            Op::Enqueue(_, r) => drop(r.send(Err(why.clone()))),
            Op::Get(_, r) => drop(r.send(Err(why.clone()))),
            Op::Recover(_, r) => drop(r.send(Err(why.clone()))),
            Op::Purge(_, r) => drop(r.send(Err(why.clone()))),
            Op::Flush(r) | Op::Close(r) => drop(r.send(Err(why.clone()))),
            _ => {}
        }
    }
}

fn log_err(r: Result<(), StoreError>, what: &str) {
    if let Err(e) = r {
        tracing::error!(error = %e, "{what}");
    }
}

fn insert_new(tx: &Connection, m: &NewRow) -> Result<EnqueueOutcome, StoreError> {
    // Served by the primary key; the partial unique index rejects a repeated Idempotency-Key.
    let n = tx
        .prepare_cached(
            "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at, idempotency_key)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?7) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                m.id, m.tenant, m.trigger, m.lane, m.mode, m.received_at, m.idempotency_key,
            ])
        })
        .map_err(sqlite)?;
    if n == 1 {
        insert_input(tx, &m.input)?;
        return Ok(EnqueueOutcome::Inserted);
    }
    // Served by messages_idempotency.
    let existing: Option<String> = tx
        .query_row(
            "SELECT id FROM messages WHERE tenant = ?1 AND trigger = ?2 AND idempotency_key = ?3",
            params![m.tenant, m.trigger, m.idempotency_key],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    let Some(id) = existing.and_then(|s| s.parse::<MessageId>().ok()) else {
        return Err(StoreError::Corrupt(format!(
            "message {} conflicts but has no twin",
            m.id
        )));
    };
    match get(tx, id)? {
        Some(view) => Ok(EnqueueOutcome::Duplicate(Box::new(view))),
        None => Err(StoreError::Corrupt(format!("message {id} vanished"))),
    }
}

/// The input of the message just inserted on this connection (same seq).
fn insert_input(conn: &Connection, input: &str) -> Result<(), StoreError> {
    // Served by the rowid: appends.
    conn.prepare_cached("INSERT INTO message_inputs (seq, input) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![conn.last_insert_rowid(), input]))
        .map_err(sqlite)?;
    Ok(())
}

/// Records an attempt's start. Here and in `finished`, a first attempt's entry is
/// the whole log (no attempts before it), so its text is written as it is:
/// SQLite's JSON functions (parsing the log and the entry and writing them back)
/// were ~10,000 instructions of each accepted message's writes. Later attempts
/// edit the log in place.
fn started(tx: &Transaction<'_>, r: &StartRow) -> Result<(), StoreError> {
    // Served by the UNIQUE index on id.
    tx.prepare_cached(
        "UPDATE messages SET status = 'running', attempts = ?2,
                attempt_log = CASE WHEN ?2 = 1 THEN '[' || ?3 || ']'
                    ELSE json_insert(attempt_log, '$[#]', json(?3)) END
         WHERE id = ?1 AND finished_at IS NULL AND attempts < ?2",
    )
    .and_then(|mut s| s.execute(params![r.id, r.number, r.attempt]))
    .map_err(sqlite)?;
    Ok(())
}

/// Records an attempt's end, fenced by attempt: only while the message is
/// unfinished and that attempt is its current one: running with its start
/// recorded, or newer than every attempt recorded (a start written in the same
/// batch is skipped, see `apply_batch`). A late end (its attempt was interrupted
/// by a restart, or a newer one started) is discarded and logged.
fn finished(tx: &Transaction<'_>, r: &FinishRow) -> Result<(), StoreError> {
    // Served by the UNIQUE index on id. The attempt replaces its start entry (or is
    // appended when the start was never recorded).
    let n = tx
        .prepare_cached(
            "UPDATE messages SET status = ?2, attempts = ?3, run_at = ?4, finished_at = ?5, blocking = ?6,
                open = (?5 IS NULL OR ?6), response = COALESCE(?7, response), trace = ?8, error = ?9,
                attempt_log = CASE WHEN ?3 = 1 THEN '[' || ?10 || ']'
                    WHEN json_array_length(attempt_log) >= ?3
                    THEN json_set(attempt_log, '$[' || (?3 - 1) || ']', json(?10))
                    ELSE json_insert(attempt_log, '$[#]', json(?10)) END
             WHERE id = ?1 AND finished_at IS NULL
               AND ((status = 'running' AND attempts = ?3) OR (status <> 'running' AND attempts < ?3))",
        )
        .and_then(|mut s| {
            s.execute(params![
                r.id, r.status, r.number, r.run_at, r.finished_at, r.blocking, r.response, r.trace, r.error,
                r.attempt,
            ])
        })
        .map_err(sqlite)?;
    if n == 0 {
        tracing::warn!(
            message = r.id,
            attempt = r.number,
            "a late result was discarded: the attempt is no longer the message's current one"
        );
    }
    Ok(())
}

fn record_executed(tx: &Transaction<'_>, m: &NewRow, r: &FinishRow) -> Result<(), StoreError> {
    let n = tx.prepare_cached(
        "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at, attempts,
                               attempt_log, finished_at, idempotency_key, response, trace, error, open)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, '[' || ?9 || ']', ?10, ?11, ?12, ?13, ?14, ?10 IS NULL)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.id, m.tenant, m.trigger, m.lane, m.mode, r.status, m.received_at, r.number, r.attempt,
            r.finished_at, m.idempotency_key, r.response, r.trace, r.error,
        ])
    })
    .map_err(sqlite)?;
    if n == 1 {
        insert_input(tx, &m.input)?;
    }
    Ok(())
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(super) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{v}`"))
}

pub(super) fn get(conn: &Connection, id: MessageId) -> Result<Option<MessageView>, StoreError> {
    // Served by the UNIQUE index on id.
    let row = conn
        .prepare_cached(
            "SELECT m.tenant, m.trigger, m.lane, m.mode, m.status, m.received_at, m.finished_at,
                    m.response, m.error, i.input, m.trace, m.attempt_log
             FROM messages m LEFT JOIN message_inputs i ON i.seq = m.seq WHERE m.id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ),
                    (r.get::<_, String>(3)?, r.get::<_, String>(4)?),
                    (r.get::<_, i64>(5)?, r.get::<_, Option<i64>>(6)?),
                    (
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ),
                    (
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, String>(11)?,
                    ),
                ))
            })
            .optional()
        })
        .map_err(sqlite)?;
    let Some((
        (tenant, trigger, lane),
        (mode, status),
        (received_at, finished_at),
        (response, error),
        (input, trace, log),
    )) = row
    else {
        return Ok(None);
    };
    let view = MessageView {
        id,
        tenant: TenantName::parse(&tenant).map_err(|_| corrupt("tenant", &tenant))?,
        trigger: TriggerName::parse(&trigger).map_err(|_| corrupt("trigger", &trigger))?,
        lane,
        mode: parse_mode(&mode)?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        received_at,
        finished_at,
        attempts: parse_attempts(&log),
        response: None,
        error,
        input: serde_json::Value::Null,
        trace: serde_json::Value::Null,
    };
    super::read_documents(
        view,
        input.as_deref(),
        trace.as_deref(),
        response.as_deref(),
    )
    .map(Some)
}

fn parse_mode(s: &str) -> Result<Mode, StoreError> {
    match s {
        "sync" => Ok(Mode::Sync),
        "async" => Ok(Mode::Async),
        other => Err(corrupt("mode", other)),
    }
}

type PendingRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    i64,
    u32,
    bool,
    Option<String>,
);

fn recover(conn: &mut Connection, now: Micros) -> Result<Vec<PendingMessage>, StoreError> {
    let tx = conn.transaction().map_err(sqlite)?;
    // Attempts that were running when the process stopped end as interrupted.
    let running: Vec<(i64, String)> = tx
        // Served by messages_open.
        .prepare("SELECT seq, attempt_log FROM messages WHERE open = 1 AND status = 'running'")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(sqlite)?;
    for (seq, log) in running {
        let mut attempts = parse_attempts(&log);
        for a in attempts.iter_mut().filter(|a| a.finished_at.is_none()) {
            a.finished_at = Some(now);
            a.outcome = Some(Outcome::Interrupted);
            a.error = Some("flowgate stopped while this attempt ran".into());
            a.error_code = Some("interrupted".into());
        }
        let log = format!(
            "[{}]",
            attempts
                .iter()
                .map(attempt_json)
                .collect::<Vec<_>>()
                .join(",")
        );
        tx.execute(
            "UPDATE messages SET status = 'queued', attempt_log = ?2 WHERE seq = ?1",
            params![seq, log],
        )
        .map_err(sqlite)?;
    }
    // Served by the partial index messages_open (same predicate).
    let rows: Vec<PendingRow> = tx
        .prepare(
            "SELECT m.id, m.tenant, m.trigger, m.lane, m.mode, m.status, m.received_at, m.run_at,
                    m.attempts, m.blocking, i.input
             FROM messages m LEFT JOIN message_inputs i ON i.seq = m.seq WHERE m.open = 1 ORDER BY m.seq",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?,
                    r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sqlite)?;
    tx.commit().map_err(sqlite)?;
    rows.into_iter()
        .map(
            |(
                id,
                tenant,
                trigger,
                lane,
                mode,
                status,
                received_at,
                run_at,
                attempts,
                blocking,
                input,
            )| {
                Ok(PendingMessage {
                    id: id.parse().map_err(|_| corrupt("id", &id))?,
                    tenant: TenantName::parse(&tenant).map_err(|_| corrupt("tenant", &tenant))?,
                    trigger: TriggerName::parse(&trigger)
                        .map_err(|_| corrupt("trigger", &trigger))?,
                    lane,
                    mode: parse_mode(&mode)?,
                    status: MessageStatus::parse(&status)
                        .ok_or_else(|| corrupt("status", &status))?,
                    received_at,
                    run_at,
                    attempts,
                    blocking,
                    input: input.map_or(Ok(serde_json::Value::Null), |s| super::read_input(&s)),
                })
            },
        )
        .collect()
}

/// The smallest UUIDv7 text of the millisecond `us` falls in: ids below it are older.
pub(super) fn id_floor(us: Micros) -> String {
    let ms = (us.max(0) / 1000) as u128;
    uuid::Uuid::from_u128(ms << 80).hyphenated().to_string()
}

fn purge(conn: &mut Connection, before: Micros) -> Result<u64, StoreError> {
    let floor = id_floor(before);
    let mut total = 0u64;
    loop {
        let tx = conn.transaction().map_err(sqlite)?;
        // Served by the UNIQUE index on id: ids sort by creation time.
        let seqs: Vec<i64> = tx
            .prepare_cached(
                "SELECT seq FROM messages WHERE id < ?1 AND received_at < ?2 AND open = 0 LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![floor, before, PURGE_CHUNK as i64], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sqlite)?;
        for seq in &seqs {
            // Both served by their rowid.
            tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])
                .map_err(sqlite)?;
            tx.execute("DELETE FROM message_inputs WHERE seq = ?1", [seq])
                .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)?;
        total += seqs.len() as u64;
        if seqs.len() < PURGE_CHUNK {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executed(n: i64) -> (NewMessage, Completion) {
        let id = MessageId::new();
        let m = NewMessage {
            id,
            tenant: TenantName::parse("acme").unwrap(),
            trigger: TriggerName::parse("ItemPrice").unwrap(),
            lane: None,
            mode: Mode::Sync,
            received_at: n,
            idempotency_key: None,
            input: serde_json::json!({"n": n}),
            body_json: None,
        };
        let c = Completion {
            id,
            attempt: 1,
            started_at: n,
            finished_at: n,
            outcome: Outcome::Succeeded,
            status: MessageStatus::Succeeded,
            run_at: n,
            blocking: false,
            response: None,
            trace: "[]".into(),
            error: None,
            error_code: None,
        };
        (m, c)
    }

    /// Execution records wait for more to join their commit, but not for long:
    /// one that nothing follows is committed on its own, and any read ends the wait.
    #[tokio::test]
    async fn execution_records_share_commits_and_lone_ones_are_committed() {
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.db");
        let store =
            SqliteStore::open_with(path.to_str().unwrap(), Duration::from_millis(400)).unwrap();
        let reader = Connection::open(&path).unwrap();
        let count = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
                .unwrap()
        };
        // Two records 50 ms apart: one commit, once the wait is over.
        let before = store.commits();
        let sent = Instant::now();
        for n in 0..2 {
            let (m, c) = executed(n);
            store.record_executed(m, c).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&reader), 0, "committed before the wait was over");
        while count(&reader) < 2 {
            assert!(sent.elapsed() < Duration::from_secs(10), "never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sent.elapsed() >= Duration::from_millis(400));
        assert_eq!(store.commits() - before, 1);

        // A read that follows a record does not wait, and sees it.
        let (m, c) = executed(2);
        let id = m.id;
        let sent = Instant::now();
        store.record_executed(m, c).await;
        assert!(store.get(id).await.unwrap().is_some());
        assert!(sent.elapsed() < Duration::from_millis(300));
        store.close().await.unwrap();
    }

    /// Each opening of the file is a new generation, above every one before.
    #[tokio::test]
    async fn the_generation_grows_at_each_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation.db");
        let path = path.to_str().unwrap();
        let first = SqliteStore::open(path).unwrap();
        first.close().await.unwrap();
        let second = SqliteStore::open(path).unwrap();
        assert_eq!(second.generation(), first.generation() + 1);
        assert!(first.generation() >= 1);
        second.close().await.unwrap();
    }

    /// A database made before inputs had a table of their own keeps every input.
    #[tokio::test]
    async fn upgrading_moves_inputs_to_their_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let id = MessageId::new();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0].2).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (1, 'messages', 0)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (id, tenant, trigger, mode, status, received_at, run_at, input)
                 VALUES (?1, 'acme', 'Orders', 'async', 'queued', 1, 1, '{\"order\":7}')",
                [id.to_string()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(path.to_str().unwrap()).unwrap();
        let view = store
            .get(id)
            .await
            .unwrap()
            .expect("the message is still there");
        assert_eq!(view.input, serde_json::json!({"order": 7}));
        let pending = store.recover(2).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].input, Ok(serde_json::json!({"order": 7})));
        store.close().await.unwrap();
    }
}
