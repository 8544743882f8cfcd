//! Event deliveries on SQLite: stored with the messages, claimed under a lease,
//! every attempt appended to the row. Each query names the index that serves it.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params, params_from_iter};

use crate::domain::{MessageId, Micros, TenantName};

use crate::store::StoreError;
use crate::store::admin::{DeliveryQuery, DeliveryStatus, DeliveryView, NewDelivery};
use crate::store::error::sqlite;

use super::SqliteStore;
use super::admin::{id, name};
use super::reads::{corrupt, id_floor};

const DELIVERY_COLUMNS: &str = "id, tenant, subscription, event, message_id, created_at, status, next_at, attempt_log, payload";

/// A row of `DELIVERY_COLUMNS`.
type DeliveryRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    i64,
    String,
    String,
);

fn delivery(row: DeliveryRow) -> Result<DeliveryView, StoreError> {
    let (i, tenant, subscription, event, message, created_at, st, next_at, log, payload) = row;
    Ok(DeliveryView {
        delivery: NewDelivery {
            id: id(&i)?,
            tenant: name(TenantName::parse, &tenant)?,
            subscription,
            event,
            message_id: message.as_deref().map(id).transpose()?,
            created_at,
            payload,
        },
        status: DeliveryStatus::parse(&st).ok_or_else(|| corrupt("delivery status", &st))?,
        next_at,
        attempts: serde_json::from_str(&log).map_err(|_| corrupt("attempt log", &log))?,
    })
}

fn deliveries(
    conn: &Connection,
    sql: &str,
    values: Vec<Sql>,
) -> Result<Vec<DeliveryView>, StoreError> {
    let rows: Vec<DeliveryRow> = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(values), |r| r.try_into())?
                .collect()
        })
        .map_err(sqlite)?;
    rows.into_iter().map(delivery).collect()
}

/// A delivery's own columns, `?1` to `?7` of both INSERTs: id, tenant,
/// subscription, event, message_id, created_at and payload.
fn own_columns(d: &NewDelivery) -> [Sql; 7] {
    [
        d.id.to_string().into(),
        d.tenant.to_string().into(),
        d.subscription.clone().into(),
        d.event.clone().into(),
        d.message_id.map(|m| m.to_string()).into(),
        d.created_at.into(),
        d.payload.clone().into(),
    ]
}

/// Stores `batch` as pending deliveries, due at once (in the caller's
/// transaction).
pub(super) fn insert_pending(conn: &Connection, batch: &[NewDelivery]) -> Result<(), StoreError> {
    for d in batch {
        conn.prepare_cached(
            "INSERT INTO deliveries (id, tenant, subscription, event, message_id, created_at,
                                     status, next_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?6, ?7)",
        )
        .and_then(|mut s| s.execute(params_from_iter(own_columns(d))))
        .map_err(sqlite)?;
    }
    Ok(())
}

impl SqliteStore {
    pub async fn add_deliveries(&self, batch: Vec<NewDelivery>) -> Result<(), StoreError> {
        self.run_admin_tx(move |tx| insert_pending(tx, &batch))
            .await
    }

    /// `entry`: the attempt as the log keeps it.
    pub(in crate::store) async fn add_sent_delivery(
        &self,
        d: NewDelivery,
        entry: serde_json::Value,
        status: DeliveryStatus,
    ) -> Result<(), StoreError> {
        self.run_admin(move |c| {
            c.execute(
                "INSERT INTO deliveries (id, tenant, subscription, event, message_id, created_at,
                                         status, next_at, attempts, attempt_log, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?6, 1, json_array(json(?9)), ?7)",
                params_from_iter(
                    own_columns(&d)
                        .into_iter()
                        .chain([status.as_str().to_owned().into(), entry.to_string().into()]),
                ),
            )
            .map(drop)
            .map_err(sqlite)
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
        self.run_admin(move |c| {
            // The inner SELECT is served by the partial index deliveries_due; one
            // statement, so the claim is atomic.
            let sql = format!(
                "UPDATE deliveries SET next_at = ?1
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= ?2
                              ORDER BY next_at LIMIT ?3)
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let values = vec![
                Sql::Integer(lease_until),
                Sql::Integer(now),
                Sql::Integer(limit.into()),
            ];
            deliveries(c, &sql, values)
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
        let entry = entry.to_string();
        self.run_admin(move |c| {
            // Served by the primary key.
            c.execute(
                "UPDATE deliveries SET status = ?2, next_at = ?3, attempts = ?4,
                        attempt_log = json_insert(attempt_log, '$[#]', json(?5))
                 WHERE id = ?1",
                params![id.to_string(), status.as_str(), next_at, number, entry],
            )
            .map(drop)
            .map_err(sqlite)
        })
        .await
    }

    pub async fn list_deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryView>, StoreError> {
        self.run_admin(move |c| {
            // Served by deliveries_tenant (tenant, subscription, id), or by its
            // tenant prefix and the primary key order when no subscription is given.
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant = ?");
            let mut values = vec![Sql::Text(q.tenant.as_str().to_owned())];
            if let Some(s) = q.subscription {
                sql.push_str(" AND subscription = ?");
                values.push(Sql::Text(s));
            }
            if let Some(b) = q.before {
                sql.push_str(" AND id < ?");
                values.push(Sql::Text(b.to_string()));
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            values.push(Sql::Integer(q.limit.into()));
            deliveries(c, &sql, values)
        })
        .await
    }

    pub async fn get_delivery(&self, id: MessageId) -> Result<Option<DeliveryView>, StoreError> {
        self.run_admin(move |c| {
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?");
            Ok(deliveries(c, &sql, vec![Sql::Text(id.to_string())])?
                .into_iter()
                .next())
        })
        .await
    }

    pub async fn purge_deliveries(&self, before: Micros) -> Result<u64, StoreError> {
        self.run_admin(move |c| {
            // Served by the primary key: ids are UUIDv7, in creation order.
            c.execute(
                "DELETE FROM deliveries WHERE id < ?1 AND created_at < ?2 AND status != 'pending'",
                params![id_floor(before), before],
            )
            .map(|n| n as u64)
            .map_err(sqlite)
        })
        .await
    }

    pub async fn redeliver(&self, id: MessageId, now: Micros) -> Result<bool, StoreError> {
        self.run_admin(move |c| {
            c.execute(
                "UPDATE deliveries SET status = 'pending', next_at = ?2 WHERE id = ?1",
                params![id.to_string(), now],
            )
            .map(|n| n == 1)
            .map_err(sqlite)
        })
        .await
    }
}
