//! The operators' view on SQLite: log history queries, lanes and replays
//! (deliveries are in `deliveries`). Each query names the index that serves
//! it; every one runs on the writer thread after the writes sent before it
//! (`SqliteStore::run_admin`).

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::domain::{
    MessageId, MessageStatus, MessageView, OwnedConsumer, TenantName, TriggerName,
};

use crate::domain::TriggerKey;
use crate::store::StoreError;
use crate::store::admin::{BlockedLane, MessageQuery, MessageSummary, StatusCount};
use crate::store::error::sqlite;

use super::SqliteStore;
use super::reads::{HeadRow, corrupt, get, head, head_row, id_floor};

const SUMMARY_COLUMNS: &str =
    "id, tenant, trigger, lane, mode, status, received_at, finished_at, attempts,
     json_extract(response, '$.status'), replay_of, blocking, error, consumer, key_id";

/// The WHERE clause of a query for one trigger (or none: every trigger) and its values.
fn conditions(q: &MessageQuery, key: Option<&TriggerKey>) -> (String, Vec<Sql>) {
    let mut sql = Vec::new();
    let mut values = Vec::new();
    if let Some(k) = key {
        sql.push("tenant = ? AND trigger = ?");
        values.push(Sql::Text(k.tenant.as_str().to_owned()));
        values.push(Sql::Text(k.trigger.as_str().to_owned()));
    }
    if let Some(s) = q.status {
        sql.push("status = ?");
        values.push(Sql::Text(s.as_str().to_owned()));
    }
    if let Some(l) = &q.lane {
        sql.push("lane = ?");
        values.push(Sql::Text(l.clone()));
    }
    if let Some(c) = &q.consumer {
        sql.push("consumer = ?");
        values.push(Sql::Text(c.clone()));
    }
    if let Some(k) = &q.key_id {
        sql.push("key_id = ?");
        values.push(Sql::Text(k.clone()));
    }
    // Time bounds become id bounds (UUIDv7 sorts by its millisecond), so the
    // range is read from the index; received_at makes them exact.
    let mut upper = q.before.map(|b| b.to_string());
    if let Some(to) = q.to {
        let ceiling = id_floor(to + 1000);
        if upper.as_ref().is_none_or(|u| &ceiling < u) {
            upper = Some(ceiling);
        }
        sql.push("received_at < ?");
        values.push(Sql::Integer(to));
    }
    if let Some(u) = upper {
        sql.push("id < ?");
        values.push(Sql::Text(u));
    }
    if let Some(from) = q.from {
        sql.push("id >= ? AND received_at >= ?");
        values.push(Sql::Text(id_floor(from)));
        values.push(Sql::Integer(from));
    }
    let clause = if sql.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", sql.join(" AND "))
    };
    (clause, values)
}

/// The log history query for one trigger (or every trigger), as SQL and values.
/// With a trigger it is served by `messages_trigger`, `messages_trigger_status`,
/// `messages_trigger_lane` or `messages_trigger_consumer`; without, by the
/// UNIQUE index on id.
pub fn list_sql(q: &MessageQuery, key: Option<&TriggerKey>) -> (String, Vec<Sql>) {
    let (clause, mut values) = conditions(q, key);
    values.push(Sql::Integer(i64::from(q.limit)));
    (
        format!("SELECT {SUMMARY_COLUMNS} FROM messages {clause} ORDER BY id DESC LIMIT ?"),
        values,
    )
}

pub(super) fn name<T>(
    parse: fn(&str) -> Result<T, crate::domain::NameError>,
    s: &str,
) -> Result<T, StoreError> {
    parse(s).map_err(|_| corrupt("name", s))
}

pub(super) fn id(s: &str) -> Result<MessageId, StoreError> {
    s.parse().map_err(|_| corrupt("id", s))
}

fn status(s: &str) -> Result<MessageStatus, StoreError> {
    MessageStatus::parse(s).ok_or_else(|| corrupt("status", s))
}

/// What a log history line reads after its head: finished_at, attempts, the
/// response's status, replay_of, blocking, error, and who sent it.
type SummaryRest = (
    (Option<i64>, u32, Option<i64>),
    (Option<String>, bool, Option<String>),
    OwnedConsumer,
);

fn summary((first, rest): (HeadRow, SummaryRest)) -> Result<MessageSummary, StoreError> {
    let ((finished_at, attempts, code), (replay, blocking, error), consumer) = rest;
    Ok(MessageSummary {
        head: head(first)?,
        consumer,
        finished_at,
        attempts,
        response_status: code.and_then(|c| u16::try_from(c).ok()),
        replay_of: replay.as_deref().map(id).transpose()?,
        blocking,
        error,
    })
}

fn list(conn: &Connection, q: &MessageQuery) -> Result<Vec<MessageSummary>, StoreError> {
    let mut out = Vec::new();
    // One indexed query per trigger, merged: each reads at most `limit` rows.
    for key in q.trigger_keys() {
        let (sql, values) = list_sql(q, key);
        let mut stmt = conn.prepare_cached(&sql).map_err(sqlite)?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| {
                let rest = (r.get(7)?, r.get(8)?, r.get(9)?);
                let consumer = OwnedConsumer {
                    label: r.get(13)?,
                    key_id: r.get(14)?,
                };
                Ok((
                    head_row(r)?,
                    (rest, (r.get(10)?, r.get(11)?, r.get(12)?), consumer),
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sqlite)?;
        for row in rows {
            out.push(summary(row)?);
        }
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.head.id));
    out.truncate(q.limit as usize);
    Ok(out)
}

fn count(conn: &Connection, q: &MessageQuery) -> Result<u64, StoreError> {
    let q = MessageQuery {
        before: None,
        ..q.clone()
    };
    let mut total = 0u64;
    for key in q.trigger_keys() {
        // Served by the same indexes as the list.
        let (clause, values) = conditions(&q, key);
        let n: i64 = conn
            .prepare_cached(&format!("SELECT count(*) FROM messages {clause}"))
            .and_then(|mut s| s.query_row(params_from_iter(values), |r| r.get(0)))
            .map_err(sqlite)?;
        total += n as u64;
    }
    Ok(total)
}

fn tenant_clause(tenants: &Option<Vec<TenantName>>) -> (String, Vec<Sql>) {
    match tenants {
        None => (String::new(), Vec::new()),
        Some(list) => (
            format!(
                "WHERE tenant IN ({})",
                vec!["?"; list.len().max(1)].join(",")
            ),
            if list.is_empty() {
                vec![Sql::Null]
            } else {
                list.iter()
                    .map(|t| Sql::Text(t.as_str().to_owned()))
                    .collect()
            },
        ),
    }
}

fn status_counts(
    conn: &Connection,
    tenants: &Option<Vec<TenantName>>,
) -> Result<Vec<StatusCount>, StoreError> {
    let (clause, values) = tenant_clause(tenants);
    // Served by messages_trigger_status (covering: no table reads).
    let rows: Vec<(String, String, String, i64)> = conn
        .prepare(&format!(
            "SELECT tenant, trigger, status, count(*) FROM messages {clause}
             GROUP BY tenant, trigger, status"
        ))
        .and_then(|mut s| {
            s.query_map(params_from_iter(values), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(sqlite)?;
    rows.into_iter()
        .map(|(tenant, trigger, st, n)| {
            Ok(StatusCount {
                key: TriggerKey {
                    tenant: name(TenantName::parse, &tenant)?,
                    trigger: name(TriggerName::parse, &trigger)?,
                },
                status: status(&st)?,
                count: n as u64,
            })
        })
        .collect()
}

fn blocked_lanes(
    conn: &Connection,
    tenants: &Option<Vec<TenantName>>,
) -> Result<Vec<BlockedLane>, StoreError> {
    // Served by the partial index messages_open: only unfinished or blocking rows.
    let rows: Vec<(String, String, String, String, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT tenant, trigger, lane, id, status, finished_at FROM messages
             WHERE open = 1 AND blocking = 1 AND lane IS NOT NULL ORDER BY seq",
        )
        .and_then(|mut s| s.query_map([], |r| r.try_into())?.collect())
        .map_err(sqlite)?;
    let mut out = Vec::new();
    for (tenant, trigger, lane, i, st, since) in rows {
        let tenant = name(TenantName::parse, &tenant)?;
        if tenants.as_ref().is_some_and(|ts| !ts.contains(&tenant)) {
            continue;
        }
        out.push(BlockedLane {
            key: TriggerKey {
                tenant,
                trigger: name(TriggerName::parse, &trigger)?,
            },
            lane,
            message_id: id(&i)?,
            status: status(&st)?,
            since,
        });
    }
    Ok(out)
}

impl SqliteStore {
    pub async fn list_messages(&self, q: MessageQuery) -> Result<Vec<MessageSummary>, StoreError> {
        self.run_admin(move |c| list(c, &q)).await
    }

    pub async fn count_messages(&self, q: MessageQuery) -> Result<u64, StoreError> {
        self.run_admin(move |c| count(c, &q)).await
    }

    pub async fn status_counts(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        self.run_admin(move |c| status_counts(c, &tenants)).await
    }

    pub async fn blocked_lanes(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<BlockedLane>, StoreError> {
        self.run_admin(move |c| blocked_lanes(c, &tenants)).await
    }

    pub async fn link_replays(&self, links: Vec<(MessageId, MessageId)>) -> Result<(), StoreError> {
        self.run_admin(move |c| {
            let tx = c.transaction().map_err(sqlite)?;
            for (id, original) in &links {
                // Served by the UNIQUE index on id.
                tx.execute(
                    "UPDATE messages SET replay_of = ?2 WHERE id = ?1",
                    params![id.to_string(), original.to_string()],
                )
                .map_err(sqlite)?;
            }
            tx.commit().map_err(sqlite)
        })
        .await
    }

    pub async fn message_detail(
        &self,
        id: MessageId,
    ) -> Result<Option<(MessageView, Option<MessageId>)>, StoreError> {
        self.run_admin(move |c| {
            let Some(view) = get(c, id)? else {
                return Ok(None);
            };
            // Served by the UNIQUE index on id.
            let replay: Option<String> = c
                .query_row(
                    "SELECT replay_of FROM messages WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sqlite)?
                .flatten();
            Ok(Some((view, replay.as_deref().map(self::id).transpose()?)))
        })
        .await
    }
}

impl SqliteStore {
    /// The query plans of the log history query `q` (one per trigger): the proof
    /// that it reads an index rather than the table.
    pub async fn explain_list(&self, q: MessageQuery) -> Result<Vec<String>, StoreError> {
        self.run_admin(move |c| {
            let mut plans = Vec::new();
            for key in q.trigger_keys() {
                let (sql, values) = list_sql(&q, key);
                let lines: Vec<String> = c
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(values), |r| r.get::<_, String>(3))?
                            .collect()
                    })
                    .map_err(sqlite)?;
                plans.push(lines.join("\n"));
            }
            Ok(plans)
        })
        .await
    }
}
