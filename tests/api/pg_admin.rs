//! The admin API on the PostgreSQL store, with two nodes in this process on one
//! schema: the log history and message detail, replay / skip / unblock of ordered
//! lanes claimed by either node, lane events, and tenant isolation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::admin::{GLOBAL_TOKEN, admin_app_with, release_ordered_lanes, tenant_isolation};
use crate::helpers::TestApp;
use crate::pg::schema;

/// A node on `url`; acme subscribes to the lane events (sent nowhere: the
/// deliveries are what the test reads).
async fn node(url: &str) -> TestApp {
    let url = url.to_owned();
    admin_app_with(
        |f| {
            let path = f.join("acme/_tenant.yaml");
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str("subscriptions:\n  - { name: lanes, url: \"https://127.0.0.1:9/\", events: [lane.blocked, lane.unblocked], enabled: true }\n");
            std::fs::write(path, text).unwrap();
        },
        move |s| {
            s.store = url;
            s.lease = Duration::from_secs(2);
            // The test server's connections are shared by every test running.
            s.pool_size = 4;
        },
    )
    .await
}

/// The events of acme's deliveries, once `want` are all there.
async fn events(app: &TestApp, want: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..500 {
        let (_, d) = app
            .admin("GET", "/deliveries?tenant=acme", GLOBAL_TOKEN, None)
            .await;
        seen = d["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["event"].as_str().map(str::to_owned))
            .collect();
        if want.iter().all(|w| seen.iter().any(|s| s == w)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("acme's deliveries hold {seen:?}, not all of {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_release_ordered_lanes_and_keep_tenants_apart() {
    let Some(pg) = schema("pg_admin").await else {
        return;
    };
    let a = node(&pg.url).await;
    let b = node(&pg.url).await;

    // The log history on b holds what a accepted and ran (or b did).
    let (ok, bad) = crate::admin::one_good_one_bad(&a).await;
    b.admin_wait(&ok, "succeeded").await;
    b.admin_wait(&bad, "rejected").await;
    let path = "/messages?tenant=acme&trigger=CreateCustomerRecord";
    let (code, page) = b.admin("GET", path, GLOBAL_TOKEN, None).await;
    assert_eq!(code, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bad.as_str(), ok.as_str()], "newest first");
    assert_eq!(page["messages"][1]["response_status"], 201);
    assert_eq!(
        page["messages"][0]["response_status"], 422,
        "a rejection shows its code"
    );
    let (_, t) = b.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
    let counts = t["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trigger"] == "CreateCustomerRecord")
        .map(|t| t["counts"].clone());
    assert_eq!(counts, Some(json!({"succeeded": 1, "rejected": 1})));

    release_ordered_lanes(&[&a, &b]).await;
    let seen = events(&a, &["lane.blocked", "lane.unblocked"]).await;
    let blocked = seen.iter().filter(|e| *e == "lane.blocked").count();
    assert!(
        blocked >= 3,
        "lanes a, b and c blocked once each at least: {seen:?}"
    );

    tenant_isolation(&b).await;
    let (_, d) = a
        .admin("GET", "/deliveries?tenant=other", GLOBAL_TOKEN, None)
        .await;
    assert!(d["deliveries"].as_array().is_some_and(|d| !d.is_empty()));
}
