//! Rejections are not failures: a `fail` step with a 4xx status ends its message
//! `rejected` (never retried, never holding its ordered lane, its own event), a
//! 5xx still fails and blocks. Ordering keys that name no lane are refused at the
//! door, a sync caller behind a blocked lane hears so at once, and
//! `response.on_timeout: cancel` keeps a timed-out message from running. On the
//! SQLite store and on PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, admin_app_with};
use crate::helpers::{TestApp, eventually, write_flow};
use crate::stub::{Reply, Stub};

/// Sync, ordered by item: qty 0 is turned down (409), a negative qty fails (503).
const RESERVE: &str = "auth: { none: true }
delivery: { ordered: true, ordering_key: .body.item, retry: [] }
response: { mode: sync, timeout: 20s }
steps:
  - name: check
    if: .body.qty == 0
    then: [ { fail: { status: 409, message: '\"out of stock\"' } } ]
  - name: store
    if: .body.qty < 0
    then: [ { fail: { status: 503, message: '\"stock store away\"' } } ]
  - respond: { status: 201, body: '{reserved: .body.qty}' }
";

/// The same, async, with the default retry schedule.
const RESERVE_LATER: &str = "auth: { none: true }
delivery: { ordered: true, ordering_key: .body.item }
response: { mode: async }
steps:
  - if: .body.qty == 0
    then: [ { fail: { status: 422, message: '\"qty must be positive\"' } } ]
  - respond: { status: 201, body: '{reserved: .body.qty}' }
";

/// Sync and unordered (it runs on the request): an unknown item is turned down.
const QUOTE: &str = "auth: { none: true }
response: { mode: sync }
steps:
  - if: .body.item != \"A-100\"
    then: [ { fail: { status: 404, message: '\"no such item\"' } } ]
  - respond: { body: '{price: 10}' }
";

/// Sync, ordered, cancelled on timeout; its first step calls the `runs` stub.
const SLOW: &str = "auth: { none: true }
delivery: { ordered: true, ordering_key: .body.item }
response: { mode: sync, timeout: 300ms, on_timeout: cancel }
steps:
  - name: call
    http: { connection: runs, url: \"/{{ .body.n }}\", into: r }
  - respond: { body: .vars.r.body }
";

/// A server with tenant `shop`: the flows above, its `runs` connection and its
/// event subscription pointing at the stubs; on `store` when given.
async fn shop(runs: &Stub, events: &Stub, store: Option<String>) -> TestApp {
    let tenant = format!(
        "api_keys: {{}}\nconnections:\n  runs:\n    http:\n      base_url: \"{}/run\"\n      timeout: 20s\nsubscriptions:\n  - name: all\n    url: \"{}/events\"\n    events: [message.*]\n    enabled: true\n",
        runs.url(),
        events.url()
    );
    admin_app_with(
        move |f| {
            write_flow(f, "shop/_tenant.yaml", &tenant);
            write_flow(f, "shop/Reserve.yaml", RESERVE);
            write_flow(f, "shop/ReserveLater.yaml", RESERVE_LATER);
            write_flow(f, "shop/Slow.yaml", SLOW);
            write_flow(
                f,
                "shop/SlowGoesOn.yaml",
                &SLOW.replace(", on_timeout: cancel", ""),
            );
            write_flow(f, "shop/Quote.yaml", QUOTE);
        },
        move |s| {
            s.subscriptions_allow_http = true;
            s.subscriptions_poll = Duration::from_millis(20);
            if let Some(url) = store {
                s.store = url;
                s.lease = Duration::from_secs(2);
                s.pool_size = 4;
            }
        },
    )
    .await
}

async fn post(app: &TestApp, trigger: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let res = app
        .post_json(&format!("/shop/{trigger}"), None, &body)
        .await;
    let status = res.status();
    let id = res
        .headers()
        .get("x-message-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, id, res.json().await.unwrap_or(Value::Null))
}

/// The trigger's messages in the log history (newest first).
async fn messages(app: &TestApp, query: &str) -> Vec<Value> {
    let (code, page) = app
        .admin("GET", &format!("/messages?{query}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{page}");
    page["messages"].as_array().cloned().unwrap_or_default()
}

/// The events the `events` stub received, in order.
fn events_of(events: &Stub) -> Vec<(String, String)> {
    events
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|p| {
            (
                p["event"].as_str().unwrap_or_default().to_owned(),
                p["data"]["message_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

async fn rejections_never_hold_a_lane(app: &TestApp, events: &Stub) {
    // Turned down: the caller gets the fail's status and message.
    let (code, rejected, body) = post(app, "Reserve", json!({"item": "C-300", "qty": 0})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["code"], "rejected");
    assert_eq!(body["errors"][0]["message"], "out of stock");
    let rejected = rejected.expect("x-message-id");
    let d = app.admin_wait(&rejected, "rejected").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "never retried");
    assert_eq!(d["response"]["status"], 409, "{d}");

    // The same lane goes on at once.
    let (code, _, body) = post(app, "Reserve", json!({"item": "C-300", "qty": 2})).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"reserved": 2}));
    let lanes = messages(app, "tenant=shop&trigger=Reserve&lane=C-300").await;
    assert!(lanes.iter().all(|m| m["blocking"] == false), "{lanes:?}");
    assert_eq!(lanes[1]["status"], "rejected");
    assert_eq!(lanes[1]["response_status"], 409);
    let (_, listed) = app
        .admin(
            "GET",
            "/messages?tenant=shop&trigger=Reserve&status=rejected",
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(listed["messages"][0]["message_id"], rejected.as_str());

    // An async rejection: rejected after one attempt, and the lane goes on.
    let later = |qty: i64| {
        app.post_async(
            "/shop/ReserveLater",
            None,
            json!({"item": "C-300", "qty": qty}),
        )
    };
    let turned_down = later(0).await;
    let next = later(3).await;
    let d = app.admin_wait(&turned_down, "rejected").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "never retried");
    app.admin_wait(&next, "succeeded").await;

    // A 5xx fails, blocks its lane, and a sync call behind it hears so at once.
    let (code, failed, _) = post(app, "Reserve", json!({"item": "B-200", "qty": -1})).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let failed = failed.unwrap();
    let d = app.admin_wait(&failed, "failed").await;
    assert_eq!(d["blocking"], true, "{d}");
    let (code, id, body) = post(app, "Reserve", json!({"item": "B-200", "qty": 1})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["errors"][0]["code"], "lane_blocked");
    assert_eq!(body["errors"][0]["blocked_by"], failed.as_str());
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&failed),
        "{body}"
    );
    assert_eq!(id, None, "no message");
    let lane = messages(app, "tenant=shop&trigger=Reserve&lane=B-200").await;
    assert_eq!(lane.len(), 1, "nothing was stored: {lane:?}");
    // Other lanes of the trigger go on.
    let (code, _, _) = post(app, "Reserve", json!({"item": "A-100", "qty": 1})).await;
    assert_eq!(code, StatusCode::CREATED);

    // Run on the request (unordered sync), a rejection is recorded as one too.
    let (code, id, body) = post(app, "Quote", json!({"item": "Z-9"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let d = app.admin_wait(&id.unwrap(), "rejected").await;
    assert_eq!(d["response"]["status"], 404, "{d}");
    assert_eq!(
        d["response"]["body"]["errors"][0]["message"],
        "no such item"
    );

    // The counts know rejections apart from failures.
    let (_, t) = app.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
    let counts = t["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trigger"] == "Reserve")
        .map(|t| t["counts"].clone());
    assert_eq!(
        counts,
        Some(json!({"succeeded": 2, "rejected": 1, "failed": 1}))
    );
    let executions =
        "flowgate_executions_total{tenant=\"shop\",trigger=\"Reserve\",outcome=\"rejected\"}";
    assert_eq!(app.metric(executions).await, 1.0);

    // Subscribers hear `message.rejected` for rejections, never `message.failed`.
    let heard = eventually(Duration::from_secs(10), || async {
        let seen = events_of(events);
        seen.contains(&("message.rejected".into(), rejected.clone()))
            && seen.contains(&("message.rejected".into(), turned_down.clone()))
            && seen.contains(&("message.failed".into(), failed.clone()))
    })
    .await;
    let seen = events_of(events);
    assert!(heard, "{seen:?}");
    for id in [&rejected, &turned_down] {
        assert!(
            !seen.iter().any(|(e, m)| e == "message.failed" && m == id),
            "{seen:?}"
        );
    }
}

async fn ordering_keys_name_a_lane(app: &TestApp) {
    for (trigger, body, shown) in [
        ("Reserve", json!({"qty": 1}), "null"),
        ("Reserve", json!({"item": {"a": 1}, "qty": 1}), "{\"a\":1}"),
        ("Reserve", json!({"item": true, "qty": 1}), "true"),
        ("ReserveLater", json!({"item": null, "qty": 1}), "null"),
        ("ReserveLater", json!({"item": [1, 2], "qty": 1}), "[1,2]"),
    ] {
        let (code, id, answer) = post(app, trigger, body.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(id, None);
        assert_eq!(answer["errors"][0]["code"], "invalid_ordering_key");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(shown), "{message}");
    }
    let long = "x".repeat(500);
    let (code, _, answer) = post(app, "Reserve", json!({"item": [long], "qty": 1})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.len() < 200, "shortened: {message}");
    // A number names a lane.
    let (code, _, answer) = post(app, "Reserve", json!({"item": 300, "qty": 1})).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let stored = messages(app, "tenant=shop&trigger=ReserveLater").await;
    assert!(
        stored.iter().all(|m| m["lane"] != "null"),
        "no lane named null: {stored:?}"
    );
    let lanes: Vec<Value> = messages(app, "tenant=shop&trigger=Reserve")
        .await
        .iter()
        .map(|m| m["lane"].clone())
        .collect();
    assert!(!lanes.contains(&json!("null")), "{lanes:?}");
    assert!(lanes.contains(&json!("300")), "{lanes:?}");
}

/// Sends `body` to `trigger` without waiting for the answer, once its flow is
/// running (its call reached the `runs` stub): it holds its lane.
async fn hold_lane(
    app: &TestApp,
    runs: &Stub,
    trigger: &str,
    body: Value,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let path = format!("/run/{}", body["n"]);
    let first = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&format!("/shop/{trigger}")));
        async move { client.post(url).json(&body).send().await.unwrap() }
    });
    assert!(
        eventually(Duration::from_secs(10), || async {
            runs.requests.lock().unwrap().iter().any(|r| r.path == path)
        })
        .await,
        "{trigger} never started"
    );
    first
}

/// A sync call waiting behind a slow message times out before it starts: with
/// `on_timeout: cancel` it never runs and ends `cancelled`.
async fn cancelled_on_timeout(app: &TestApp, runs: &Stub, events: &Stub) {
    // The first holds the lane, running (its call is slow to answer).
    let first = hold_lane(app, runs, "Slow", json!({"item": "D-1", "n": 1})).await;
    let (code, id, body) = post(app, "Slow", json!({"item": "D-1", "n": 2})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    let second = id.unwrap();
    let res = first.await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "the first timed out too"
    );
    let first_id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    assert_eq!(
        res.json::<Value>().await.unwrap()["status"],
        "running",
        "it had started: it goes on"
    );
    app.admin_wait(&first_id, "succeeded").await;
    let d = app.admin_wait(&second, "cancelled").await;
    assert_eq!(d["attempts"][0]["error_code"], "cancelled", "{d}");
    let doc = app
        .wait_final("shop/Slow", &second, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "cancelled");
    assert!(
        runs.requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.path != "/run/2"),
        "the cancelled message never ran"
    );
    // The lane goes on.
    let (code, _, _) = post(app, "Slow", json!({"item": "D-1", "n": 3})).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(10), || async {
            events_of(events).contains(&("message.cancelled".into(), second.clone()))
        })
        .await,
        "{:?}",
        events_of(events)
    );
}

/// Without `on_timeout: cancel`, a sync call that times out waiting for its turn
/// is told it is still queued, and runs when its turn comes.
async fn continued_on_timeout(app: &TestApp, runs: &Stub) {
    runs.then(Reply::json(200, json!({"ran": "slowly"})).delay(Duration::from_secs(3)));
    let first = hold_lane(app, runs, "SlowGoesOn", json!({"item": "E-1", "n": 10})).await;
    let (code, id, body) = post(app, "SlowGoesOn", json!({"item": "E-1", "n": 11})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued", "it waits for its turn: {body}");
    let res = first.await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "running");
    app.admin_wait(&id.unwrap(), "succeeded").await;
    assert!(
        runs.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.path == "/run/11")
    );
}

async fn stubs() -> (Stub, Stub) {
    let runs = Stub::start(Reply::json(200, json!({"ran": true}))).await;
    // The first call holds its lane well past the callers' timeout.
    runs.then(Reply::json(200, json!({"ran": "slowly"})).delay(Duration::from_secs(3)));
    let events = Stub::start(Reply::json(200, json!({}))).await;
    (runs, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_ordering_keys_and_blocked_lanes() {
    let (runs, events) = stubs().await;
    let app = shop(&runs, &events, None).await;
    rejections_never_hold_a_lane(&app, &events).await;
    ordering_keys_name_a_lane(&app).await;
    cancelled_on_timeout(&app, &runs, &events).await;
    continued_on_timeout(&app, &runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_ordering_keys_and_blocked_lanes_on_postgres() {
    let Some(pg) = crate::pg::schema("rejections").await else {
        return;
    };
    let (runs, events) = stubs().await;
    let app = shop(&runs, &events, Some(pg.url.clone())).await;
    rejections_never_hold_a_lane(&app, &events).await;
    ordering_keys_name_a_lane(&app).await;
    cancelled_on_timeout(&app, &runs, &events).await;
    continued_on_timeout(&app, &runs).await;
}

#[test]
fn check_names_the_on_timeout_words() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(dir.path(), "shop/_tenant.yaml", "api_keys: {}\n");
    write_flow(
        dir.path(),
        "shop/Later.yaml",
        "auth: { none: true }\nresponse: { mode: sync, on_timeout: later }\nsteps:\n  - log: '\"x\"'\n",
    );
    write_flow(
        dir.path(),
        "shop/Cancels.yaml",
        "auth: { none: true }\nresponse: { mode: sync, on_timeout: cancel }\nsteps:\n  - log: '\"x\"'\n",
    );
    let report = flowgate::flow::loader::check_dir(dir.path());
    let all: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].contains("Later.yaml")
            && all[0].contains("`on_timeout` is `continue` or `cancel`, not `later`"),
        "{all:?}"
    );
}
