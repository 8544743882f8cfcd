//! Upgrading a store with work in it: every open message is kept, in order.

use flowgate::domain::{MessageId, MessageStatus, now_micros};
use flowgate::store::Store;

use super::{message, options};
use crate::pg::schema;

/// A database migrated by the previous release (migrations 1-7, messages keyed by
/// `seq`) with work in it: the upgrade to the current migrations keeps every open
/// message, recovery returns them in acceptance order (unordered, lanes' and a
/// blocking one, interleaved), and the upgraded store stores, reads and purges.
#[tokio::test]
async fn pg_an_upgrade_from_migration_7_keeps_every_open_message_in_order() {
    let Some(pg) = schema("pg_upgrade_from_7").await else {
        return;
    };
    let previous = [
        include_str!("../../../migrations/postgres/0001_messages.sql"),
        include_str!("../../../migrations/postgres/0002_fail_status.sql"),
        include_str!("../../../migrations/postgres/0003_admin.sql"),
        include_str!("../../../migrations/postgres/0004_no_held_index.sql"),
        include_str!("../../../migrations/postgres/0005_lz4.sql"),
        include_str!("../../../migrations/postgres/0006_no_trigger_index.sql"),
        include_str!("../../../migrations/postgres/0007_no_finished_index.sql"),
    ];
    let mut sql = String::from(
        "CREATE TABLE schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
    );
    for (i, m) in previous.iter().enumerate() {
        sql.push_str(m);
        sql.push_str(&format!(
            ";\nINSERT INTO schema_migrations VALUES ({}, 'previous', 0);\n",
            i + 1
        ));
    }
    crate::pg::run(&pg.url, &sql).await.unwrap();

    // Rows as the previous release wrote them: seq is the acceptance order.
    let now = now_micros();
    let ids: Vec<MessageId> = (0..6).map(|i| MessageId::at(now - 1_000_000 + i)).collect();
    let rows = [
        (None, "queued", false, false),
        (Some("a"), "queued", false, false),
        (None, "succeeded", true, false),
        (Some("b"), "failed", true, true),
        (Some("a"), "queued", false, false),
        (None, "retrying", false, false),
    ];
    let mut insert = String::new();
    for (id, (lane, status, finished, blocking)) in ids.iter().zip(rows) {
        insert.push_str(&format!(
            "INSERT INTO messages (id, tenant, trigger, lane, mode, status, received_at, run_at,
                                   finished_at, blocking, input)
             VALUES ('{id}', 't', 'x', {lane}, 'async', '{status}', {now}, {now}, {fin},
                     {blocking}, '{{\"n\": 1}}');\n",
            lane = lane.map_or("NULL".into(), |l| format!("'{l}'")),
            fin = if finished {
                now.to_string()
            } else {
                "NULL".into()
            },
        ));
    }
    insert.push_str(
        "INSERT INTO lanes (tenant, trigger, lane, pending) VALUES ('t', 'x', 'a', 2);
         INSERT INTO lanes (tenant, trigger, lane, pending, blocked_by)
             SELECT 't', 'x', 'b', 0, id FROM messages WHERE blocking;",
    );
    crate::pg::run(&pg.url, &insert).await.unwrap();

    let store = Store::connect(&pg.url, options()).await.unwrap();
    let open = store.recover(now_micros()).await.unwrap();
    let order: Vec<MessageId> = open.iter().map(|m| m.head.id).collect();
    assert_eq!(
        order,
        vec![ids[0], ids[1], ids[3], ids[4], ids[5]],
        "every open message, in acceptance order"
    );
    assert!(open[2].blocking);
    assert_eq!(open[1].head.lane.as_deref(), Some("a"));

    let fresh = message(Some("a"), None, now_micros());
    store.enqueue(std::slice::from_ref(&fresh)).await.unwrap();
    let again = store.recover(now_micros()).await.unwrap();
    assert_eq!(
        again.last().map(|m| m.head.id),
        Some(fresh.id),
        "a new message comes last"
    );
    assert_eq!(
        store.get(ids[2]).await.unwrap().map(|v| v.head.status),
        Some(MessageStatus::Succeeded)
    );
    assert_eq!(
        store.purge(now + 1).await.unwrap(),
        1,
        "the finished one only"
    );
    assert!(store.get(ids[2]).await.unwrap().is_none());
}
