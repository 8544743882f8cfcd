//! The event outbox on SQLite (see `store::outbox`). Each query names the
//! index that serves it.

use rusqlite::{Connection, params};

use crate::domain::{MessageId, TenantName};
use crate::store::StoreError;
use crate::store::admin::Release;
use crate::store::error::sqlite;
use crate::store::outbox::{FanOut, OutboxEvent};

use super::SqliteStore;
use super::admin::{id, name};

/// Writes events to the outbox inside the caller's transaction.
pub(super) fn insert_events(conn: &Connection, events: &[OutboxEvent]) -> Result<(), StoreError> {
    for e in events {
        // Served by the primary key: appends (ids are UUIDv7).
        conn.prepare_cached(
            "INSERT INTO events (id, tenant, trigger, event, message_id, created_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                e.id.to_string(),
                e.tenant.as_str(),
                e.trigger,
                e.event,
                e.message_id.map(|m| m.to_string()),
                e.created_at,
                e.data,
            ])
        })
        .map_err(sqlite)?;
    }
    Ok(())
}

type EventRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<String>,
);

impl SqliteStore {
    pub async fn add_events(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        self.run_admin_tx(move |tx| insert_events(tx, &events))
            .await
    }

    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        self.run_admin(move |c| {
            // Served by the primary key, in its order.
            let rows: Vec<EventRow> = c
                .prepare_cached(
                    "SELECT id, tenant, trigger, event, message_id, created_at, data
                     FROM events ORDER BY id LIMIT ?1",
                )
                .and_then(|mut s| s.query_map([limit], |r| r.try_into())?.collect())
                .map_err(sqlite)?;
            rows.into_iter()
                .map(|(i, tenant, trigger, event, message, created_at, data)| {
                    Ok(OutboxEvent {
                        id: id(&i)?,
                        tenant: name(TenantName::parse, &tenant)?,
                        trigger,
                        event,
                        message_id: message.as_deref().map(id).transpose()?,
                        created_at,
                        data,
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn fan_out(&self, batch: Vec<FanOut>) -> Result<usize, StoreError> {
        self.run_admin_tx(move |tx| {
            let mut stored = 0;
            for f in &batch {
                // Served by the primary key.
                let taken = tx
                    .prepare_cached("DELETE FROM events WHERE id = ?1")
                    .and_then(|mut s| s.execute([f.event.to_string()]))
                    .map_err(sqlite)?;
                if taken == 0 {
                    continue;
                }
                super::deliveries::insert_pending(tx, &f.deliveries)?;
                stored += f.deliveries.len();
            }
            Ok(stored)
        })
        .await
    }

    pub async fn release_lane_with(
        &self,
        message: MessageId,
        how: Release,
        events: Vec<OutboxEvent>,
    ) -> Result<bool, StoreError> {
        let skip = how == Release::Skip;
        self.run_admin_tx(move |tx| {
            // Served by the UNIQUE index on id; guarded: only a blocking message.
            let released = tx
                .execute(
                    "UPDATE messages SET blocking = 0, open = 0,
                            status = CASE WHEN ?2 THEN 'skipped' ELSE status END
                     WHERE id = ?1 AND blocking = 1",
                    params![message.to_string(), skip],
                )
                .map_err(sqlite)?
                == 1;
            if released {
                insert_events(tx, &events)?;
            }
            Ok(released)
        })
        .await
    }
}
