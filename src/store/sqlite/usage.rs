//! Consumers' counts, keys' last use and key notices on SQLite (tables of
//! migrations/sqlite/0005_consumer_usage.sql). Each query names the index
//! that serves it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::Micros;
use crate::store::StoreError;
use crate::store::error::sqlite;
use crate::store::usage::{KeyUse, UsageDelta, UsageRow, count, uncount};

use super::SqliteStore;

/// Every consumer's counts of `day` (`tenant`: of one tenant only), served
/// by the primary key (day, tenant, label).
fn rows_of(c: &Connection, day: i64, tenant: Option<&str>) -> Result<Vec<UsageRow>, StoreError> {
    let mut q = c
        .prepare_cached(
            "SELECT tenant, label, requests, limited, unauthorized FROM consumer_usage
             WHERE day = ?1 AND (?2 IS NULL OR tenant = ?2)",
        )
        .map_err(sqlite)?;
    q.query_map(params![day, tenant], |r| {
        Ok(UsageRow {
            tenant: r.get(0)?,
            label: r.get(1)?,
            requests: uncount(r.get(2)?),
            limited: uncount(r.get(3)?),
            unauthorized: uncount(r.get(4)?),
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(sqlite)
}

impl SqliteStore {
    pub(in crate::store) async fn add_usage(
        &self,
        deltas: Vec<UsageDelta>,
        uses: Vec<KeyUse>,
        day: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.run_admin_tx(move |tx| {
            for d in &deltas {
                // The primary key finds the row to add to.
                tx.prepare_cached(
                    "INSERT INTO consumer_usage (day, tenant, label, requests, limited, unauthorized)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (day, tenant, label) DO UPDATE SET
                         requests = requests + excluded.requests,
                         limited = limited + excluded.limited,
                         unauthorized = unauthorized + excluded.unauthorized",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        d.day,
                        d.tenant,
                        d.label,
                        count(d.requests),
                        count(d.limited),
                        count(d.unauthorized)
                    ])
                })
                .map_err(sqlite)?;
            }
            for u in &uses {
                // The primary key (tenant, label, key_id).
                tx.prepare_cached(
                    "INSERT INTO key_usage (tenant, label, key_id, last_used_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, label, key_id) DO UPDATE SET
                         last_used_at = max(last_used_at, excluded.last_used_at)",
                )
                .and_then(|mut s| s.execute(params![u.tenant, u.label, u.key_id, u.last_used]))
                .map_err(sqlite)?;
            }
            rows_of(tx, day, None)
        })
        .await
    }

    pub(in crate::store) async fn usage_of(
        &self,
        tenant: String,
        day: i64,
    ) -> Result<(Vec<UsageRow>, Vec<KeyUse>), StoreError> {
        self.run_admin(move |c| {
            let rows = rows_of(c, day, Some(&tenant))?;
            // The primary key's prefix (tenant).
            let mut q = c
                .prepare_cached(
                    "SELECT label, key_id, last_used_at FROM key_usage WHERE tenant = ?1",
                )
                .map_err(sqlite)?;
            let uses = q
                .query_map(params![tenant], |r| {
                    Ok(KeyUse {
                        tenant: tenant.clone(),
                        label: r.get(0)?,
                        key_id: r.get(1)?,
                        last_used: r.get(2)?,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(sqlite)?;
            Ok((rows, uses))
        })
        .await
    }

    pub(in crate::store) async fn claim_key_notice(
        &self,
        tenant: String,
        key_id: String,
        expires: Micros,
        now: Micros,
        event: crate::store::OutboxEvent,
    ) -> Result<bool, StoreError> {
        self.run_admin_tx(move |tx| {
            // The primary key decides: a second insert does nothing.
            let inserted = tx
                .query_row(
                    "INSERT INTO key_notices (tenant, key_id, expires_at, sent_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING RETURNING 1",
                    params![tenant, key_id, expires, now],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sqlite)?;
            if inserted.is_some() {
                super::outbox::insert_events(tx, std::slice::from_ref(&event))?;
            }
            Ok(inserted.is_some())
        })
        .await
    }

    pub(in crate::store) async fn purge_usage(
        &self,
        day: i64,
        before: Micros,
    ) -> Result<u64, StoreError> {
        self.run_admin_tx(move |tx| {
            // The primary key's prefix (day); key_notices is small (a row per
            // key that came near its expiry) and read whole.
            let days = tx
                .execute("DELETE FROM consumer_usage WHERE day < ?1", params![day])
                .map_err(sqlite)?;
            let notices = tx
                .execute(
                    "DELETE FROM key_notices WHERE expires_at < ?1",
                    params![before],
                )
                .map_err(sqlite)?;
            Ok((days + notices) as u64)
        })
        .await
    }
}
