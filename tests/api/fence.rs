//! Fencing inside one node on the shared store: nothing is claimed before
//! startup recovery has finished, and a sync message handed over past its
//! timeout runs once, under this node's lease. (Several processes under kill,
//! pause and a cut from the store are in `chaos`.)

use std::time::Duration;

use serde_json::{Value, json};

use flowgate::domain::{
    MessageId, MessageStatus, Mode, NewMessage, TenantName, TriggerName, now_micros,
};
use flowgate::flow::{Loader, SharedCatalog};
use flowgate::queue::Queue;
use flowgate::store::Store;

use crate::helpers::{TestApp, write_flow};
use crate::pg::{query, schema};

/// A message left queued in the shared store (by a node that stopped) is not
/// touched by a queue until its recovery has run; then it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_nothing_is_claimed_before_startup_recovery_has_finished() {
    let Some(pg) = schema("fence_recovery_first").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings_in(dir.path());
    let report = Loader::new(settings.flows.clone()).load();
    assert!(report.diagnostics.is_empty());
    let store = Store::connect(&pg.url, settings.pg_options())
        .await
        .unwrap();
    let left = NewMessage {
        id: MessageId::new(),
        tenant: TenantName::parse("acme").unwrap(),
        trigger: TriggerName::parse("CreateCustomerRecord").unwrap(),
        lane: None,
        mode: Mode::Async,
        received_at: now_micros(),
        idempotency_key: None,
        input: json!({"body": {"name": "Alice", "email": "alice@example.com"}}),
        body_json: None,
    };
    store.enqueue(std::slice::from_ref(&left)).await.unwrap();

    let queue = Queue::start(
        store.clone(),
        flowgate::startup::execution_for(&store),
        SharedCatalog::new(report.catalog),
        flowgate::queue::QueueLimits {
            max_backlog: 1000,
            store_timeout: Duration::from_secs(2),
            tenant_max_running: 4,
        },
        crate::helpers::executor(),
    )
    .unwrap();
    // Several of the claimer's polls (every 250 ms) would have taken it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = |v: Option<flowgate::domain::MessageView>| v.map(|v| v.head.status);
    assert_eq!(
        status(store.get(left.id).await.unwrap()),
        Some(MessageStatus::Queued),
        "claimed before recovery"
    );
    queue.recover().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(store.get(left.id).await.unwrap()) != Some(MessageStatus::Succeeded) {
        assert!(tokio::time::Instant::now() < deadline, "never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sync call whose flow outlives its timeout gets 202; the message is stored
/// running under this node's lease (no other node may take it meanwhile) and
/// its one attempt is recorded when the flow ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_sync_message_handed_over_past_its_timeout_runs_once_here() {
    let Some(pg) = schema("fence_sync_hand_over").await else {
        return;
    };
    let url = pg.url.clone();
    let db = url.clone();
    let app = TestApp::spawn_with(
        move |flows| {
            write_flow(
                flows,
                "t/_tenant.yaml",
                &format!("connections:\n  db: {{ postgres: \"{db}\" }}\n"),
            );
            write_flow(
                flows,
                "t/Slow.yaml",
                "auth: { none: true }\nresponse: { mode: sync, timeout: 100ms }\nsteps:\n  - sql: { connection: db, query: 'select pg_sleep(0.6)::text' }\n  - respond: { body: '{attempt: .meta.attempt}' }\n",
            );
        },
        |s| {
            s.store = url;
            s.lease = Duration::from_secs(2);
        },
    )
    .await;
    let res = app.post_json("/t/Slow", None, &json!({})).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = query(
        &pg.url,
        &format!("SELECT status, holder IS NOT NULL FROM messages WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(held[0].get::<_, &str>(0), "running");
    assert!(held[0].get::<_, bool>(1), "held under this node's lease");
    let doc = app
        .wait_final("t/Slow", &id, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["response"]["body"], json!({"attempt": 1}));
}
