//! The HTTP contract on the PostgreSQL store, with two nodes in this process on
//! one schema: async accept and the status URL, Idempotency-Key, and sync callers
//! answered whichever node ran their message.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ERP_KEY, TestApp, write_flow};
use crate::pg::schema;

const SYNC_ORDERED: &str = "auth: { none: true }\ndelivery: { ordered: true }\nresponse: { mode: sync, timeout: 20s }\nsteps:\n  - respond: { body: '{n: .body.n}' }\n";

const POOL_SIZE: usize = 3;

async fn node(url: &str) -> TestApp {
    node_with(url, "t/SyncOrdered.yaml", SYNC_ORDERED).await
}

/// A node on `url` with one more flow, `yaml` at `path`.
async fn node_with(url: &str, path: &'static str, yaml: &'static str) -> TestApp {
    let url = url.to_owned();
    TestApp::spawn_with(
        move |flows| write_flow(flows, path, yaml),
        move |s| {
            s.store = url;
            s.lease = Duration::from_secs(2);
            s.pool_size = POOL_SIZE;
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_the_http_contract() {
    let Some(pg) = schema("pg_http").await else {
        return;
    };
    let a = node(&pg.url).await;
    let b = node(&pg.url).await;

    // Async accept on a, status on b.
    let res = a
        .post_json(
            "/acme/CreateCustomerRecord",
            Some(ERP_KEY),
            &json!({"name": "Ann"}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = b
        .wait_final(
            "acme/CreateCustomerRecord",
            &id,
            ERP_KEY,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["response"]["body"]["name"], "ann");

    // A repeated Idempotency-Key on the other node answers with the first message.
    let post = |app: &TestApp| {
        app.client
            .post(app.url("/acme/CreateCustomerRecord"))
            .header("x-api-key", ERP_KEY)
            .header("idempotency-key", "once")
            .json(&json!({"name": "Bo"}))
            .send()
    };
    let first: Value = post(&a).await.unwrap().json().await.unwrap();
    let again = post(&b).await.unwrap();
    assert_eq!(
        again.headers()["x-message-id"].to_str().unwrap(),
        first["message_id"].as_str().unwrap()
    );

    // Sync ordered callers on both nodes get their own answers, in any node's run.
    let mut calls = Vec::new();
    for n in 0..40 {
        let app = if n % 2 == 0 { &a } else { &b };
        let (client, url) = (app.client.clone(), app.url("/t/SyncOrdered"));
        calls.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .json(&json!({"n": n}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    for (n, call) in calls.into_iter().enumerate() {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["n"], n, "{body}");
    }

    // The node's pool and leases are in its metrics.
    let max = a.metric("flowgate_store_connections_max").await;
    assert_eq!(max, POOL_SIZE as f64);
    // One scrape: between two, a connection can move from in use to idle.
    let open: f64 = a
        .metrics(&[
            "flowgate_store_connections{state=\"in_use\"}",
            "flowgate_store_connections{state=\"idle\"}",
        ])
        .await
        .iter()
        .sum();
    assert!(open >= 1.0 && open <= max, "{open} connections open");
    assert_eq!(a.metric("flowgate_store_waiting").await, 0.0);
    // One machine, one clock: nothing to follow.
    assert_eq!(a.metric("flowgate_store_clock_offset_seconds").await, 0.0);
    for kind in ["message", "lane"] {
        let held = a
            .metric(&format!("flowgate_leases_held{{kind=\"{kind}\"}}"))
            .await;
        assert!(held >= 0.0, "{kind}: {held}");
    }
    // A node that ran its work undisturbed lost nothing.
    assert_eq!(a.metric("flowgate_leases_lost_total").await, 0.0);
    assert_eq!(a.metric("flowgate_results_discarded_total").await, 0.0);
}

/// Spins until its time budget when asked; ordered per key, so that a message
/// accepted on one node runs on the node holding its lane.
const SPIN_ORDERED: &str = "auth: { none: true }\nlimits: { time: 1s }\ndelivery: { ordered: true, ordering_key: .body.k, on_exhausted: skip }\nresponse: { mode: sync, timeout: 20s }\nsteps:\n  - set: { x: 'if .body.spin then last(range(1e15)) else 0 end' }\n  - respond: { body: '{k: .body.k}' }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_failure_run_on_another_node_is_answered_as_such() {
    let Some(pg) = schema("pg_budget_answer").await else {
        return;
    };
    let a = node_with(&pg.url, "t/Spin.yaml", SPIN_ORDERED).await;
    let b = node_with(&pg.url, "t/Spin.yaml", SPIN_ORDERED).await;
    let call = |app: &TestApp, body: Value| {
        let (client, url) = (app.client.clone(), app.url("/t/Spin"));
        tokio::spawn(async move {
            let res = client.post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    // One node takes lane "k" and spins in its first message; the next one,
    // accepted on the other node while the lane is held, runs on the holder.
    let first = call(&b, json!({"k": "k", "spin": true}));
    let lanes = "flowgate_leases_held{kind=\"lane\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let other = loop {
        if b.metric(lanes).await >= 1.0 {
            break &a;
        }
        if a.metric(lanes).await >= 1.0 {
            break &b;
        }
        assert!(std::time::Instant::now() < deadline, "nobody took the lane");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let second = call(other, json!({"k": "k", "spin": true}));
    for (which, call) in [("first", first), ("second", second)] {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 500, "{which}: {body}");
        assert_eq!(
            body["errors"][0]["code"], "budget_exceeded",
            "{which}: {body}"
        );
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("time budget"),
            "{which}: {body}"
        );
    }
    // The caller of the second was answered by its node for a run elsewhere.
    assert_eq!(other.metric(lanes).await, 0.0);
}
