//! Event deliveries on PostgreSQL: stored with the messages, claimed by the
//! sender of any node under a lease (`FOR UPDATE SKIP LOCKED`, then `next_at`
//! moves to the lease's end), every attempt appended to the row. Each query names
//! the index that serves it (migrations/postgres/0003_admin.sql).

use tokio_postgres::Row;

use crate::domain::{MessageId, Micros, TenantName};
use crate::store::StoreError;
use crate::store::admin::{DeliveryQuery, DeliveryStatus, DeliveryView, NewDelivery};

use super::admin::id_floor;
use super::rows::message_id;
use super::{PgStore, db};

const DELIVERY_COLUMNS: &str = "id, tenant, subscription, event, message_id, created_at, status, next_at, attempt_log, payload";

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} `{v}`"))
}

/// A row of `SELECT {DELIVERY_COLUMNS}`.
fn delivery(r: &Row) -> Result<DeliveryView, StoreError> {
    let t: &str = r.get(1);
    let tenant = TenantName::parse(t).map_err(|_| corrupt("tenant", t))?;
    let st: &str = r.get(6);
    let log: serde_json::Value = r.get(8);
    Ok(DeliveryView {
        delivery: NewDelivery {
            id: message_id(r.get(0)),
            tenant,
            subscription: r.get(2),
            event: r.get(3),
            message_id: r.get::<_, Option<uuid::Uuid>>(4).map(message_id),
            created_at: r.get(5),
            payload: r.get(9),
        },
        status: DeliveryStatus::parse(st).ok_or_else(|| corrupt("delivery status", st))?,
        next_at: r.get(7),
        attempts: serde_json::from_value(log.clone())
            .map_err(|_| corrupt("attempt log", &log.to_string()))?,
    })
}

/// Stores `batch` as pending deliveries, due at once, in one statement (in the
/// caller's transaction, if any); returns how many.
pub(super) async fn insert_pending<'a, C: deadpool_postgres::GenericClient>(
    client: &C,
    batch: impl Iterator<Item = &'a NewDelivery>,
) -> Result<usize, StoreError> {
    let mut cols: (Vec<uuid::Uuid>, Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
    let mut more: (Vec<Option<uuid::Uuid>>, Vec<i64>, Vec<&str>) = Default::default();
    for d in batch {
        cols.0.push(d.id.as_uuid());
        cols.1.push(d.tenant.as_str());
        cols.2.push(&d.subscription);
        cols.3.push(&d.event);
        more.0.push(d.message_id.map(|m| m.as_uuid()));
        more.1.push(d.created_at);
        more.2.push(&d.payload);
    }
    let n = cols.0.len();
    if n == 0 {
        return Ok(0);
    }
    // Served by the primary key.
    client
        .execute(
            "INSERT INTO deliveries (id, tenant, subscription, event, message_id, created_at,
                                     status, next_at, payload)
             SELECT id, tenant, subscription, event, message_id, created_at, 'pending',
                    created_at, payload
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                         $6::int8[], $7::text[])
                  AS u(id, tenant, subscription, event, message_id, created_at, payload)",
            &[
                &cols.0, &cols.1, &cols.2, &cols.3, &more.0, &more.1, &more.2,
            ],
        )
        .await
        .map_err(db)?;
    Ok(n)
}

impl PgStore {
    pub async fn add_deliveries(&self, batch: Vec<NewDelivery>) -> Result<(), StoreError> {
        // One statement for the batch: committed together.
        self.with(
            move |_, client| async move { insert_pending(&client, batch.iter()).await.map(drop) },
        )
        .await
    }

    /// `entry`: the attempt as the log keeps it.
    pub(in crate::store) async fn add_sent_delivery(
        &self,
        d: NewDelivery,
        entry: serde_json::Value,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        self.with(move |_, client| async move {
            client
                .execute(
                    "INSERT INTO deliveries (id, tenant, subscription, event, message_id, created_at,
                                             status, next_at, attempts, attempt_log, payload)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $6, 1, jsonb_build_array($8::jsonb), $9)",
                    &[
                        &d.id.as_uuid(),
                        &d.tenant.as_str(),
                        &d.subscription,
                        &d.event,
                        &d.message_id.map(|m| m.as_uuid()),
                        &d.created_at,
                        &status.as_str(),
                        &entry,
                        &d.payload,
                    ],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    /// In claim order: `Store::claim_deliveries` sorts them by creation.
    pub(in crate::store) async fn claim_deliveries(
        &self,
        now: Micros,
        lease_until: Micros,
        limit: u32,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        self.with(move |_, client| async move {
            // The inner SELECT is served by the partial index deliveries_due; rows
            // another node is claiming are skipped, not waited for.
            let sql = format!(
                "WITH c AS (
                    SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= $2
                    ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE deliveries d SET next_at = $1 FROM c WHERE d.id = c.id
                 RETURNING {}",
                DELIVERY_COLUMNS
                    .split(", ")
                    .map(|c| format!("d.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let stmt = client.prepare_cached(&sql).await.map_err(db)?;
            let rows = client
                .query(&stmt, &[&lease_until, &now, &i64::from(limit)])
                .await
                .map_err(db)?;
            rows.iter().map(delivery).collect()
        })
        .await
    }

    /// `entry`: the attempt as the log keeps it (see `Store::record_delivery_attempt`).
    pub(in crate::store) async fn record_delivery_attempt(
        &self,
        id: MessageId,
        entry: serde_json::Value,
        (number, status, next_at): (u32, DeliveryStatus, Micros),
    ) -> Result<(), StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key.
            client
                .execute(
                    "UPDATE deliveries SET status = $2, next_at = $3, attempts = $4,
                            attempt_log = attempt_log || jsonb_build_array($5::jsonb)
                     WHERE id = $1",
                    &[
                        &id.as_uuid(),
                        &status.as_str(),
                        &next_at,
                        &(number as i32),
                        &entry,
                    ],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    pub async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryView>, StoreError> {
        let before = q.before.map(|b| b.as_uuid());
        self.with(move |_, client| async move {
            // Served by deliveries_tenant (tenant, subscription, id), or by its
            // tenant prefix and the primary key order when no subscription is given.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE tenant = $1 AND ($2::text IS NULL OR subscription = $2)
                   AND ($3::uuid IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            );
            let rows = client
                .query(
                    &sql,
                    &[
                        &q.tenant.as_str(),
                        &q.subscription,
                        &before,
                        &i64::from(q.limit),
                    ],
                )
                .await
                .map_err(db)?;
            rows.iter().map(delivery).collect()
        })
        .await
    }

    pub async fn get_delivery(&self, id: MessageId) -> Result<Option<DeliveryView>, StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key.
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
            client
                .query_opt(&sql, &[&id.as_uuid()])
                .await
                .map_err(db)?
                .as_ref()
                .map(delivery)
                .transpose()
        })
        .await
    }

    pub async fn redeliver(&self, id: MessageId, now: Micros) -> Result<bool, StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key.
            let n = client
                .execute(
                    "UPDATE deliveries SET status = 'pending', next_at = $2 WHERE id = $1",
                    &[&id.as_uuid(), &now],
                )
                .await
                .map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn purge_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key: ids are UUIDv7, in creation order.
            client
                .execute(
                    "DELETE FROM deliveries WHERE id < $1 AND created_at < $2 AND status <> 'pending'",
                    &[&id_floor(before), &before],
                )
                .await
                .map_err(db)
        })
        .await
    }
}
