//! The plans of the shared queue's frequent statements, for the test that
//! proves none of them reads what finished messages leave behind. It names the
//! statements of claims, leases and the writer, so it sits beside them rather
//! than in any one of them.

use crate::domain::MessageId;
use crate::store::types::StoreError;

use super::admin;
use super::claims::{BACKLOGS, CLAIM_MESSAGES};
use super::leases::RENEW_MESSAGES;
use super::writer::END_ATTEMPTS;
use super::{PgStore, db};

impl PgStore {
    /// The plans of the queue's frequent statements, as this store's connections
    /// would run them now for the messages `ids`: the end of their attempts, the
    /// renewal of their leases, a claim and the backlog count; and of the two that
    /// read a whole table's worth of rows, recovery at start and retention's purge
    /// of a day ago. `EXPLAIN` only:
    /// nothing is changed. The proof that none of them reads the entries that
    /// finished messages leave in the partial indexes until the next vacuum.
    pub async fn explain_queue(
        &self,
        ids: Vec<MessageId>,
    ) -> Result<Vec<(&'static str, String)>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
        self.with(move |store, client| async move {
            let n = ids.len();
            let now = crate::domain::now_micros();
            let node: &str = &store.node;
            let end: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
                &ids,
                &vec![1i32; n],
                &vec!["succeeded"; n],
                &vec![now; n],
                &vec![Some(now); n],
                &vec![false; n],
                &vec![None::<&str>; n],
                &vec!["[]"; n],
                &vec![None::<&str>; n],
                &vec![serde_json::json!({"number": 1}); n],
                &node,
                &vec![None::<i32>; n],
                &now,
            ];
            let day_ago = now - 86_400_000_000;
            let floor = admin::id_floor(day_ago + 1000);
            let statements: [(
                &'static str,
                String,
                &[&(dyn tokio_postgres::types::ToSql + Sync)],
            ); 6] = [
                ("end of attempts", format!("EXPLAIN {END_ATTEMPTS}"), &end),
                (
                    "lease renewal",
                    format!("EXPLAIN {}", RENEW_MESSAGES),
                    &[&node, &now, &ids, &vec![1i32; n], &now],
                ),
                (
                    "claim",
                    format!("EXPLAIN {CLAIM_MESSAGES}"),
                    &[
                        &now,
                        &32i64,
                        &node,
                        &store.lease_us(),
                        &Vec::<String>::new(),
                        &32i64,
                        &32i64,
                    ],
                ),
                ("backlog count", format!("EXPLAIN {BACKLOGS}"), &[]),
                ("recovery", format!("EXPLAIN {}", super::RECOVER), &[]),
                (
                    "retention",
                    format!("EXPLAIN {}", super::PURGE),
                    &[&day_ago, &super::PURGE_CHUNK, &floor],
                ),
            ];
            let mut plans = Vec::new();
            for (what, sql, params) in statements {
                let lines: Vec<String> = client
                    .query(&sql, params)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                plans.push((what, lines.join("\n")));
            }
            Ok(plans)
        })
        .await
    }
}
