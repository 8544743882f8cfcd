//! Records of executions, written behind in batches: whatever has queued up goes
//! in one transaction. Results are fenced: a message held by another node (its
//! lease lapsed and it was claimed again) keeps that node's claim, and the late
//! result is dropped.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{AttemptRecord, MessageId, NewMessage, now_micros};
use crate::store::types::{Completion, StoreError};

use super::rows::attempt_json;
use super::{PgStore, db};

pub const CHANNEL: usize = 65_536;
const MAX_BATCH: usize = 2048;
const RETRIES: u32 = 20;

pub enum Op {
    Started(MessageId, AttemptRecord),
    Finished(Box<Completion>),
    Executed(Box<(NewMessage, Completion)>),
    Flush(oneshot::Sender<()>),
}

pub async fn run(store: PgStore, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let (mut writes, mut flushes) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Flush(reply) => flushes.push(reply),
                op => writes.push(op),
            }
        }
        let writes = std::sync::Arc::new(writes);
        let finished: Vec<uuid::Uuid> = writes
            .iter()
            .filter_map(|op| match op {
                Op::Finished(c) => Some(c.id.as_uuid()),
                _ => None,
            })
            .collect();
        let mut tries = 0;
        loop {
            let w = writes.clone();
            match store
                .with(move |store, mut client| async move { apply(&store, &mut client, &w).await })
                .await
            {
                Ok(()) => {
                    for f in flushes.drain(..) {
                        let _ = f.send(());
                    }
                    break;
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
                    break;
                }
            }
        }
        let mut held = store.held.messages();
        for id in &finished {
            held.remove(id);
        }
    }
}

async fn apply(
    store: &PgStore,
    client: &mut deadpool_postgres::Object,
    ops: &[Op],
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    let mut executed = Vec::new();
    let mut finished = Vec::new();
    for op in ops {
        match op {
            Op::Started(id, a) => {
                // Served by the UNIQUE index on id.
                let stmt = tx
                    .prepare_cached(
                        "UPDATE messages SET status = 'running', attempts = $2, holder = $3,
                                lease_until = $4, attempt_log = attempt_log || jsonb_build_array($5::jsonb)
                         WHERE id = $1 AND finished_at IS NULL AND attempts < $2",
                    )
                    .await
                    .map_err(db)?;
                let until = now_micros() + store.lease_us();
                tx.execute(
                    &stmt,
                    &[
                        &id.as_uuid(),
                        &(a.number as i32),
                        &&*store.node,
                        &until,
                        &attempt_json(a),
                    ],
                )
                .await
                .map_err(db)?;
            }
            Op::Finished(c) => finished.push(c.as_ref()),
            Op::Executed(b) => executed.push((&b.0, &b.1)),
            Op::Flush(_) => {}
        }
    }
    if !executed.is_empty() {
        insert_executed(&tx, &executed).await?;
    }
    if !finished.is_empty() {
        apply_completions(&tx, store.node(), &finished).await?;
    }
    tx.commit().await.map_err(db)
}

fn attempt_of(c: &Completion) -> serde_json::Value {
    attempt_json(&AttemptRecord {
        number: c.attempt,
        started_at: c.started_at,
        finished_at: Some(c.finished_at),
        outcome: Some(c.outcome),
        error: c.error.clone(),
    })
}

fn response_text(c: &Completion) -> Option<String> {
    c.response
        .as_ref()
        .and_then(|r| serde_json::to_string(r).ok())
}

/// Messages executed before they were stored (sync requests answered in time).
async fn insert_executed<C: GenericClient>(
    tx: &C,
    rows: &[(&NewMessage, &Completion)],
) -> Result<(), StoreError> {
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
        input.push(m.input.to_string());
        response.push(response_text(c));
        trace.push(c.trace.as_str());
        error.push(c.error.as_deref());
    }
    // Served by the primary key and the UNIQUE index on id.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (id, tenant, trigger, mode, status, received_at, run_at, attempts,
                                   attempt_log, finished_at, idempotency_key, input, response, trace, error)
             SELECT id, tenant, trigger, mode, status, received_at, received_at, attempts, log,
                    finished_at, ikey, input, response, trace, error
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                         $7::int4[], $8::jsonb[], $9::int8[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[])
                  AS u(id, tenant, trigger, mode, status, received_at, attempts, log, finished_at, ikey,
                       input, response, trace, error)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    tx.execute(
        &stmt,
        &[
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
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Writes the ends of attempts, fenced: a message with a holder takes the result
/// only from that holder for that attempt (messages of lanes have none: their lane
/// is fenced by the caller). Finished lane messages leave their lane's count, and
/// a blocking one blocks the lane. Callers waiting on other nodes for sync messages
/// are told through NOTIFY. Returns how many results were taken.
pub async fn apply_completions<C: GenericClient>(
    tx: &C,
    node: &str,
    done: &[&Completion],
) -> Result<u64, StoreError> {
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
    for c in done {
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
    // Served by the UNIQUE index on id and the lanes primary key. The attempt
    // replaces its start entry, or is appended when the start was never written.
    let stmt = tx
        .prepare_cached(
            "WITH u AS (
                SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int8[], $5::int8[],
                                     $6::bool[], $7::text[], $8::text[], $9::text[], $10::jsonb[])
                    AS u(id, number, status, run_at, finished_at, blocking, response, trace, error, attempt)),
             done AS (
                UPDATE messages m SET status = u.status, attempts = u.number, run_at = u.run_at,
                       finished_at = u.finished_at, blocking = u.blocking,
                       response = COALESCE(u.response, m.response), trace = u.trace, error = u.error,
                       holder = NULL, lease_until = NULL,
                       attempt_log = CASE WHEN jsonb_array_length(m.attempt_log) >= u.number
                           THEN jsonb_set(m.attempt_log, ARRAY[(u.number - 1)::text], u.attempt)
                           ELSE m.attempt_log || jsonb_build_array(u.attempt) END
                FROM u
                WHERE m.id = u.id AND m.finished_at IS NULL
                  AND (m.holder IS NULL OR (m.holder = $11 AND m.attempts = u.number))
                RETURNING m.id, m.tenant, m.trigger, m.lane, m.mode, u.finished_at IS NOT NULL AS final,
                          u.blocking),
             lanes_done AS (
                UPDATE lanes l SET pending = l.pending - c.n, blocked_by = COALESCE(c.blocked, l.blocked_by)
                FROM (SELECT tenant, trigger, lane, count(*) AS n,
                             (array_agg(id) FILTER (WHERE blocking))[1] AS blocked
                      FROM done WHERE lane IS NOT NULL AND final GROUP BY 1, 2, 3) c
                WHERE l.tenant = c.tenant AND l.trigger = c.trigger AND l.lane = c.lane)
             SELECT id, mode = 'sync' AND final FROM done",
        )
        .await
        .map_err(db)?;
    let rows = tx
        .query(
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
                &node,
            ],
        )
        .await
        .map_err(db)?;
    let sync: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get::<_, uuid::Uuid>(0).to_string())
        .collect();
    // A NOTIFY payload is at most 8000 bytes: 200 ids each.
    for chunk in sync.chunks(200) {
        tx.execute("SELECT pg_notify('flowgate_done', $1)", &[&chunk.join(",")])
            .await
            .map_err(db)?;
    }
    Ok(rows.len() as u64)
}
