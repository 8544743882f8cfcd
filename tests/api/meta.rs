//! `.meta`: each run of a message gets its message id and attempt, and on an
//! ordered trigger its lane and the lane's epoch (the fencing token a flow
//! hands downstream), on both stores and on the sync path.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, write_flow};
use crate::pg::schema;

const RETRIED: &str = "auth: { none: true }\ndelivery: { retry: [100ms] }\nresponse: { mode: async }\nsteps:\n  - if: .meta.attempt < 2\n    then: [ { fail: { status: 500, message: '\"not yet\"' } } ]\n  - respond: { body: .meta }\n";
const LANE: &str = "auth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.k }\nresponse: { mode: async }\nsteps:\n  - respond: { body: .meta }\n";
const SYNC: &str = "auth: { none: true }\nmethods: [GET]\nresponse: { mode: sync }\nsteps:\n  - respond: { body: .meta }\n";

async fn app(store: Option<String>) -> TestApp {
    TestApp::spawn_with(
        |flows| {
            write_flow(flows, "t/Retried.yaml", RETRIED);
            write_flow(flows, "t/Lane.yaml", LANE);
            write_flow(flows, "t/Sync.yaml", SYNC);
        },
        |s| {
            if let Some(url) = store {
                s.store = url;
                s.lease = Duration::from_secs(2);
            }
        },
    )
    .await
}

/// Posts to an async trigger and waits for the message's final answer.
async fn run(app: &TestApp, trigger: &str, body: Value) -> (String, Value) {
    let (id, doc) = app.post_until_final(&format!("/t/{trigger}"), &body).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    (id, doc["response"]["body"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_knows_its_message_attempt_and_lane_epoch() {
    let app = app(None).await;
    let (id, meta) = run(&app, "Retried", json!({})).await;
    assert_eq!(meta, json!({"message_id": id, "attempt": 2}));

    let generation = app.queue.store().generation();
    assert!(generation > 0);
    let (id, meta) = run(&app, "Lane", json!({"k": "c-7"})).await;
    assert_eq!(
        meta,
        json!({"message_id": id, "attempt": 1, "lane": "c-7", "lane_epoch": generation})
    );

    let res = app.get("/t/Sync", None).await;
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let meta: Value = res.json().await.unwrap();
    assert_eq!(meta, json!({"message_id": id, "attempt": 1}));
}

/// On the shared store a lane's runs carry the epoch of the claim they ran
/// under: a later claim of the lane, a higher epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_each_claim_of_a_lane_runs_under_a_higher_epoch() {
    let Some(pg) = schema("meta_lane_epoch").await else {
        return;
    };
    let app = app(Some(pg.url.clone())).await;
    let (_, first) = run(&app, "Lane", json!({"k": "c-7"})).await;
    let (id, second) = run(&app, "Lane", json!({"k": "c-7"})).await;
    assert_eq!(second["lane"], "c-7");
    assert_eq!(second["message_id"], id);
    let (a, b) = (
        first["lane_epoch"].as_i64().unwrap(),
        second["lane_epoch"].as_i64().unwrap(),
    );
    assert!(a > 0 && b > a, "{a} then {b}");
    let (id, meta) = run(&app, "Retried", json!({})).await;
    assert_eq!(meta, json!({"message_id": id, "attempt": 2}));
}
