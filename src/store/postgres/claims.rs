//! Taking work from the shared queue.
//!
//! Unordered messages are claimed one row each (`FOR UPDATE SKIP LOCKED`): the
//! claim marks the row running under this node's lease and counts the attempt.
//! Ordered messages are claimed by lane: the node holding a lane's lease (its
//! `epoch`) reads the lane's unfinished messages in `seq` order, runs them one by
//! one and writes a run of results in one transaction, fenced by holder and epoch.
//! Leases are renewed by `heartbeat`; a lapsed one can be claimed by any node.

use std::str::FromStr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::domain::{MessageId, MessageStatus, Micros, Mode, TenantName, TriggerName};
use crate::store::types::StoreError;

use tokio_postgres::Row;

use super::rows::{message_id, mode, names, status};
use super::{PgStore, db, notify_work, unavailable};

/// An unordered message this node now runs (its attempt `attempt` has started).
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: MessageId,
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub mode: Mode,
    pub attempt: u32,
    pub started_at: Micros,
    pub input: crate::store::StoredInput,
}

/// This node's hold on an ordered lane.
#[derive(Debug, Clone)]
pub struct LaneClaim {
    pub tenant: TenantName,
    pub trigger: TriggerName,
    pub lane: String,
    pub epoch: i64,
}

/// A lane's unfinished message, as its holder reads it.
#[derive(Debug, Clone)]
pub struct LaneMessage {
    pub seq: i64,
    pub id: MessageId,
    pub mode: Mode,
    pub status: MessageStatus,
    /// Attempts made before.
    pub attempts: u32,
    pub run_at: Micros,
    pub input: crate::store::StoredInput,
}

/// How a finished message ended, as a sync caller is told.
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: MessageId,
    pub status: MessageStatus,
    pub response: Option<crate::domain::StoredResponse>,
    pub error: Option<String>,
    /// The status of the `fail` step that ended it.
    pub fail_status: Option<u16>,
    /// The last attempt's error code (`budget_exceeded`, ...).
    pub error_code: Option<String>,
}

/// What other nodes said.
#[derive(Debug)]
pub enum Wakeup {
    /// Messages were enqueued (or the connection was re-made: there may be work).
    Work,
    /// Sync messages finished somewhere.
    Done(Vec<MessageId>),
}

/// Claims unordered messages (see `Claim for ClaimedMessage`). Served by messages_unordered
/// (same predicate, in seq order), read by a plain index scan.
/// Tenants in `$5` are left out (this node runs enough of theirs), and no tenant
/// gets more than `$7` of the claim: the oldest `$6` candidates are locked and
/// the claim takes up to `$2` of them, at most `$7` a tenant.
pub(super) const CLAIM_MESSAGES: &str = "WITH cand AS (
    SELECT id, tenant, seq FROM messages
    WHERE lane IS NULL AND finished_at IS NULL
      AND ((status IN ('queued', 'retrying') AND run_at <= $1)
           OR (status = 'running' AND lease_until < $1))
      AND tenant <> ALL($5::text[])
    ORDER BY seq LIMIT $6 FOR UPDATE SKIP LOCKED),
 c AS (
    SELECT id FROM (SELECT id, seq, row_number() OVER (PARTITION BY tenant ORDER BY seq) AS n FROM cand) r
    WHERE n <= $7 ORDER BY seq LIMIT $2)
 UPDATE messages m SET status = 'running', holder = $3, lease_until = $1 + $4,
        attempts = m.attempts + 1,
        attempt_log = (CASE WHEN m.status = 'running' AND jsonb_array_length(m.attempt_log) > 0
            THEN jsonb_set(m.attempt_log, ARRAY[(jsonb_array_length(m.attempt_log) - 1)::text],
                 (m.attempt_log -> -1) || jsonb_build_object('finished_at', $1::int8,
                    'outcome', 'interrupted',
                    'error', 'the node running this attempt stopped or lost its lease'))
            ELSE m.attempt_log END)
            || jsonb_build_array(jsonb_build_object('number', m.attempts + 1,
                 'started_at', $1::int8, 'finished_at', NULL, 'outcome', NULL, 'error', NULL))
 FROM c WHERE m.id = c.id
 RETURNING m.id, m.tenant, m.trigger, m.mode, m.attempts, m.input, m.seq";

/// Unfinished messages per trigger. Served by messages_lane (it holds every
/// unfinished message, lane or not).
pub(super) const BACKLOGS: &str = "SELECT tenant, trigger, count(*) FROM messages
     WHERE finished_at IS NULL GROUP BY 1, 2";

/// How a claim shares itself among tenants: tenants this node already runs
/// enough of are left out, and no tenant takes more than `each` of one claim.
#[derive(Clone, Debug)]
pub struct TenantShares {
    pub full: Vec<String>,
    pub each: usize,
}

impl Default for TenantShares {
    fn default() -> Self {
        Self {
            full: Vec::new(),
            each: usize::MAX,
        }
    }
}

impl TenantShares {
    /// The claim's parameters: tenants left out, candidates to look at, most a
    /// tenant takes. Only a claim one tenant could fill looks past `limit`.
    pub(super) fn params(&self, limit: usize) -> (Vec<String>, i64, i64) {
        let each = self.each.clamp(1, limit.max(1));
        let candidates = if each >= limit {
            limit
        } else {
            limit.saturating_mul(4)
        };
        (self.full.clone(), candidates as i64, each as i64)
    }
}

/// A kind of work the shared queue hands out: the statement that claims it,
/// the lease a claimed row holds and how a row reads. Every statement takes `$1`
/// now, `$2` the limit, `$3` this node, `$4` the lease, then `$5`-`$7` as
/// `TenantShares::params` gives them.
pub trait Claim: Sized + Send + 'static {
    const SQL: &'static str;
    fn hold(store: &PgStore, row: &Row, until: Micros);
    fn read(row: &Row, now: Micros) -> Result<Self, StoreError>;
    /// Puts the claimed rows in the order they are to run.
    fn order(_rows: &mut [Row]) {}
}

/// Unordered messages: queued or due for retry, or running under a lapsed
/// lease (that attempt is recorded as interrupted), oldest first.
impl Claim for ClaimedMessage {
    const SQL: &'static str = CLAIM_MESSAGES;

    fn hold(store: &PgStore, r: &Row, until: Micros) {
        store
            .held
            .hold_message(r.get(0), r.get::<_, i32>(4) as u32, until);
    }

    fn read(r: &Row, now: Micros) -> Result<Self, StoreError> {
        let (tenant, trigger) = names(r.get(1), r.get(2))?;
        Ok(ClaimedMessage {
            id: message_id(r.get(0)),
            tenant,
            trigger,
            mode: mode(r.get(3))?,
            attempt: r.get::<_, i32>(4) as u32,
            started_at: now,
            input: crate::store::read_input(r.get(5)),
        })
    }

    fn order(rows: &mut [Row]) {
        rows.sort_by_key(|r| r.get::<_, i64>(6));
    }
}

impl PgStore {
    /// Claims up to `limit` pieces of work of kind `C` due at `now`, leaving room
    /// for other tenants as `shares` says, and holds their leases.
    pub async fn claim<C: Claim>(
        &self,
        limit: usize,
        now: Micros,
        shares: &TenantShares,
    ) -> Result<Vec<C>, StoreError> {
        let (full, candidates, each) = shares.params(limit);
        let mut rows = self
            .with(move |store, client| async move {
                let stmt = client.prepare_cached(C::SQL).await.map_err(db)?;
                let rows = client
                    .query(
                        &stmt,
                        &[
                            &now,
                            &(limit as i64),
                            &&*store.node,
                            &store.lease_us(),
                            &full,
                            &candidates,
                            &each,
                        ],
                    )
                    .await
                    .map_err(db)?;
                let until = now + store.lease_us();
                for r in &rows {
                    C::hold(&store, r, until);
                }
                Ok(rows)
            })
            .await?;
        C::order(&mut rows);
        rows.iter().map(|r| C::read(r, now)).collect()
    }

    /// How finished messages ended, for sync callers waiting here: status,
    /// response, error and the `fail` step's status. Unfinished ones are left out.
    pub async fn ended(&self, ids: Vec<MessageId>) -> Result<Vec<Ended>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
        self.with(move |_, client| async move {
            // Served by the UNIQUE index on id.
            let rows = client
                .query(
                    "SELECT id, status, response, error, fail_status,
                            attempt_log -> -1 ->> 'error_code' FROM messages
                     WHERE id = ANY($1) AND finished_at IS NOT NULL",
                    &[&ids],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let id = message_id(r.get(0));
                    // A response that cannot be read is told as the error it is.
                    let (response, unreadable) = match crate::store::read_response(id, r.get(2)) {
                        Ok(response) => (response, None),
                        Err(why) => (None, Some(why.to_string())),
                    };
                    Ok(Ended {
                        id,
                        status: status(r.get(1))?,
                        response,
                        error: unreadable.or(r.get(3)),
                        fail_status: r.get::<_, Option<i32>>(4).map(|s| s as u16),
                        error_code: r.get(5),
                    })
                })
                .collect()
        })
        .await
    }

    /// Gives back messages this node claimed but has not started (it is stopping):
    /// their unstarted attempt is taken back, they are queued again and the other
    /// nodes are told. Returns how many were given back.
    pub async fn hand_back(&self, ids: Vec<MessageId>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        self.held.release_any(ids.iter().copied());
        self.with(move |store, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Served by the UNIQUE index on id.
            let n = tx
                .execute(
                    "UPDATE messages SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'queued' END,
                            holder = NULL, lease_until = NULL, attempts = attempts - 1,
                            attempt_log = attempt_log - (jsonb_array_length(attempt_log) - 1)
                     WHERE id = ANY($1) AND holder = $2 AND status = 'running' AND lane IS NULL",
                    &[&ids, &&*store.node],
                )
                .await
                .map_err(db)?;
            if n > 0 {
                notify_work(&tx).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(n)
        })
        .await
    }

    /// Unfinished messages per trigger in the shared queue, for admission.
    pub async fn backlogs(&self) -> Result<Vec<(TenantName, TriggerName, i64)>, StoreError> {
        self.with(move |_, client| async move {
            let rows = client.query(BACKLOGS, &[]).await.map_err(db)?;
            rows.iter()
                .map(|r| {
                    let (tenant, trigger) = names(r.get(0), r.get(1))?;
                    Ok((tenant, trigger, r.get(2)))
                })
                .collect()
        })
        .await
    }

    /// Frees what lapsed leases held (nodes that stopped or lost them): those
    /// attempts end as interrupted and their messages are queued again, and those
    /// lanes are let go with their epoch moved on, so that whoever held them can
    /// write nothing more and the lane's next holder runs under a higher epoch.
    /// Never touches a live lease, this process's own included. Returns how many
    /// messages.
    pub async fn reclaim(&self, now: Micros) -> Result<u64, StoreError> {
        self.with(move |_, client| async move {
            // Served by messages_lane (it holds every unfinished message).
            let n = client
                .execute(
                    "UPDATE messages m SET status = 'queued', holder = NULL, lease_until = NULL,
                            attempt_log = CASE WHEN jsonb_array_length(m.attempt_log) > 0
                                THEN jsonb_set(m.attempt_log, ARRAY[(jsonb_array_length(m.attempt_log) - 1)::text],
                                     (m.attempt_log -> -1) || jsonb_build_object('finished_at', $1::int8,
                                        'outcome', 'interrupted',
                                        'error', 'the node running this attempt stopped or lost its lease'))
                                ELSE m.attempt_log END
                     WHERE finished_at IS NULL AND status = 'running' AND lease_until < $1",
                    &[&now],
                )
                .await
                .map_err(db)?;
            // Rows are locked in key order, as enqueues lock them. A scan of the
            // lanes table, once at start.
            client
                .execute(
                    "WITH k AS (
                        SELECT tenant, trigger, lane FROM lanes
                        WHERE holder IS NOT NULL AND lease_until < $1
                        ORDER BY 1, 2, 3 FOR UPDATE)
                     UPDATE lanes l SET holder = NULL, epoch = nextval('lane_epochs') FROM k
                     WHERE l.tenant = k.tenant AND l.trigger = k.trigger AND l.lane = k.lane",
                    &[&now],
                )
                .await
                .map_err(db)?;
            Ok(n)
        })
        .await
    }

    /// Listens for other nodes' news on a connection of its own, re-made when it
    /// drops. Every (re)connect reports `Work`, since news may have been missed.
    pub fn listen(&self) -> mpsc::Receiver<Wakeup> {
        let (tx, rx) = mpsc::channel(1024);
        let listener = self.listener.clone();
        let closed = self.closed.clone();
        self.rt.spawn(async move {
            while !tx.is_closed() && !closed.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = listen_once(&listener, &tx).await {
                    tracing::debug!(error = %e, "store notifications interrupted");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rx
    }
}

async fn listen_once(
    (config, tls): &(tokio_postgres::Config, crate::pgtls::MakeRustls),
    tx: &mpsc::Sender<Wakeup>,
) -> Result<(), StoreError> {
    let (client, mut conn) = config.connect(tls.clone()).await.map_err(db)?;
    let (ntx, mut nrx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if ntx.send(n).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client
        .batch_execute("LISTEN flowgate_work; LISTEN flowgate_done")
        .await
        .map_err(db)?;
    let _ = tx.send(Wakeup::Work).await;
    while let Some(n) = nrx.recv().await {
        let news = match n.channel() {
            "flowgate_done" => Wakeup::Done(
                n.payload()
                    .split(',')
                    .filter_map(|s| MessageId::from_str(s).ok())
                    .collect(),
            ),
            _ => Wakeup::Work,
        };
        if tx.send(news).await.is_err() {
            break;
        }
    }
    driver.abort();
    Err(unavailable("the notification connection closed"))
}
