//! The writer thread: every operation arrives through one channel and is
//! applied in batches, one transaction (and one fsync) a batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{MessageId, MessageView, Micros};
use crate::store::error::sqlite;
use crate::store::types::{EnqueueOutcome, PendingMessage, StoreError};

use super::reads::{get, purge, recover};
use super::rows::{FinishRow, NewRow, StartRow, finished, insert_new, record_executed, started};

const MAX_BATCH: usize = 2048;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
pub(super) type EnqueueResult = Result<Vec<EnqueueOutcome>, StoreError>;
type AdminJob = Box<dyn FnOnce(&mut Connection) + Send>;

pub(super) enum Op {
    Enqueue(Vec<NewRow>, Reply<Vec<EnqueueOutcome>>),
    Started(StartRow),
    Finished(Box<FinishRow>),
    RecordExecuted(Box<(NewRow, FinishRow)>),
    Get(MessageId, Reply<Option<MessageView>>),
    Recover(Micros, Reply<Vec<PendingMessage>>),
    Purge(Micros, Reply<u64>),
    Flush(Reply<()>),
    /// Work of the operators' view (`admin`): runs after the batch commits
    /// and answers through its own channel.
    Admin(AdminJob),
    /// Stops the writer thread after committing what came before.
    Close(Reply<()>),
}

/// Execution records that arrive with nothing else (no caller waits for their
/// commit) wait this long for more to join them, up to `LINGER_BATCH` of them:
/// at thousands of sync requests a second, many small commits, each writing the
/// tail pages of the table and of every index again, become a few larger ones.
/// Anything else that arrives (an accept, a read, a flush) ends the wait.
pub(super) const RECORDS_LINGER: std::time::Duration = std::time::Duration::from_millis(1);
const LINGER_BATCH: usize = 256;

/// How an operation with a caller waiting ends a lingering batch's wait. Records
/// sent meanwhile do not wake the writer thread (it parks, so the channel has no
/// waker to call): at thousands of sync requests a second, a wake-up per record
/// cost the writer and the HTTP workers more than the records themselves.
#[derive(Default)]
pub(super) struct Wake {
    urgent: std::sync::atomic::AtomicBool,
    pub(super) thread: std::sync::OnceLock<thread::Thread>,
}

impl Wake {
    pub(super) fn urgent(&self) {
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
pub(super) fn writer(
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
            // Accepted messages must survive power loss: a batch with any commits
            // with an fsync of the WAL (and with it every earlier commit). Execution
            // records only need to survive the process, which WAL without fsync
            // gives, so a batch of records alone commits without one. Accepts and
            // the records that arrived with them share one transaction: both write
            // the tail pages of `messages` and of its indexes, and as two commits
            // each of those pages went to the WAL (and to disk) twice.
            let accepting = ops.iter().any(|op| matches!(op, Op::Enqueue(..)));
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
    // Set when SQLite has rolled the whole transaction back (a full disk, an
    // I/O error): nothing more runs in it, and nothing in it is answered as
    // stored. (A later savepoint would otherwise start and commit a
    // transaction of its own, storing messages whose callers are told no.)
    let mut rolled_back: Option<StoreError> = None;
    for op in ops {
        if let Some(why) = &rolled_back {
            match op {
                Op::Enqueue(_, reply) => drop(reply.send(Err(why.clone()))),
                Op::Flush(reply) | Op::Close(reply) => flushes.push(reply),
                Op::Started(_) | Op::Finished(_) | Op::RecordExecuted(_) => {}
                read => reads.push(read),
            }
            continue;
        }
        let failed = match op {
            Op::Started(r) if finishing.contains(&(r.id.clone(), r.number)) => None,
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
                let failed = r.as_ref().err().cloned();
                waiting.push((reply, r));
                failed
            }
            Op::Started(r) => log_err(started(&tx, &r), "record attempt start"),
            Op::Finished(r) => log_err(finished(&tx, &r), "record attempt end"),
            Op::RecordExecuted(b) => log_err(record_executed(&tx, &b.0, &b.1), "record execution"),
            Op::Flush(reply) | Op::Close(reply) => {
                flushes.push(reply);
                None
            }
            read => {
                reads.push(read);
                None
            }
        };
        if let Some(e) = failed
            && tx.is_autocommit()
        {
            tracing::error!(error = %e, "the store's transaction was rolled back; the rest of its batch is refused");
            rolled_back = Some(e);
        }
    }
    let committed = match rolled_back {
        Some(e) => {
            // Already rolled back by SQLite; dropping it sends nothing that matters.
            drop(tx);
            Err(e)
        }
        None => tx.commit().map_err(|e| {
            tracing::error!(error = %e, "store commit failed");
            sqlite(e)
        }),
    };
    match committed {
        Ok(()) => {
            for (reply, r) in waiting {
                let _ = reply.send(r);
            }
            for reply in flushes {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) => {
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

/// Logs a record's failure; the error, for the batch to see whether it ended
/// the transaction.
fn log_err(r: Result<(), StoreError>, what: &str) -> Option<StoreError> {
    let e = r.err()?;
    tracing::error!(error = %e, "{what}");
    Some(e)
}
