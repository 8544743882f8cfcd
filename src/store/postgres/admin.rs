//! The operators' view on PostgreSQL: log history queries, counts, blocked lanes
//! and replays (deliveries are in `deliveries`). Each query names the index that
//! serves it (migrations/postgres/0003_admin.sql). Reads first wait for the
//! records this process sent before, as `get` does.
//!
//! Ordered lanes are claimed from the database, so letting go of one changes the
//! rows every claimer reads: the message stops blocking, the lane row loses its
//! `blocked_by`, and a NOTIFY wakes the claimers of every node.

use tokio_postgres::types::ToSql;

use crate::domain::{
    MessageId, MessageStatus, MessageView, Micros, OwnedConsumer, TenantName, TriggerKey,
};
use crate::store::StoreError;
use crate::store::admin::{BlockedLane, MessageQuery, MessageSummary, StatusCount};

use super::rows::{head, message_id, names, status};
use super::{PgStore, db};

const SUMMARY_COLUMNS: &str =
    "id, tenant, trigger, lane, mode, status, received_at, finished_at, attempts,
     (response::jsonb ->> 'status')::int, replay_of, blocking, error, consumer, key_id";

/// The smallest UUIDv7 of the millisecond of `us`: time bounds become id bounds.
pub(super) fn id_floor(us: Micros) -> uuid::Uuid {
    let ms = (us.max(0) / 1000) as u128;
    uuid::Uuid::from_u128(ms << 80)
}

/// A query's values, in the order of their `$n` placeholders.
#[derive(Default)]
struct Values(Vec<Box<dyn ToSql + Sync + Send>>);

impl Values {
    /// Adds a value; returns its placeholder.
    fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Whether a query is read one status at a time, merged: a trigger's history
/// with neither status nor lane named (no index leads with tenant, trigger, id),
/// also when a consumer is named: `messages_trigger_consumer`, as the index by
/// status, leaves running messages out, and a status other than running lets
/// the planner use it.
fn per_status(q: &MessageQuery, key: Option<&TriggerKey>) -> bool {
    key.is_some() && q.status.is_none() && q.lane.is_none()
}

/// Where a `per_status` query's clause names the status each read takes.
const EACH_STATUS: &str = "@status@";

/// The condition that reads one status from an index. `messages_trigger_status`
/// leaves running messages out (migration 9): they are read, with every other
/// unfinished message, from `messages_lane`, which the planner takes only when
/// the query says the messages are unfinished (running ones always are). The
/// status is written into the statement, not bound, so the planner can prove the
/// partial index's predicate.
fn status_condition(s: MessageStatus) -> String {
    if s == MessageStatus::Running {
        "status = 'running' AND finished_at IS NULL".to_owned()
    } else {
        format!("status = '{}'", s.as_str())
    }
}

/// `one` once per status, as the parts of a UNION ALL.
fn each_status(one: &str) -> String {
    MessageStatus::ALL
        .iter()
        .map(|s| format!("({})", one.replace(EACH_STATUS, &status_condition(*s))))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The WHERE clause of a query for one trigger (or none: every trigger). A
/// `per_status` query's status is left as `EACH_STATUS`, to be filled in.
fn conditions(q: &MessageQuery, key: Option<&TriggerKey>, values: &mut Values) -> String {
    let mut sql = Vec::new();
    if let Some(k) = key {
        let t = values.push(k.tenant.as_str().to_owned());
        let g = values.push(k.trigger.as_str().to_owned());
        sql.push(format!("tenant = {t} AND trigger = {g}"));
    }
    if let Some(s) = q.status {
        sql.push(status_condition(s));
    } else if per_status(q, key) {
        sql.push(EACH_STATUS.to_owned());
    }
    if let Some(l) = &q.lane {
        sql.push(format!("lane = {}", values.push(l.clone())));
    }
    if let Some(c) = &q.consumer {
        sql.push(format!("consumer = {}", values.push(c.clone())));
    }
    if let Some(k) = &q.key_id {
        sql.push(format!("key_id = {}", values.push(k.clone())));
    }
    // Time bounds become id bounds (UUIDv7 sorts by its millisecond), so the
    // range is read from the index; received_at makes them exact.
    let mut upper = q.before.map(|b| b.as_uuid());
    if let Some(to) = q.to {
        let ceiling = id_floor(to + 1000);
        if upper.is_none_or(|u| ceiling < u) {
            upper = Some(ceiling);
        }
        sql.push(format!("received_at < {}", values.push(to)));
    }
    if let Some(u) = upper {
        sql.push(format!("id < {}", values.push(u)));
    }
    if let Some(from) = q.from {
        let f = values.push(id_floor(from));
        let r = values.push(from);
        sql.push(format!("id >= {f} AND received_at >= {r}"));
    }
    if sql.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", sql.join(" AND "))
    }
}

/// The log history query for one trigger (or every trigger). With a trigger it
/// is served by `messages_trigger_status`, `messages_trigger_lane` or (a
/// consumer named, any status but running) `messages_trigger_consumer`, read
/// backwards from the cursor; without, by the UNIQUE index on id. With neither
/// status nor lane named, each status is read from `messages_trigger_status` on
/// its own and the reads are merged (a Merge Append: each read stops once the
/// page is full). Running messages come from `messages_lane` instead, sorted:
/// the few in flight, not the trigger's history.
fn list_sql(q: &MessageQuery, key: Option<&TriggerKey>) -> (String, Values) {
    let mut values = Values::default();
    let clause = conditions(q, key, &mut values);
    let limit = values.push(i64::from(q.limit));
    let one =
        format!("SELECT {SUMMARY_COLUMNS} FROM messages {clause} ORDER BY id DESC LIMIT {limit}");
    if !per_status(q, key) {
        return (one, values);
    }
    (
        format!(
            "SELECT * FROM ({}) m ORDER BY id DESC LIMIT {limit}",
            each_status(&one)
        ),
        values,
    )
}

/// The count for one trigger (or every trigger), served as `list_sql` is; with
/// neither status nor lane named, one count per status, summed.
fn count_sql(q: &MessageQuery, key: Option<&TriggerKey>) -> (String, Values) {
    let mut values = Values::default();
    let clause = conditions(q, key, &mut values);
    let one = format!("SELECT count(*) AS n FROM messages {clause}");
    if !per_status(q, key) {
        return (one, values);
    }
    (
        format!("SELECT sum(n)::int8 FROM ({}) c", each_status(&one)),
        values,
    )
}

fn summary(r: &tokio_postgres::Row) -> Result<MessageSummary, StoreError> {
    Ok(MessageSummary {
        head: head(r)?,
        consumer: OwnedConsumer {
            label: r.get(13),
            key_id: r.get(14),
        },
        finished_at: r.get(7),
        attempts: r.get::<_, i32>(8) as u32,
        response_status: r
            .get::<_, Option<i32>>(9)
            .and_then(|c| u16::try_from(c).ok()),
        replay_of: r.get::<_, Option<uuid::Uuid>>(10).map(message_id),
        blocking: r.get(11),
        error: r.get(12),
    })
}

/// `tenants` as a query value: `None` is every tenant.
fn tenant_list(tenants: Option<Vec<TenantName>>) -> Option<Vec<String>> {
    tenants.map(|ts| ts.iter().map(|t| t.as_str().to_owned()).collect())
}

impl PgStore {
    /// Waits (bounded) until the records this process sent before are written.
    pub(super) async fn settle(&self) {
        let _ = tokio::time::timeout(self.timeout, self.flush()).await;
    }

    pub async fn list_messages(&self, q: MessageQuery) -> Result<Vec<MessageSummary>, StoreError> {
        self.settle().await;
        self.with(move |_, client| async move {
            let mut out = Vec::new();
            // One indexed query per trigger, merged: each reads at most `limit` rows.
            for key in q.trigger_keys() {
                let (sql, values) = list_sql(&q, key);
                let stmt = client.prepare_cached(&sql).await.map_err(db)?;
                for r in client.query(&stmt, &values.refs()).await.map_err(db)? {
                    out.push(summary(&r)?);
                }
            }
            out.sort_by_key(|m| std::cmp::Reverse(m.head.id));
            out.truncate(q.limit as usize);
            Ok(out)
        })
        .await
    }

    pub async fn count_messages(&self, q: MessageQuery) -> Result<u64, StoreError> {
        self.settle().await;
        let q = MessageQuery { before: None, ..q };
        self.with(move |_, client| async move {
            let mut total = 0u64;
            for key in q.trigger_keys() {
                let (sql, values) = count_sql(&q, key);
                let stmt = client.prepare_cached(&sql).await.map_err(db)?;
                let n: i64 = client
                    .query_one(&stmt, &values.refs())
                    .await
                    .map_err(db)?
                    .get(0);
                total += n as u64;
            }
            Ok(total)
        })
        .await
    }

    pub async fn status_counts(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<StatusCount>, StoreError> {
        // Served by messages_trigger_status (an index-only scan once vacuumed)
        // and, for running messages, which it leaves out, messages_lane.
        const STATUS_COUNTS: &str = "SELECT tenant, trigger, status, count(*) FROM messages
             WHERE status <> 'running' AND ($1::text[] IS NULL OR tenant = ANY($1))
             GROUP BY tenant, trigger, status
             UNION ALL
             SELECT tenant, trigger, 'running', count(*) FROM messages
             WHERE status = 'running' AND finished_at IS NULL
               AND ($1::text[] IS NULL OR tenant = ANY($1))
             GROUP BY tenant, trigger";
        self.per_tenant(tenants, STATUS_COUNTS, |r| {
            let (tenant, trigger) = names(r.get(0), r.get(1))?;
            Ok(StatusCount {
                key: TriggerKey { tenant, trigger },
                status: status(r.get(2))?,
                count: r.get::<_, i64>(3) as u64,
            })
        })
        .await
    }

    pub async fn blocked_lanes(
        &self,
        tenants: Option<Vec<TenantName>>,
    ) -> Result<Vec<BlockedLane>, StoreError> {
        // Served by the partial index messages_blocking: only blocking rows.
        const BLOCKED_LANES: &str = "SELECT tenant, trigger, lane, id, status, finished_at
             FROM messages
             WHERE blocking AND lane IS NOT NULL AND ($1::text[] IS NULL OR tenant = ANY($1))
             ORDER BY seq";
        self.per_tenant(tenants, BLOCKED_LANES, |r| {
            let (tenant, trigger) = names(r.get(0), r.get(1))?;
            Ok(BlockedLane {
                key: TriggerKey { tenant, trigger },
                lane: r.get(2),
                message_id: message_id(r.get(3)),
                status: status(r.get(4))?,
                since: r.get(5),
            })
        })
        .await
    }

    /// The rows of `sql` over the tenants given (`$1`; every tenant for
    /// `None`), read after this process's records are written, each by `row`.
    async fn per_tenant<T: Send + 'static>(
        &self,
        tenants: Option<Vec<TenantName>>,
        sql: &'static str,
        row: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.settle().await;
        let tenants = tenant_list(tenants);
        self.with(move |_, client| async move {
            let rows = client.query(sql, &[&tenants]).await.map_err(db)?;
            rows.iter().map(row).collect()
        })
        .await
    }

    /// Lets go of the lane message `id` holds, in one transaction: the message
    /// stops blocking (skipped, or as it is), its lane row is no longer blocked,
    /// and the claimers of every node are woken to take the lane up again.
    /// Links each replay `.0` to its original `.1`, in one transaction. A replay of
    /// a message that holds its lane takes that message's place (its `seq`), so it
    /// is the lane's head when the lane is let go; the original, finished, moves
    /// to a fresh `seq`.
    pub async fn link_replays(&self, links: Vec<(MessageId, MessageId)>) -> Result<(), StoreError> {
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            for (id, original) in &links {
                let (id, original) = (id.as_uuid(), original.as_uuid());
                // Served by the UNIQUE index on id.
                tx.execute(
                    "UPDATE messages SET replay_of = $2 WHERE id = $1",
                    &[&id, &original],
                )
                .await
                .map_err(db)?;
                // Served by the UNIQUE index on id (both statements).
                let moved = tx
                    .query_opt(
                        "UPDATE messages m SET seq = nextval(pg_get_serial_sequence('messages', 'seq'))
                         FROM (SELECT seq FROM messages WHERE id = $1 AND blocking AND lane IS NOT NULL
                               FOR UPDATE) o
                         WHERE m.id = $1
                         RETURNING o.seq, m.tenant, m.trigger, m.lane",
                        &[&original],
                    )
                    .await
                    .map_err(db)?;
                if let Some(o) = moved {
                    tx.execute(
                        "UPDATE messages SET seq = $2
                         WHERE id = $1 AND tenant = $3 AND trigger = $4 AND lane = $5
                           AND finished_at IS NULL",
                        &[
                            &id,
                            &o.get::<_, i64>(0),
                            &o.get::<_, &str>(1),
                            &o.get::<_, &str>(2),
                            &o.get::<_, &str>(3),
                        ],
                    )
                    .await
                    .map_err(db)?;
                }
            }
            tx.commit().await.map_err(db)
        })
        .await
    }

    pub async fn message_detail(
        &self,
        id: MessageId,
    ) -> Result<Option<(MessageView, Option<MessageId>)>, StoreError> {
        self.settle().await;
        self.with(move |_, client| async move {
            let Some(view) = super::rows::get(&client, id).await? else {
                return Ok(None);
            };
            // Served by the UNIQUE index on id.
            let replay: Option<uuid::Uuid> = client
                .query_opt(
                    "SELECT replay_of FROM messages WHERE id = $1",
                    &[&id.as_uuid()],
                )
                .await
                .map_err(db)?
                .and_then(|r| r.get(0));
            Ok(Some((view, replay.map(message_id))))
        })
        .await
    }

    /// The query plans of the log history query `q` (one per trigger), as
    /// `EXPLAIN` prints them: the proof that it reads an index, not the table.
    pub async fn explain_list(&self, q: MessageQuery) -> Result<Vec<String>, StoreError> {
        self.with(move |_, client| async move {
            let mut plans = Vec::new();
            for key in q.trigger_keys() {
                let (sql, values) = list_sql(&q, key);
                let lines: Vec<String> = client
                    .query(&format!("EXPLAIN {sql}"), &values.refs())
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                plans.push(lines.join("\n"));
            }
            Ok(plans)
        })
        .await
    }
}
