//! `/_metrics`: requests by trigger and status, executions by outcome, latency
//! histograms, blocked lanes and the key cache; `/_health` and `/_ready`.

use serde_json::json;

use crate::admin::admin_app;
use crate::helpers::WEBSHOP_KEY;

#[tokio::test]
async fn metrics_count_requests_executions_and_blocked_lanes() {
    let app = admin_app().await;
    for _ in 0..3 {
        let res = app
            .get("/acme/ItemPrice?itemId=A-100", Some(WEBSHOP_KEY))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        app.get("/acme/ItemPrice?itemId=nope", Some(WEBSHOP_KEY))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/acme/ItemPrice?itemId=A-100", None).await.status(),
        401
    );
    assert_eq!(app.get("/acme/NoSuchTrigger", None).await.status(), 404);
    let head = app
        .post_async("/acme/Lanes", None, json!({"lane": "m", "n": 1}))
        .await;
    app.admin_wait(&head, "dead").await;

    let text = app.get("/_metrics", None).await.text().await.unwrap();
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        )
    };
    // Counted by consumer: the key's label, none for a call without a key or an
    // open trigger.
    has(
        "flowgate_requests_total{tenant=\"acme\",trigger=\"ItemPrice\",consumer=\"webshop\",status=\"200\"} 3",
    );
    has(
        "flowgate_requests_total{tenant=\"acme\",trigger=\"ItemPrice\",consumer=\"webshop\",status=\"404\"} 1",
    );
    has(
        "flowgate_requests_total{tenant=\"acme\",trigger=\"ItemPrice\",consumer=\"\",status=\"401\"} 1",
    );
    has(
        "flowgate_requests_total{tenant=\"acme\",trigger=\"Lanes\",consumer=\"\",status=\"202\"} 1",
    );
    assert!(
        !text.contains("NoSuchTrigger"),
        "unknown names make no series"
    );
    has("flowgate_executions_total{tenant=\"acme\",trigger=\"ItemPrice\",outcome=\"succeeded\"} 3");
    has("flowgate_executions_total{tenant=\"acme\",trigger=\"ItemPrice\",outcome=\"rejected\"} 1");
    has("flowgate_execution_seconds_count{tenant=\"acme\",trigger=\"ItemPrice\"} 4");
    has("flowgate_queue_wait_seconds_count{tenant=\"acme\",trigger=\"Lanes\"} 1");
    has("flowgate_lanes_blocked{tenant=\"acme\",trigger=\"Lanes\"} 1");
    has("flowgate_store_errors_total 0");
    assert!(app.metric("flowgate_key_cache_hits_total").await >= 3.0);
    assert!(app.metric("flowgate_key_cache_misses_total").await >= 1.0);

    assert_eq!(app.get("/_health", None).await.status(), 200);
    let ready: serde_json::Value = app.get("/_ready", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}
