//! The event outbox on PostgreSQL (see `store::outbox`). Each query names the
//! index that serves it.

use deadpool_postgres::GenericClient;

use crate::domain::{MessageId, TenantName};
use crate::store::StoreError;
use crate::store::admin::Release;
use crate::store::outbox::{FanOut, OutboxEvent};

use super::rows::message_id;
use super::{PgStore, db, notify_work};

/// Writes events to the outbox inside the caller's transaction, one statement.
pub(super) async fn insert_events<C: GenericClient>(
    tx: &C,
    events: &[&OutboxEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len();
    let (mut id, mut tenant, mut trigger, mut event) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut message, mut created_at, mut data) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in events {
        id.push(e.id.as_uuid());
        tenant.push(e.tenant.as_str());
        trigger.push(e.trigger.as_deref());
        event.push(e.event.as_str());
        message.push(e.message_id.map(|m| m.as_uuid()));
        created_at.push(e.created_at);
        data.push(e.data.as_deref());
    }
    // Served by the primary key.
    let stmt = tx
        .prepare_cached(
            "INSERT INTO events (id, tenant, trigger, event, message_id, created_at, data)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                                  $6::int8[], $7::text[])
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    tx.execute(
        &stmt,
        &[&id, &tenant, &trigger, &event, &message, &created_at, &data],
    )
    .await
    .map_err(db)?;
    Ok(())
}

impl PgStore {
    pub async fn add_events(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        self.with(move |_, client| async move {
            let refs: Vec<&OutboxEvent> = events.iter().collect();
            insert_events(&client, &refs).await
        })
        .await
    }

    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key, in its order.
            let stmt = client
                .prepare_cached(
                    "SELECT id, tenant, trigger, event, message_id, created_at, data
                     FROM events ORDER BY id LIMIT $1",
                )
                .await
                .map_err(db)?;
            let rows = client
                .query(&stmt, &[&i64::from(limit)])
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxEvent {
                        id: message_id(r.get(0)),
                        tenant: TenantName::parse(r.get(1))
                            .map_err(|e| StoreError::Corrupt(format!("outbox tenant: {e}")))?,
                        trigger: r.get(2),
                        event: r.get(3),
                        message_id: r.get::<_, Option<uuid::Uuid>>(4).map(message_id),
                        created_at: r.get(5),
                        data: r.get(6),
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn fan_out(&self, batch: Vec<FanOut>) -> Result<usize, StoreError> {
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            let ids: Vec<uuid::Uuid> = batch.iter().map(|f| f.event.as_uuid()).collect();
            // Served by the primary key. The rows stay locked until commit: a
            // node fanning out the same events meanwhile waits, then finds them
            // gone and adds nothing.
            let taken: std::collections::HashSet<uuid::Uuid> = tx
                .query(
                    "DELETE FROM events WHERE id = ANY($1) RETURNING id",
                    &[&ids],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let taken_ones = batch
                .iter()
                .filter(|f| taken.contains(&f.event.as_uuid()))
                .flat_map(|f| f.deliveries.iter());
            let stored = super::deliveries::insert_pending(&tx, taken_ones).await?;
            tx.commit().await.map_err(db)?;
            Ok(stored)
        })
        .await
    }

    /// Lets go of a lane held by message `id`; false when it held none.
    pub async fn release_lane(&self, id: MessageId, how: Release) -> Result<bool, StoreError> {
        self.release_lane_with(id, how, Vec::new()).await
    }

    pub async fn release_lane_with(
        &self,
        id: MessageId,
        how: Release,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        self.settle().await;
        let skip = how == Release::Skip;
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // Served by the UNIQUE index on id; guarded: only a blocking message.
            let held = tx
                .query_opt(
                    "UPDATE messages SET blocking = FALSE,
                            status = CASE WHEN $2 THEN 'skipped' ELSE status END
                     WHERE id = $1 AND blocking AND lane IS NOT NULL
                     RETURNING tenant, trigger, lane",
                    &[&id.as_uuid(), &skip],
                )
                .await
                .map_err(db)?;
            let Some(lane) = held else {
                return Ok(false);
            };
            // Served by the lanes primary key.
            tx.execute(
                "UPDATE lanes SET blocked_by = NULL
                 WHERE tenant = $1 AND trigger = $2 AND lane = $3 AND blocked_by = $4",
                &[
                    &lane.get::<_, &str>(0),
                    &lane.get::<_, &str>(1),
                    &lane.get::<_, &str>(2),
                    &id.as_uuid(),
                ],
            )
            .await
            .map_err(db)?;
            let refs: Vec<&OutboxEvent> = events.iter().collect();
            insert_events(&tx, &refs).await?;
            notify_work(&tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(true)
        })
        .await
    }
}
