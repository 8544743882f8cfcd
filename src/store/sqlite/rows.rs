//! Rows as the writer thread binds them (text, serialized on the caller's
//! thread), and the statements that write them.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::domain::{MessageId, Micros, NewMessage, StoredResponse};
use crate::store::error::sqlite;
use crate::store::outbox::OutboxEvent;
use crate::store::types::{Completion, EnqueueOutcome, StoreError};

use super::log::attempt_json;
use super::outbox::insert_events;
use super::reads::get;

/// A message about to be inserted, as text.
pub(super) struct NewRow {
    pub(super) id: String,
    pub(super) tenant: String,
    pub(super) trigger: String,
    pub(super) lane: Option<String>,
    pub(super) mode: &'static str,
    pub(super) received_at: Micros,
    pub(super) idempotency_key: Option<String>,
    pub(super) input: String,
    /// Who sent it: the consumer's label and key id.
    pub(super) consumer: Option<String>,
    pub(super) key_id: Option<String>,
}

impl From<&NewMessage> for NewRow {
    fn from(m: &NewMessage) -> Self {
        let who = m.consumer();
        Self {
            id: m.id.to_string(),
            tenant: m.tenant.as_str().to_owned(),
            trigger: m.trigger.as_str().to_owned(),
            lane: m.lane.clone(),
            mode: m.mode.as_str(),
            received_at: m.received_at,
            idempotency_key: m.idempotency_key.clone(),
            input: m.input_text(),
            consumer: who.label.map(str::to_owned),
            key_id: who.key_id.map(str::to_owned),
        }
    }
}

pub(super) struct StartRow {
    pub(super) id: String,
    pub(super) number: u32,
    pub(super) attempt: String,
}

/// The end of an attempt, as text.
pub(super) struct FinishRow {
    pub(super) id: String,
    pub(super) number: u32,
    pub(super) status: &'static str,
    pub(super) run_at: Micros,
    pub(super) finished_at: Option<Micros>,
    pub(super) blocking: bool,
    pub(super) response: Option<String>,
    pub(super) trace: String,
    pub(super) error: Option<String>,
    pub(super) attempt: String,
    /// Written to the outbox with the end, if it is taken.
    pub(super) events: Vec<OutboxEvent>,
}

impl From<&Completion> for FinishRow {
    fn from(c: &Completion) -> Self {
        let attempt = c.attempt_record();
        Self {
            id: c.id.to_string(),
            number: c.attempt,
            status: c.status.as_str(),
            run_at: c.run_at,
            finished_at: c.status.is_final().then_some(c.finished_at),
            blocking: c.blocking,
            response: c.response.as_ref().map(StoredResponse::text),
            trace: c.trace.clone(),
            error: c.error.clone(),
            attempt: attempt_json(&attempt),
            events: c.events.clone(),
        }
    }
}

pub(super) fn insert_new(tx: &Connection, m: &NewRow) -> Result<EnqueueOutcome, StoreError> {
    // Served by the primary key; the partial unique index rejects a repeated Idempotency-Key.
    let n = tx
        .prepare_cached(
            "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at, idempotency_key,
                                   consumer, key_id)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                m.id, m.tenant, m.trigger, m.lane, m.mode, m.received_at, m.idempotency_key,
                m.consumer, m.key_id,
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
pub(super) fn started(tx: &Transaction<'_>, r: &StartRow) -> Result<(), StoreError> {
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
pub(super) fn finished(tx: &Transaction<'_>, r: &FinishRow) -> Result<(), StoreError> {
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
    } else {
        insert_events(tx, &r.events)?;
    }
    Ok(())
}

pub(super) fn record_executed(
    tx: &Transaction<'_>,
    m: &NewRow,
    r: &FinishRow,
) -> Result<(), StoreError> {
    let n = tx.prepare_cached(
        "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at, attempts,
                               attempt_log, finished_at, idempotency_key, response, trace, error, open,
                               consumer, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, '[' || ?9 || ']', ?10, ?11, ?12, ?13, ?14, ?10 IS NULL,
                 ?15, ?16)
         ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.id, m.tenant, m.trigger, m.lane, m.mode, r.status, m.received_at, r.number, r.attempt,
            r.finished_at, m.idempotency_key, r.response, r.trace, r.error, m.consumer, m.key_id,
        ])
    })
    .map_err(sqlite)?;
    if n == 1 {
        insert_input(tx, &m.input)?;
        insert_events(tx, &r.events)?;
    }
    Ok(())
}
