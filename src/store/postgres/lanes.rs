//! Ordered lanes on the shared store: a lane is claimed whole under a lease
//! (its `epoch`), its unfinished messages read in `seq` order and a run of
//! their results committed in one transaction, fenced by holder and epoch.

use crate::domain::{MessageId, Micros, TriggerKey};
use crate::store::types::{Completion, StoreError};

use tokio_postgres::Row;

use super::claims::{Claim, LaneClaim, LaneMessage};
use super::rows::{message_id, mode, names, status};
use super::writer::write_ends;
use super::{PgStore, db};

/// Claims ordered lanes. Served by lanes_ready (same predicate); the parameters
/// are those of every `Claim`.
const CLAIM_LANES: &str = "WITH cand AS (
    SELECT tenant, trigger, lane, run_at FROM lanes
    WHERE pending > 0 AND blocked_by IS NULL AND run_at <= $1
      AND (holder IS NULL OR lease_until < $1)
      AND tenant <> ALL($5::text[])
    ORDER BY run_at LIMIT $6 FOR UPDATE SKIP LOCKED),
 c AS (
    SELECT tenant, trigger, lane FROM (
        SELECT tenant, trigger, lane, run_at,
               row_number() OVER (PARTITION BY tenant ORDER BY run_at) AS n
        FROM cand) r
    WHERE n <= $7 ORDER BY run_at LIMIT $2)
 UPDATE lanes l SET holder = $3, epoch = nextval('lane_epochs'), lease_until = $1 + $4
 FROM c WHERE l.tenant = c.tenant AND l.trigger = c.trigger AND l.lane = c.lane
 RETURNING l.tenant, l.trigger, l.lane, l.epoch";

/// Ordered lanes that have runnable work and no live holder.
impl Claim for LaneClaim {
    const SQL: &'static str = CLAIM_LANES;

    fn hold(store: &PgStore, r: &Row, until: Micros) {
        store
            .held
            .hold_lane((r.get(0), r.get(1), r.get(2)), r.get(3), until);
    }

    fn read(r: &Row, _now: Micros) -> Result<Self, StoreError> {
        let (tenant, trigger) = names(r.get(0), r.get(1))?;
        Ok(LaneClaim {
            tenant,
            trigger,
            lane: r.get(2),
            epoch: r.get(3),
        })
    }
}

impl PgStore {
    /// The failed message holding an ordered lane, if one does.
    pub async fn lane_blocked_by(
        &self,
        key: &TriggerKey,
        lane: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        let (key, lane) = (key.clone(), lane.to_owned());
        self.with(move |_, client| async move {
            // Served by the lanes primary key.
            let stmt = client
                .prepare_cached(
                    "SELECT blocked_by FROM lanes WHERE tenant = $1 AND trigger = $2 AND lane = $3",
                )
                .await
                .map_err(db)?;
            let row = client
                .query_opt(&stmt, &[&key.tenant.as_str(), &key.trigger.as_str(), &lane])
                .await
                .map_err(db)?;
            Ok(row
                .and_then(|r| r.get::<_, Option<uuid::Uuid>>(0))
                .map(message_id))
        })
        .await
    }

    /// The lane's next unfinished messages after `after_seq`, in acceptance order.
    pub async fn lane_messages(
        &self,
        lane: &LaneClaim,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<LaneMessage>, StoreError> {
        let lane = lane.clone();
        self.with(move |_, client| async move {
            // Served by messages_lane.
            let stmt = client
                .prepare_cached(
                    "SELECT seq, id, mode, status, attempts, run_at, input FROM messages
                     WHERE tenant = $1 AND trigger = $2 AND lane = $3 AND finished_at IS NULL AND seq > $4
                     ORDER BY seq LIMIT $5",
                )
                .await
                .map_err(db)?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &lane.tenant.as_str(),
                        &lane.trigger.as_str(),
                        &lane.lane,
                        &after_seq,
                        &(limit as i64),
                    ],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(LaneMessage {
                        seq: r.get(0),
                        id: message_id(r.get(1)),
                        mode: mode(r.get(2))?,
                        status: status(r.get(3))?,
                        attempts: r.get::<_, i32>(4) as u32,
                        run_at: r.get(5),
                        input: crate::store::read_input(r.get(6)),
                    })
                })
                .collect()
        })
        .await
    }

    /// Writes a run of a lane's results (each with the status of the `fail` step
    /// that ended it) in one transaction, only while this node still holds the
    /// lane at `epoch` under a live lease; renews the lease, or releases the lane
    /// (`release`: not before that time). Returns false when the lane was lost:
    /// nothing was written.
    pub async fn commit_lane(
        &self,
        lane: &LaneClaim,
        done: Vec<(Completion, Option<u16>)>,
        release: Option<Micros>,
        now: Micros,
    ) -> Result<bool, StoreError> {
        let claim = lane.clone();
        let result = self.commit_lane_inner(claim, done, release, now).await;
        if !matches!(result, Ok(true)) || release.is_some() {
            self.forget_lane(lane);
        } else {
            self.renewed_lane(lane, now + self.lease_us());
        }
        result
    }

    async fn commit_lane_inner(
        &self,
        lane: LaneClaim,
        done: Vec<(Completion, Option<u16>)>,
        release: Option<Micros>,
        now: Micros,
    ) -> Result<bool, StoreError> {
        self.with(move |store, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Served by the lanes primary key.
            let stmt = tx
                .prepare_cached(
                    "UPDATE lanes SET lease_until = $5,
                            holder = CASE WHEN $6 THEN NULL ELSE holder END,
                            run_at = CASE WHEN $6 THEN $7 ELSE run_at END
                     WHERE tenant = $1 AND trigger = $2 AND lane = $3 AND holder = $4 AND epoch = $8
                       AND lease_until >= $9",
                )
                .await
                .map_err(db)?;
            let held = tx
                .execute(
                    &stmt,
                    &[
                        &lane.tenant.as_str(),
                        &lane.trigger.as_str(),
                        &lane.lane,
                        &&*store.node,
                        &(now + store.lease_us()),
                        &release.is_some(),
                        &release.unwrap_or(0),
                        &lane.epoch,
                        &now,
                    ],
                )
                .await
                .map_err(db)?;
            if held == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(false);
            }
            if !done.is_empty() {
                let refs: Vec<(&Completion, Option<u16>)> =
                    done.iter().map(|(c, f)| (c, *f)).collect();
                write_ends(&tx, &store, &refs).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
        .await
    }

    /// Sets a lane's count of unfinished messages from its messages, for a lane
    /// claimed as having work that had none (a count that drifted). The lane's
    /// row is locked first, so enqueues to it wait and are all counted.
    pub async fn recount_lane(&self, lane: &LaneClaim) -> Result<i64, StoreError> {
        let lane = lane.clone();
        self.with(move |store, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&lane.tenant.as_str(), &lane.trigger.as_str(), &lane.lane];
            // Served by the lanes primary key; only by this lane's holder.
            let mine = tx
                .query_opt(
                    "SELECT 1 FROM lanes WHERE tenant = $1 AND trigger = $2 AND lane = $3
                       AND holder = $4 AND epoch = $5 FOR UPDATE",
                    &[key[0], key[1], key[2], &&*store.node, &lane.epoch],
                )
                .await
                .map_err(db)?;
            if mine.is_none() {
                return Ok(-1);
            }
            // Served by messages_lane.
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM messages
                     WHERE tenant = $1 AND trigger = $2 AND lane = $3 AND finished_at IS NULL",
                    &key,
                )
                .await
                .map_err(db)?
                .get(0);
            tx.execute(
                "UPDATE lanes SET pending = $4 WHERE tenant = $1 AND trigger = $2 AND lane = $3",
                &[key[0], key[1], key[2], &n],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(n)
        })
        .await
    }
}
