//! Stored event subscriptions on SQLite (see `store::subscriptions`). Every
//! change bumps `subscription_version` in its transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::domain::{MessageId, Subscription};
use crate::store::StoreError;
use crate::store::error::sqlite;
use crate::store::subscriptions::Row;

use super::SqliteStore;

const BUMP: &str = "UPDATE subscription_version SET value = value + 1";

/// `Ok(false)` for a unique violation (the name is taken).
fn taken(r: rusqlite::Result<usize>) -> Result<bool, StoreError> {
    match r {
        Ok(n) => Ok(n == 1),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(false)
        }
        Err(e) => Err(sqlite(e)),
    }
}

/// Bumps `subscription_version` in the change's transaction when it
/// `changed` a row; answers whether it did.
fn bumped(tx: &Transaction, changed: bool) -> Result<bool, StoreError> {
    if changed {
        tx.execute(BUMP, []).map_err(sqlite)?;
    }
    Ok(changed)
}

impl SqliteStore {
    pub(in crate::store) async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        self.run_admin(|c| {
            // The table's one row.
            c.query_row("SELECT value FROM subscription_version", [], |r| r.get(0))
                .map_err(sqlite)
        })
        .await
    }

    pub(in crate::store) async fn list_subscriptions(
        &self,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.run_admin(|c| {
            // A whole read of a small table, in the order of its unique index.
            let rows: Vec<(String, String, String, String, i64, i64)> = c
                .prepare_cached(
                    "SELECT id, tenant, name, spec, created_at, updated_at FROM subscriptions
                     ORDER BY tenant, name",
                )
                .and_then(|mut s| s.query_map([], |r| r.try_into())?.collect())
                .map_err(sqlite)?;
            rows.into_iter()
                .map(|(id, tenant, name, spec, created_at, updated_at)| {
                    let corrupt = || StoreError::Corrupt(format!("subscription `{id}`"));
                    Row {
                        id: id.parse().map_err(|_| corrupt())?,
                        tenant,
                        name,
                        spec: serde_json::from_str(&spec).map_err(|_| corrupt())?,
                        created_at,
                        updated_at,
                    }
                    .read()
                })
                .collect()
        })
        .await
    }

    pub(in crate::store) async fn add_subscription(
        &self,
        sub: &Subscription,
        spec: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let (id, tenant, name) = (sub.id.to_string(), sub.tenant.to_string(), sub.name.clone());
        let (created, updated) = (sub.created_at, sub.updated_at);
        self.run_admin_tx(move |tx| {
            let added = taken(tx.execute(
                "INSERT INTO subscriptions (id, tenant, name, spec, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, tenant, name, spec.to_string(), created, updated],
            ))?;
            bumped(tx, added)
        })
        .await
    }

    pub(in crate::store) async fn update_subscription(
        &self,
        sub: &Subscription,
        spec: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let (id, name, updated) = (sub.id.to_string(), sub.name.clone(), sub.updated_at);
        self.run_admin_tx(move |tx| {
            // Served by the primary key.
            let changed = taken(tx.execute(
                "UPDATE subscriptions SET name = ?2, spec = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, name, spec.to_string(), updated],
            ))?;
            bumped(tx, changed)
        })
        .await
    }

    pub(in crate::store) async fn delete_subscription(
        &self,
        id: MessageId,
    ) -> Result<bool, StoreError> {
        self.run_admin_tx(move |tx| {
            // Served by the primary key.
            let gone = tx
                .query_row(
                    "DELETE FROM subscriptions WHERE id = ?1 RETURNING 1",
                    params![id.to_string()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sqlite)?;
            bumped(tx, gone.is_some())
        })
        .await
    }
}
