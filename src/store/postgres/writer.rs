//! Records of executions, written behind in batches: whatever has queued up goes
//! in one transaction. Results are fenced by attempt: an attempt's end is taken
//! only while that attempt is the message's current one and this node's lease on
//! it is live; a late result (the message was taken over, or its lease lapsed)
//! is discarded and logged, and whoever waits on it is told.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{AttemptRecord, MessageId, NewMessage};
use crate::store::types::{Completion, StoreError};

use super::outbox::insert_events;
use super::rows::attempt_json;
use super::{PgStore, db};
use crate::store::OutboxEvent;

pub const CHANNEL: usize = 65_536;
const MAX_BATCH: usize = 2048;
const RETRIES: u32 = 20;
/// How long a batch of records waits for company before it is written. Records
/// are written behind, so nobody waits on them but a flush (which ends the wait);
/// at a few thousand attempts a second the wait takes several transactions into
/// one, and each transaction costs PostgreSQL a commit and its backend a wake-up.
const LINGER: Duration = Duration::from_millis(1);

/// The batch that `first` opens: what arrives within `LINGER`, ended early by a
/// flush (someone waits on it) or by a full batch.
async fn gather(rx: &mut mpsc::Receiver<Op>, first: Op) -> Vec<Op> {
    let mut ops = vec![first];
    let deadline = tokio::time::Instant::now() + LINGER;
    while ops.len() < MAX_BATCH && !matches!(ops.last(), Some(Op::Flush(_))) {
        let next = match rx.try_recv() {
            Ok(op) => op,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(op)) => op,
                    Ok(None) | Err(_) => break,
                }
            }
        };
        ops.push(next);
    }
    ops
}

pub enum Op {
    Started(MessageId, AttemptRecord),
    /// An attempt's end, the status of the `fail` step that ended it, and who
    /// is told whether it was taken.
    Finished(Box<Completion>, Option<u16>, Option<oneshot::Sender<bool>>),
    Executed(Box<(NewMessage, Completion)>),
    Flush(oneshot::Sender<()>),
}

pub async fn run(store: PgStore, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let ops = gather(&mut rx, first).await;
        let (mut writes, mut flushes, mut told) = (Vec::new(), Vec::new(), Vec::new());
        let mut finished: Vec<(uuid::Uuid, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Flush(reply) => flushes.push(reply),
                Op::Finished(c, fail, reply) => {
                    finished.push((c.id.as_uuid(), c.attempt));
                    if let Some(reply) = reply {
                        told.push((c.id.as_uuid(), reply));
                    }
                    writes.push(Op::Finished(c, fail, None));
                }
                op => writes.push(op),
            }
        }
        store.held.ending(&finished);
        let writes = std::sync::Arc::new(writes);
        let mut tries = 0;
        let discarded = loop {
            let w = writes.clone();
            match store
                .with(move |store, mut client| async move { apply(&store, &mut client, &w).await })
                .await
            {
                Ok(discarded) => {
                    for f in flushes.drain(..) {
                        let _ = f.send(());
                    }
                    break Some(discarded);
                }
                Err(e)
                    if tries < RETRIES
                        && !store.closed.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    tries += 1;
                    tracing::warn!(error = %e, "writing execution records failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    // The messages run again when their leases lapse (at-least-once).
                    tracing::error!(error = %e, records = writes.len(), "execution records dropped");
                    break None;
                }
            }
        };
        for (id, reply) in told {
            let taken = discarded.as_ref().is_some_and(|d| !d.contains(&id));
            let _ = reply.send(taken);
        }
        store.held.release(finished);
    }
}

/// Attempts' ends that were not taken (see `END_ATTEMPTS`), logged.
type Discarded = std::collections::HashSet<uuid::Uuid>;

async fn apply(
    store: &PgStore,
    client: &mut deadpool_postgres::Object,
    ops: &[Op],
) -> Result<Discarded, StoreError> {
    let quiet = |c: &Completion| c.events.is_empty();
    if ops
        .iter()
        .all(|op| matches!(op, Op::Finished(c, ..) if quiet(c)))
    {
        // Only attempts' ends without events (flushes are answered by `run`,
        // never written): one statement, a transaction of its own, with no
        // BEGIN and COMMIT round trips. Ends with events take the transaction
        // below, which writes their events beside them.
        let finished: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Finished(c, fail, _) => Some((c.as_ref(), *fail)),
                _ => None,
            })
            .collect();
        if finished.is_empty() {
            return Ok(Discarded::new());
        }
        return apply_completions(&*client, store, &finished).await;
    }
    let tx = client.transaction().await.map_err(db)?;
    let mut executed = Vec::new();
    let mut finished = Vec::new();
    let mut started = Vec::new();
    for op in ops {
        match op {
            Op::Started(id, a) => started.push((id.as_uuid(), a)),
            Op::Finished(c, fail, _) => finished.push((c.as_ref(), *fail)),
            Op::Executed(b) => executed.push((&b.0, &b.1)),
            Op::Flush(_) => {}
        }
    }
    if !started.is_empty() {
        apply_starts(&tx, store, &started).await?;
    }
    if !executed.is_empty() {
        let mut inserted = insert_executed(&tx, &executed).await?;
        // A row inserted once: the events of its first record only (a repeat
        // in the same batch was not inserted).
        let events: Vec<&OutboxEvent> = executed
            .iter()
            .filter(|(m, _)| inserted.remove(&m.id.as_uuid()))
            .flat_map(|(_, c)| c.events.iter())
            .collect();
        insert_events(&tx, &events).await?;
    }
    let discarded = if finished.is_empty() {
        Discarded::new()
    } else {
        write_ends(&tx, store, &finished).await?
    };
    tx.commit().await.map_err(db)?;
    Ok(discarded)
}

fn attempt_of(c: &Completion) -> serde_json::Value {
    attempt_json(&c.attempt_record())
}

fn response_text(c: &Completion) -> Option<String> {
    c.response
        .as_ref()
        .and_then(|r| serde_json::to_string(r).ok())
}

/// Marks messages running under this node's lease, with their attempt started.
/// A start that arrives after its attempt's end (or a later attempt's start) is
/// dropped by the guard. An attempt left open by a node that stopped is closed
/// as interrupted first (ordered lanes: the next holder runs the message again).
/// A row locked by another writer is skipped, never waited for: that is its
/// lane's results being committed, and waiting in any order could deadlock.
async fn apply_starts<C: GenericClient>(
    tx: &C,
    store: &PgStore,
    started: &[(uuid::Uuid, &AttemptRecord)],
) -> Result<(), StoreError> {
    let id: Vec<uuid::Uuid> = started.iter().map(|s| s.0).collect();
    let number: Vec<i32> = started.iter().map(|s| s.1.number as i32).collect();
    let attempt: Vec<serde_json::Value> = started.iter().map(|s| attempt_json(s.1)).collect();
    // Served by the UNIQUE index on id. Unfinished is said by status, not by
    // `finished_at IS NULL`: that predicate would let the planner scan a partial
    // index of unfinished messages, which holds an entry for every message
    // finished since the last vacuum.
    let stmt = tx
        .prepare_cached(
            "UPDATE messages m SET status = 'running', attempts = u.number, holder = $1, lease_until = $2,
                    attempt_log = (CASE WHEN m.status = 'running' AND jsonb_array_length(m.attempt_log) > 0
                        THEN jsonb_set(m.attempt_log, ARRAY[(jsonb_array_length(m.attempt_log) - 1)::text],
                             (m.attempt_log -> -1) || jsonb_build_object('finished_at', $3::int8,
                                'outcome', 'interrupted',
                                'error', 'the node running this attempt stopped or lost its lease'))
                        ELSE m.attempt_log END) || jsonb_build_array(u.attempt)
             FROM (SELECT u.* FROM unnest($4::uuid[], $5::int4[], $6::jsonb[]) AS u(id, number, attempt)
                   JOIN messages x ON x.id = u.id
                   WHERE x.status IN ('queued', 'running', 'retrying') AND x.attempts < u.number
                   FOR UPDATE OF x SKIP LOCKED) u
             WHERE m.id = u.id AND m.status IN ('queued', 'running', 'retrying') AND m.attempts < u.number",
        )
        .await
        .map_err(db)?;
    let now = store.now();
    tx.execute(
        &stmt,
        &[
            &&*store.node,
            &(now + store.lease_us()),
            &now,
            &id,
            &number,
            &attempt,
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Messages executed before they were stored (sync requests answered in time).
/// Returns the ids inserted when some of them carry events (else none: the
/// statement returns nothing it need not).
async fn insert_executed<C: GenericClient>(
    tx: &C,
    rows: &[(&NewMessage, &Completion)],
) -> Result<std::collections::HashSet<uuid::Uuid>, StoreError> {
    let n = rows.len();
    let (mut id, mut tenant, mut trigger, mut mode, mut status) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut received, mut attempts, mut log, mut finished_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ikey, mut input, mut response, mut trace, mut error) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut consumer, mut key_id) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (m, c) in rows {
        id.push(m.id.as_uuid());
        tenant.push(m.tenant.as_str());
        trigger.push(m.trigger.as_str());
        mode.push(m.mode.as_str());
        status.push(c.status.as_str());
        received.push(m.received_at);
        attempts.push(c.attempt as i32);
        log.push(serde_json::Value::Array(vec![attempt_of(c)]));
        finished_at.push(c.status.is_final().then_some(c.finished_at));
        ikey.push(m.idempotency_key.as_deref());
        input.push(m.input_text());
        response.push(response_text(c));
        trace.push(c.trace.as_str());
        error.push(c.error.as_deref());
        let who = m.consumer();
        consumer.push(who.label);
        key_id.push(who.key_id);
    }
    // Served by the UNIQUE index on id.
    const INSERT_EXECUTED: &str =
            "INSERT INTO messages (id, tenant, trigger, mode, status, received_at, run_at, attempts,
                                   attempt_log, finished_at, idempotency_key, input, response, trace, error,
                                   consumer, key_id)
             SELECT id, tenant, trigger, mode, status, received_at, received_at, attempts, log,
                    finished_at, ikey, input, response, trace, error, consumer, key_id
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                         $7::int4[], $8::jsonb[], $9::int8[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::text[], $16::text[])
                  AS u(id, tenant, trigger, mode, status, received_at, attempts, log, finished_at, ikey,
                       input, response, trace, error, consumer, key_id)
             ON CONFLICT DO NOTHING";
    let with_events = rows.iter().any(|(_, c)| !c.events.is_empty());
    let stmt = if with_events {
        tx.prepare_cached(&format!("{INSERT_EXECUTED} RETURNING id"))
            .await
    } else {
        tx.prepare_cached(INSERT_EXECUTED).await
    }
    .map_err(db)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
        &id,
        &tenant,
        &trigger,
        &mode,
        &status,
        &received,
        &attempts,
        &log,
        &finished_at,
        &ikey,
        &input,
        &response,
        &trace,
        &error,
        &consumer,
        &key_id,
    ];
    if !with_events {
        tx.execute(&stmt, &params).await.map_err(db)?;
        return Ok(Default::default());
    }
    let inserted = tx.query(&stmt, &params).await.map_err(db)?;
    Ok(inserted.iter().map(|r| r.get(0)).collect())
}

/// The ends of a batch of attempts (see `apply_completions`). Served by the
/// UNIQUE index on id and the lanes primary key: unfinished is said by status, as
/// in `apply_starts`. An unordered message takes the end of its current attempt
/// from its holder (`$11`) while its lease is live at `$13`; a lane's message
/// (fenced by the lane's holder and epoch, see `commit_lane`) of no attempt
/// older than the last recorded. The attempt replaces its start entry, or is
/// appended when the start was never written. Callers waiting on other nodes
/// for sync messages that finished are told through NOTIFY (sent at commit),
/// 200 ids a payload: a payload is at most 8,000 bytes. Returns the ends taken,
/// the notifications, and the ids of the ends discarded.
pub(super) const END_ATTEMPTS: &str = "WITH u AS (
    SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int8[], $5::int8[],
                         $6::bool[], $7::text[], $8::text[], $9::text[], $10::jsonb[], $12::int4[])
        AS u(id, number, status, run_at, finished_at, blocking, response, trace, error, attempt,
             fail_status)),
 done AS (
    UPDATE messages m SET status = u.status, attempts = u.number, run_at = u.run_at,
           finished_at = u.finished_at, blocking = u.blocking,
           response = COALESCE(u.response, m.response), trace = u.trace, error = u.error,
           fail_status = u.fail_status, holder = NULL, lease_until = NULL,
           attempt_log = CASE WHEN jsonb_array_length(m.attempt_log) >= u.number
               THEN jsonb_set(m.attempt_log, ARRAY[(u.number - 1)::text], u.attempt)
               ELSE m.attempt_log || jsonb_build_array(u.attempt) END
    FROM u
    WHERE m.id = u.id AND m.status IN ('queued', 'running', 'retrying')
      AND CASE WHEN m.lane IS NOT NULL THEN m.attempts <= u.number
          ELSE m.status = 'running' AND m.holder = $11 AND m.attempts = u.number
               AND m.lease_until >= $13 END
    RETURNING m.id, m.tenant, m.trigger, m.lane, m.mode, u.finished_at IS NOT NULL AS final,
              u.blocking),
 lanes_done AS (
    UPDATE lanes l SET pending = l.pending - c.n, blocked_by = COALESCE(c.blocked, l.blocked_by)
    FROM (SELECT tenant, trigger, lane, count(*) AS n,
                 (array_agg(id) FILTER (WHERE blocking))[1] AS blocked
          FROM done WHERE lane IS NOT NULL AND final GROUP BY 1, 2, 3) c
    WHERE l.tenant = c.tenant AND l.trigger = c.trigger AND l.lane = c.lane),
 notified AS (
    SELECT pg_notify('flowgate_done', string_agg(id::text, ','))
    FROM (SELECT id, row_number() OVER () - 1 AS n FROM done WHERE mode = 'sync' AND final) s
    GROUP BY n / 200)
 SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM notified),
        (SELECT array_agg(u.id) FROM u WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.id = u.id))";

/// Writes the ends of attempts (see `apply_completions`) and, in the same
/// transaction, the events of the ends taken.
pub async fn write_ends<C: GenericClient>(
    tx: &C,
    store: &PgStore,
    done: &[(&Completion, Option<u16>)],
) -> Result<Discarded, StoreError> {
    let discarded = apply_completions(tx, store, done).await?;
    let events: Vec<&OutboxEvent> = done
        .iter()
        .filter(|(c, _)| !discarded.contains(&c.id.as_uuid()))
        .flat_map(|(c, _)| c.events.iter())
        .collect();
    insert_events(tx, &events).await?;
    Ok(discarded)
}

/// Writes the ends of attempts, fenced (see `END_ATTEMPTS`). Finished lane
/// messages leave their lane's count, and a blocking one blocks the lane. One
/// statement: on a client outside a transaction it is a transaction of its own.
/// Returns the ids of the ends discarded (each logged).
pub async fn apply_completions<C: GenericClient>(
    tx: &C,
    store: &PgStore,
    done: &[(&Completion, Option<u16>)],
) -> Result<Discarded, StoreError> {
    let n = done.len();
    let mut id = Vec::with_capacity(n);
    let mut number = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut finished_at = Vec::with_capacity(n);
    let mut blocking = Vec::with_capacity(n);
    let mut response = Vec::with_capacity(n);
    let mut trace = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut fail_status = Vec::with_capacity(n);
    for (c, fail) in done {
        fail_status.push(fail.map(i32::from));
        id.push(c.id.as_uuid());
        number.push(c.attempt as i32);
        status.push(c.status.as_str());
        run_at.push(c.run_at);
        finished_at.push(c.status.is_final().then_some(c.finished_at));
        blocking.push(c.blocking);
        response.push(response_text(c));
        trace.push(c.trace.as_str());
        error.push(c.error.as_deref());
        attempt.push(attempt_of(c));
    }
    let stmt = tx.prepare_cached(END_ATTEMPTS).await.map_err(db)?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &id,
                &number,
                &status,
                &run_at,
                &finished_at,
                &blocking,
                &response,
                &trace,
                &error,
                &attempt,
                &store.node(),
                &fail_status,
                &store.now(),
            ],
        )
        .await
        .map_err(db)?;
    let discarded: Discarded = row
        .get::<_, Option<Vec<uuid::Uuid>>>(2)
        .unwrap_or_default()
        .into_iter()
        .collect();
    store.held.count_discarded(discarded.len());
    for (c, _) in done
        .iter()
        .filter(|(c, _)| discarded.contains(&c.id.as_uuid()))
    {
        tracing::warn!(
            message = %c.id,
            attempt = c.attempt,
            "a late result was discarded: the attempt is no longer the message's current one, or this node's lease on it lapsed"
        );
    }
    Ok(discarded)
}
