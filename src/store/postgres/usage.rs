//! Consumers' counts, keys' last use and key notices on PostgreSQL (tables of
//! migrations/postgres/0011_consumer_usage.sql). Every node adds to the same
//! rows: batches are sorted (`store::usage::merged`), so two nodes lock them
//! in one order. Each query names the index that serves it.

use tokio_postgres::Row;

use crate::domain::Micros;
use crate::store::StoreError;
use crate::store::usage::{KeyUse, UsageDelta, UsageRow, count, uncount};

use super::{PgStore, db};

fn usage_row(r: &Row) -> UsageRow {
    UsageRow {
        tenant: r.get(0),
        label: r.get(1),
        requests: uncount(r.get(2)),
        limited: uncount(r.get(3)),
        unauthorized: uncount(r.get(4)),
    }
}

/// Every consumer's counts of a day, or one tenant's: the primary key
/// (day, tenant, label).
const ROWS_OF_DAY: &str = "SELECT tenant, label, requests, limited, unauthorized
     FROM consumer_usage WHERE day = $1 AND ($2::text IS NULL OR tenant = $2)";

impl PgStore {
    pub(in crate::store) async fn add_usage(
        &self,
        deltas: Vec<UsageDelta>,
        uses: Vec<KeyUse>,
        day: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let mut keys: (Vec<i32>, Vec<String>, Vec<String>) = Default::default();
        let mut counts: (Vec<i64>, Vec<i64>, Vec<i64>) = Default::default();
        for d in deltas {
            keys.0.push(d.day as i32);
            keys.1.push(d.tenant);
            keys.2.push(d.label);
            counts.0.push(count(d.requests));
            counts.1.push(count(d.limited));
            counts.2.push(count(d.unauthorized));
        }
        let mut used: (Vec<String>, Vec<String>, Vec<String>, Vec<i64>) = Default::default();
        for u in uses {
            used.0.push(u.tenant);
            used.1.push(u.label);
            used.2.push(u.key_id);
            used.3.push(u.last_used);
        }
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            if !keys.0.is_empty() {
                // The primary key finds each row to add to.
                tx.execute(
                    "INSERT INTO consumer_usage AS u (day, tenant, label, requests, limited, unauthorized)
                     SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[],
                                          $5::int8[], $6::int8[])
                     ON CONFLICT (day, tenant, label) DO UPDATE SET
                         requests = u.requests + EXCLUDED.requests,
                         limited = u.limited + EXCLUDED.limited,
                         unauthorized = u.unauthorized + EXCLUDED.unauthorized",
                    &[&keys.0, &keys.1, &keys.2, &counts.0, &counts.1, &counts.2],
                )
                .await
                .map_err(db)?;
            }
            if !used.0.is_empty() {
                // The primary key (tenant, label, key_id).
                tx.execute(
                    "INSERT INTO key_usage AS k (tenant, label, key_id, last_used_at)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[])
                     ON CONFLICT (tenant, label, key_id) DO UPDATE SET
                         last_used_at = GREATEST(k.last_used_at, EXCLUDED.last_used_at)",
                    &[&used.0, &used.1, &used.2, &used.3],
                )
                .await
                .map_err(db)?;
            }
            let none: Option<&str> = None;
            let rows = tx
                .query(ROWS_OF_DAY, &[&(day as i32), &none])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(rows.iter().map(usage_row).collect())
        })
        .await
    }

    pub(in crate::store) async fn usage_of(
        &self,
        tenant: String,
        day: i64,
    ) -> Result<(Vec<UsageRow>, Vec<KeyUse>), StoreError> {
        self.with(move |_, client| async move {
            let rows = client
                .query(ROWS_OF_DAY, &[&(day as i32), &Some(tenant.as_str())])
                .await
                .map_err(db)?;
            // The primary key's prefix (tenant).
            let uses = client
                .query(
                    "SELECT label, key_id, last_used_at FROM key_usage WHERE tenant = $1",
                    &[&tenant],
                )
                .await
                .map_err(db)?;
            let uses = uses
                .iter()
                .map(|r| KeyUse {
                    tenant: tenant.clone(),
                    label: r.get(0),
                    key_id: r.get(1),
                    last_used: r.get(2),
                })
                .collect();
            Ok((rows.iter().map(usage_row).collect(), uses))
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
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // The primary key decides, whichever node inserts first.
            let inserted = tx
                .execute(
                    "INSERT INTO key_notices (tenant, key_id, expires_at, sent_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&tenant, &key_id, &expires, &now],
                )
                .await
                .map_err(db)?;
            if inserted == 1 {
                super::outbox::insert_events(&tx, &[&event]).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(inserted == 1)
        })
        .await
    }

    pub(in crate::store) async fn purge_usage(
        &self,
        day: i64,
        before: Micros,
    ) -> Result<u64, StoreError> {
        self.with(move |_, mut client| async move {
            let tx = client.transaction().await.map_err(db)?;
            // The primary key's prefix (day); key_notices is small (a row per
            // key that came near its expiry) and read whole.
            let days = tx
                .execute(
                    "DELETE FROM consumer_usage WHERE day < $1",
                    &[&(day as i32)],
                )
                .await
                .map_err(db)?;
            let notices = tx
                .execute("DELETE FROM key_notices WHERE expires_at < $1", &[&before])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(days + notices)
        })
        .await
    }
}
