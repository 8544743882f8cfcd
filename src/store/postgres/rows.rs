//! Rows in and out of PostgreSQL: batches as column arrays for `unnest`, rows as
//! domain types.

use std::collections::BTreeSet;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::domain::{
    AttemptRecord, MessageHead, MessageId, MessageStatus, MessageView, Mode, NewMessage,
    OwnedConsumer, TenantName, TriggerName,
};
use crate::store::types::{PendingMessage, StoreError};

use super::db;

/// A batch of new messages, one array per column.
pub struct NewRows {
    pub id: Vec<uuid::Uuid>,
    pub tenant: Vec<String>,
    pub trigger: Vec<String>,
    pub lane: Vec<Option<String>>,
    pub mode: Vec<&'static str>,
    pub received_at: Vec<i64>,
    pub ikey: Vec<Option<String>>,
    pub input: Vec<String>,
    /// Who sent each: the consumer's label and key id.
    pub consumer: Vec<Option<String>>,
    pub key_id: Vec<Option<String>>,
}

impl From<&[NewMessage]> for NewRows {
    fn from(batch: &[NewMessage]) -> Self {
        let mut r = Self {
            id: Vec::with_capacity(batch.len()),
            tenant: Vec::with_capacity(batch.len()),
            trigger: Vec::with_capacity(batch.len()),
            lane: Vec::with_capacity(batch.len()),
            mode: Vec::with_capacity(batch.len()),
            received_at: Vec::with_capacity(batch.len()),
            ikey: Vec::with_capacity(batch.len()),
            input: Vec::with_capacity(batch.len()),
            consumer: Vec::with_capacity(batch.len()),
            key_id: Vec::with_capacity(batch.len()),
        };
        for m in batch {
            r.id.push(m.id.as_uuid());
            r.tenant.push(m.tenant.as_str().to_owned());
            r.trigger.push(m.trigger.as_str().to_owned());
            r.lane.push(m.lane.clone());
            r.mode.push(m.mode.as_str());
            r.received_at.push(m.received_at);
            r.ikey.push(m.idempotency_key.clone());
            r.input.push(m.input_text());
            let who = m.consumer();
            r.consumer.push(who.label.map(str::to_owned));
            r.key_id.push(who.key_id.map(str::to_owned));
        }
        r
    }
}

/// Three parallel arrays (tenant, trigger, lane).
pub type LaneKeys = (Vec<String>, Vec<String>, Vec<String>);

impl NewRows {
    /// The distinct lanes of the batch, sorted.
    pub fn lanes(&self) -> LaneKeys {
        let set: BTreeSet<(&str, &str, &str)> = (0..self.id.len())
            .filter_map(|i| {
                self.lane[i]
                    .as_deref()
                    .map(|l| (self.tenant[i].as_str(), self.trigger[i].as_str(), l))
            })
            .collect();
        let mut keys: LaneKeys = Default::default();
        for (t, g, l) in set {
            keys.0.push(t.to_owned());
            keys.1.push(g.to_owned());
            keys.2.push(l.to_owned());
        }
        keys
    }
}

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{v}`"))
}

pub fn message_id(u: uuid::Uuid) -> MessageId {
    MessageId::from_uuid(u)
}

pub fn names(tenant: &str, trigger: &str) -> Result<(TenantName, TriggerName), StoreError> {
    Ok((
        TenantName::parse(tenant).map_err(|_| corrupt("tenant", tenant))?,
        TriggerName::parse(trigger).map_err(|_| corrupt("trigger", trigger))?,
    ))
}

pub fn mode(s: &str) -> Result<Mode, StoreError> {
    match s {
        "sync" => Ok(Mode::Sync),
        "async" => Ok(Mode::Async),
        other => Err(corrupt("mode", other)),
    }
}

pub fn status(s: &str) -> Result<MessageStatus, StoreError> {
    MessageStatus::parse(s).ok_or_else(|| corrupt("status", s))
}

/// One attempt as the `attempt_log` array holds it.
pub fn attempt_json(a: &AttemptRecord) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or(serde_json::Value::Null)
}

fn attempts(log: &serde_json::Value) -> Vec<AttemptRecord> {
    log.as_array()
        .map(|items| items.iter().map(AttemptRecord::from_json).collect())
        .unwrap_or_default()
}

pub async fn get<C: GenericClient>(
    client: &C,
    id: MessageId,
) -> Result<Option<MessageView>, StoreError> {
    // Served by the UNIQUE index on id.
    let stmt = client
        .prepare_cached(
            "SELECT id, tenant, trigger, lane, mode, status, received_at, finished_at, response,
                    error, input, trace, attempt_log, consumer, key_id
             FROM messages WHERE id = $1",
        )
        .await
        .map_err(db)?;
    let Some(r) = client
        .query_opt(&stmt, &[&id.as_uuid()])
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let view = MessageView {
        head: head(&r)?,
        consumer: OwnedConsumer {
            label: r.get(13),
            key_id: r.get(14),
        },
        finished_at: r.get(7),
        response: None,
        error: r.get(9),
        input: serde_json::Value::Null,
        trace: serde_json::Value::Null,
        attempts: attempts(&r.get::<_, serde_json::Value>(12)),
    };
    crate::store::read_documents(view, r.get(10), r.get(11), r.get(8)).map(Some)
}

/// The first seven columns of a row that starts `SELECT id, tenant, trigger,
/// lane, mode, status, received_at`.
pub fn head(r: &Row) -> Result<MessageHead, StoreError> {
    let (tenant, trigger) = names(r.get(1), r.get(2))?;
    Ok(MessageHead {
        id: message_id(r.get(0)),
        tenant,
        trigger,
        lane: r.get(3),
        mode: mode(r.get(4))?,
        status: status(r.get(5))?,
        received_at: r.get(6),
    })
}

/// A row of `SELECT id, tenant, trigger, lane, mode, status, received_at, run_at,
/// attempts, blocking, input`.
pub fn pending(r: &Row) -> Result<PendingMessage, StoreError> {
    Ok(PendingMessage {
        head: head(r)?,
        run_at: r.get(7),
        attempts: r.get::<_, i32>(8) as u32,
        blocking: r.get(9),
        input: r
            .get::<_, Option<&str>>(10)
            .map_or(Ok(serde_json::Value::Null), crate::store::read_input),
    })
}
