//! Reads of messages (one, or every open one at recovery) and retention's
//! deletes, on the writer thread after every write sent before them.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::domain::{
    MessageHead, MessageId, MessageStatus, MessageView, Micros, Mode, Outcome, OwnedConsumer,
    TenantName, TriggerName,
};
use crate::store::error::sqlite;
use crate::store::types::{PendingMessage, StoreError};

use super::log::{attempt_json, parse_attempts};

const PURGE_CHUNK: usize = 5_000;

impl super::SqliteStore {
    /// `run_admin` in one transaction, committed once `f` succeeds (rolled
    /// back, by dropping it, when `f` fails): the admin-side writes of
    /// deliveries, the outbox, subscriptions and usage.
    pub(super) async fn run_admin_tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_admin(move |c| {
            let tx = c.transaction().map_err(sqlite)?;
            let done = f(&tx)?;
            tx.commit().map_err(sqlite)?;
            Ok(done)
        })
        .await
    }
}

pub(super) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{v}`"))
}

pub(super) fn get(conn: &Connection, id: MessageId) -> Result<Option<MessageView>, StoreError> {
    // Served by the UNIQUE index on id.
    let row: Option<(HeadRow, ViewRest)> = conn
        .prepare_cached(
            "SELECT m.id, m.tenant, m.trigger, m.lane, m.mode, m.status, m.received_at,
                    m.finished_at, m.response, m.error, i.input, m.trace, m.attempt_log,
                    m.consumer, m.key_id
             FROM messages m LEFT JOIN message_inputs i ON i.seq = m.seq WHERE m.id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| {
                let rest = (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?);
                let consumer = OwnedConsumer {
                    label: r.get(13)?,
                    key_id: r.get(14)?,
                };
                Ok((head_row(r)?, (rest, r.get(12)?, consumer)))
            })
            .optional()
        })
        .map_err(sqlite)?;
    let Some((first, ((finished_at, response, error, input, trace), log, consumer))) = row else {
        return Ok(None);
    };
    let view = MessageView {
        head: head(first)?,
        consumer,
        finished_at,
        attempts: parse_attempts(&log),
        response: None,
        error,
        input: serde_json::Value::Null,
        trace: serde_json::Value::Null,
    };
    crate::store::read_documents(
        view,
        input.as_deref(),
        trace.as_deref(),
        response.as_deref(),
    )
    .map(Some)
}

pub(super) fn parse_mode(s: &str) -> Result<Mode, StoreError> {
    match s {
        "sync" => Ok(Mode::Sync),
        "async" => Ok(Mode::Async),
        other => Err(corrupt("mode", other)),
    }
}

/// The columns every message read starts with: `id, tenant, trigger, lane, mode,
/// status, received_at`.
pub(super) type HeadRow = (String, String, String, Option<String>, String, String, i64);

pub(super) fn head(
    (id, tenant, trigger, lane, mode, status, received_at): HeadRow,
) -> Result<MessageHead, StoreError> {
    Ok(MessageHead {
        id: id.parse().map_err(|_| corrupt("id", &id))?,
        tenant: TenantName::parse(&tenant).map_err(|_| corrupt("tenant", &tenant))?,
        trigger: TriggerName::parse(&trigger).map_err(|_| corrupt("trigger", &trigger))?,
        lane,
        mode: parse_mode(&mode)?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        received_at,
    })
}

/// Reads a row's `HeadRow` columns (its first seven).
pub(super) fn head_row(r: &rusqlite::Row) -> rusqlite::Result<HeadRow> {
    HeadRow::try_from(r)
}

/// What `get` reads after the head: finished_at, response, error, input, trace,
/// then attempt_log, and who sent it.
type ViewRest = (
    (
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    String,
    OwnedConsumer,
);

/// What recovery reads after the head: run_at, attempts, blocking and input.
type PendingRest = (i64, u32, bool, Option<String>);

pub(super) fn recover(
    conn: &mut Connection,
    now: Micros,
) -> Result<Vec<PendingMessage>, StoreError> {
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
    let rows: Vec<(HeadRow, PendingRest)> = tx
        .prepare(
            "SELECT m.id, m.tenant, m.trigger, m.lane, m.mode, m.status, m.received_at, m.run_at,
                    m.attempts, m.blocking, i.input
             FROM messages m LEFT JOIN message_inputs i ON i.seq = m.seq WHERE m.open = 1 ORDER BY m.seq",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((head_row(r)?, (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?)))
            })?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sqlite)?;
    tx.commit().map_err(sqlite)?;
    rows.into_iter()
        .map(|(first, (run_at, attempts, blocking, input))| {
            Ok(PendingMessage {
                head: head(first)?,
                run_at,
                attempts,
                blocking,
                input: input.map_or(Ok(serde_json::Value::Null), |s| {
                    crate::store::read_input(&s)
                }),
            })
        })
        .collect()
}

/// The smallest UUIDv7 text of the millisecond `us` falls in: ids below it are older.
pub(super) fn id_floor(us: Micros) -> String {
    let ms = (us.max(0) / 1000) as u128;
    uuid::Uuid::from_u128(ms << 80).hyphenated().to_string()
}

pub(super) fn purge(conn: &mut Connection, before: Micros) -> Result<u64, StoreError> {
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
