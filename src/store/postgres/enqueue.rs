//! Accepting: a batch of messages stored in one statement (rows sent as
//! arrays through `unnest`), ordered lanes locked and counted in the same
//! transaction, repeated Idempotency-Keys answered with the first message.

use std::future::Future;

use crate::domain::{AttemptRecord, Micros, NewMessage};
use crate::store::types::{EnqueueOutcome, StoreError};

use super::{PgStore, db, notify_work, rows};

impl PgStore {
    /// Stores a batch in one transaction. Each lane's row is locked first (in key
    /// order, so batches from several nodes cannot deadlock): a lane's messages then
    /// take `seq` values in commit order, which is what "the lowest unfinished
    /// message" relies on across nodes.
    pub async fn enqueue(&self, batch: &[NewMessage]) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.enqueue_claiming(batch, &[]).await
    }

    /// As `enqueue`, and the messages marked in `mine` (unordered ones) are stored
    /// already claimed by this node, their first attempt started under its lease:
    /// the node that accepted them runs them without claiming them back, and if it
    /// dies their leases lapse and any node takes them over.
    ///
    /// The batch is read before this returns; the future owns what it needs.
    pub fn enqueue_claiming(
        &self,
        batch: &[NewMessage],
        mine: &[bool],
    ) -> impl Future<Output = Result<Vec<EnqueueOutcome>, StoreError>> + Send + 'static {
        let rows = rows::NewRows::from(batch);
        let mine: Vec<bool> = (0..batch.len())
            .map(|i| mine.get(i).copied().unwrap_or(false) && batch[i].lane.is_none())
            .collect();
        let now = self.now();
        self.spawn_with(move |store, mut client| async move {
            let lanes = rows.lanes();
            if lanes.0.is_empty() {
                // One statement is a transaction of its own: no BEGIN and COMMIT
                // round trips. Duplicates are read and others told after it commits.
                let out = insert_batch(&client, &store, &rows, &mine, now, false).await?;
                store.hold_claimed(&rows, &mine, &out, now);
                return Ok(out);
            }
            let tx = client.transaction().await.map_err(db)?;
            // Served by the lanes primary key.
            let lock = tx
                .prepare_cached(
                    "INSERT INTO lanes (tenant, trigger, lane)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ORDER BY 1, 2, 3
                     ON CONFLICT (tenant, trigger, lane) DO UPDATE SET pending = lanes.pending",
                )
                .await
                .map_err(db)?;
            tx.execute(&lock, &[&lanes.0, &lanes.1, &lanes.2])
                .await
                .map_err(db)?;
            let out = insert_batch(&tx, &store, &rows, &mine, now, true).await?;
            tx.commit().await.map_err(db)?;
            store.hold_claimed(&rows, &mine, &out, now);
            Ok(out)
        })
    }

    /// Leases taken as messages were stored (their first attempt, from `now`) are
    /// renewed by the heartbeat from now on.
    fn hold_claimed(
        &self,
        rows: &rows::NewRows,
        mine: &[bool],
        out: &[EnqueueOutcome],
        now: Micros,
    ) {
        let until = now + self.lease_us();
        for ((id, mine), o) in rows.id.iter().zip(mine).zip(out) {
            if *mine && matches!(o, EnqueueOutcome::Inserted) {
                self.held.hold_message(*id, 1, until);
            }
        }
    }
}

/// The insert of a batch's messages (`$1`-`$9`, `$14`, `$15` arrays, one element a message;
/// those marked `mine` stored running under this node's lease, `$13` their attempt
/// log), and what it does on a conflict: `ON CONFLICT DO NOTHING` where the batch
/// has an Idempotency-Key (the partial unique index rejects a repeated one), nothing
/// where it has none. Ids are minted fresh for every message, so a batch without
/// keys cannot conflict, and a plain insert spares PostgreSQL the speculative
/// insertion `ON CONFLICT` makes of every row (~3 µs of its ~55 µs a message).
macro_rules! insert_messages {
    ($on_conflict:literal) => {
        concat!(insert_messages!(), $on_conflict)
    };
    () => {
        "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at,
                               idempotency_key, input, holder, lease_until, attempts, attempt_log,
                               consumer, key_id)
         SELECT id, tenant, trigger, lane, mode, CASE WHEN mine THEN 'running' ELSE 'queued' END,
                received_at, received_at, ikey, input,
                CASE WHEN mine THEN $10::text END, CASE WHEN mine THEN $11::int8 + $12::int8 END,
                CASE WHEN mine THEN 1 ELSE 0 END,
                CASE WHEN mine THEN $13::jsonb ELSE '[]'::jsonb END,
                consumer, key_id
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                     $7::text[], $8::text[], $9::bool[], $14::text[], $15::text[])
              AS u(id, tenant, trigger, lane, mode, received_at, ikey, input, mine, consumer, key_id)"
    };
}

/// A batch without ordered messages: the insert alone.
const INSERT_UNORDERED: &str =
    concat!(insert_messages!(" ON CONFLICT DO NOTHING"), " RETURNING id");

/// As `INSERT_UNORDERED`, for a batch without Idempotency-Keys: every row goes in.
const INSERT_UNORDERED_NEW: &str = insert_messages!();

/// A batch with ordered messages: the lanes' counts grow by what was really
/// inserted, in the same statement.
macro_rules! insert_counting_lanes {
    ($on_conflict:literal) => {
        concat!(
            "WITH ins AS (",
            insert_messages!($on_conflict),
            " RETURNING id, tenant, trigger, lane),
             counted AS (
                UPDATE lanes l SET pending = l.pending + c.n
                FROM (SELECT tenant, trigger, lane, count(*) AS n FROM ins
                      WHERE lane IS NOT NULL GROUP BY 1, 2, 3) c
                WHERE l.tenant = c.tenant AND l.trigger = c.trigger AND l.lane = c.lane)
             SELECT id FROM ins"
        )
    };
}

const INSERT_COUNTING_LANES: &str = insert_counting_lanes!(" ON CONFLICT DO NOTHING");

/// As `INSERT_COUNTING_LANES`, for a batch without Idempotency-Keys.
const INSERT_COUNTING_LANES_NEW: &str = insert_counting_lanes!("");

/// Inserts a batch's messages (those in `mine` claimed by this node, their first
/// attempt started at `now`), counts them into their lanes, finds the first
/// message of each repeated Idempotency-Key, and tells other nodes of work left
/// for them. Ordered messages (`ordered`: the batch has some) need their lanes
/// locked first, in the same transaction.
async fn insert_batch<C: deadpool_postgres::GenericClient>(
    client: &C,
    store: &PgStore,
    rows: &rows::NewRows,
    mine: &[bool],
    now: Micros,
    ordered: bool,
) -> Result<Vec<EnqueueOutcome>, StoreError> {
    // A claimed message's attempt log is built once for the batch, not per row by
    // PostgreSQL's JSON functions.
    let claimed_log = serde_json::Value::Array(vec![rows::attempt_json(&AttemptRecord {
        number: 1,
        started_at: now,
        finished_at: None,
        outcome: None,
        error: None,
        error_code: None,
    })]);
    let keyed = rows.ikey.iter().any(Option::is_some);
    let insert = client
        .prepare_cached(match (ordered, keyed) {
            (true, true) => INSERT_COUNTING_LANES,
            (true, false) => INSERT_COUNTING_LANES_NEW,
            (false, true) => INSERT_UNORDERED,
            (false, false) => INSERT_UNORDERED_NEW,
        })
        .await
        .map_err(db)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
        &rows.id,
        &rows.tenant,
        &rows.trigger,
        &rows.lane,
        &rows.mode,
        &rows.received_at,
        &rows.ikey,
        &rows.input,
        &mine,
        &&*store.node,
        &now,
        &store.lease_us(),
        &claimed_log,
        &rows.consumer,
        &rows.key_id,
    ];
    // Which messages went in: every one of a batch without keys (its count says
    // so, with no ids sent back), else those the insert returns.
    let inserted: Option<std::collections::HashSet<uuid::Uuid>> = if !keyed && !ordered {
        let n = client.execute(&insert, &params).await.map_err(db)?;
        if n != rows.id.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "a batch of {} messages stored {n}",
                rows.id.len()
            )));
        }
        None
    } else {
        let returned = client.query(&insert, &params).await.map_err(db)?;
        Some(returned.iter().map(|r| r.get(0)).collect())
    };
    let went_in = |id: &uuid::Uuid| inserted.as_ref().is_none_or(|set| set.contains(id));
    let mut out = Vec::with_capacity(rows.id.len());
    for (i, id) in rows.id.iter().enumerate() {
        if went_in(id) {
            out.push(EnqueueOutcome::Inserted);
            continue;
        }
        // Served by messages_idempotency.
        let first = client
            .query_opt(
                "SELECT id FROM messages WHERE tenant = $1 AND trigger = $2 AND idempotency_key = $3",
                &[&rows.tenant[i], &rows.trigger[i], &rows.ikey[i]],
            )
            .await
            .map_err(db)?
            .map(|r| rows::message_id(r.get(0)));
        let Some(first) = first else {
            return Err(StoreError::Corrupt(format!(
                "message {id} conflicts but has no twin"
            )));
        };
        match rows::get(client, first).await? {
            Some(view) => out.push(EnqueueOutcome::Duplicate(Box::new(view))),
            None => return Err(StoreError::Corrupt(format!("message {first} vanished"))),
        }
    }
    // Other nodes hear of work only when some is left for them.
    let unclaimed = rows
        .id
        .iter()
        .zip(mine)
        .any(|(id, mine)| !mine && went_in(id));
    if unclaimed {
        notify_work(client).await?;
    }
    Ok(out)
}
