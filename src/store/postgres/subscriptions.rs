//! Stored event subscriptions on PostgreSQL (see `store::subscriptions`). Every
//! change bumps `subscription_version` in the same statement (a data-modifying
//! `WITH`), so the two commit together.

use crate::domain::{MessageId, Subscription};
use crate::store::StoreError;
use crate::store::subscriptions::Row;

use super::{PgStore, db};

/// Whether a statement answering `count(*)` of the rows it changed changed
/// one; `Ok(false)` when the unique (tenant, name) index refused the row.
fn changed_unless_taken(
    answer: Result<tokio_postgres::Row, tokio_postgres::Error>,
) -> Result<bool, StoreError> {
    match answer {
        Ok(row) => Ok(row.get::<_, i64>(0) == 1),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(e) => Err(db(e)),
    }
}

impl PgStore {
    pub(in crate::store) async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        self.with(|_, client| async move {
            // The table's one row.
            let row = client
                .query_one("SELECT value FROM subscription_version", &[])
                .await
                .map_err(db)?;
            Ok(row.get(0))
        })
        .await
    }

    pub(in crate::store) async fn list_subscriptions(
        &self,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.with(|_, client| async move {
            // A whole read of a small table, in the order of its unique index.
            let rows = client
                .query(
                    "SELECT id, tenant, name, spec, created_at, updated_at FROM subscriptions
                     ORDER BY tenant, name",
                    &[],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Row {
                        id: r.get(0),
                        tenant: r.get(1),
                        name: r.get(2),
                        spec: r.get(3),
                        created_at: r.get(4),
                        updated_at: r.get(5),
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
        let (id, tenant, name) = (sub.id, sub.tenant.to_string(), sub.name.clone());
        let (created, updated) = (sub.created_at, sub.updated_at);
        self.with(move |_, client| async move {
            let added = client
                .query_one(
                    "WITH ins AS (
                        INSERT INTO subscriptions (id, tenant, name, spec, created_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, $6) RETURNING 1),
                     bump AS (
                        UPDATE subscription_version SET value = value + 1
                        WHERE EXISTS (SELECT 1 FROM ins) RETURNING 1)
                     SELECT count(*) FROM ins",
                    &[&id, &tenant, &name, &spec, &created, &updated],
                )
                .await;
            changed_unless_taken(added)
        })
        .await
    }

    pub(in crate::store) async fn update_subscription(
        &self,
        sub: &Subscription,
        spec: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let (id, name, updated) = (sub.id, sub.name.clone(), sub.updated_at);
        self.with(move |_, client| async move {
            // Served by the primary key.
            let changed = client
                .query_one(
                    "WITH up AS (
                        UPDATE subscriptions SET name = $2, spec = $3, updated_at = $4
                        WHERE id = $1 RETURNING 1),
                     bump AS (
                        UPDATE subscription_version SET value = value + 1
                        WHERE EXISTS (SELECT 1 FROM up) RETURNING 1)
                     SELECT count(*) FROM up",
                    &[&id, &name, &spec, &updated],
                )
                .await;
            changed_unless_taken(changed)
        })
        .await
    }

    pub(in crate::store) async fn delete_subscription(
        &self,
        id: MessageId,
    ) -> Result<bool, StoreError> {
        self.with(move |_, client| async move {
            // Served by the primary key.
            let row = client
                .query_one(
                    "WITH gone AS (DELETE FROM subscriptions WHERE id = $1 RETURNING 1),
                     bump AS (
                        UPDATE subscription_version SET value = value + 1
                        WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1)
                     SELECT count(*) FROM gone",
                    &[&id.as_uuid()],
                )
                .await
                .map_err(db)?;
            Ok(row.get::<_, i64>(0) == 1)
        })
        .await
    }
}
