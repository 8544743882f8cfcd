//! Delivery semantics: acceptance order on ordered lanes, parallel per-key lanes,
//! retries and `on_exhausted`, non-retryable failures, idempotency, admission
//! control and the sync timeout hand-over.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, WEBSHOP_KEY, write_flow};

/// About 150 ms of CPU in a debug build.
const HEAVY: &str = "'[range(1000000)] | length'";

/// A message id and the (start, end) of its last attempt.
type Run = (String, (String, String));

fn interval(doc: &Value) -> (String, String) {
    let last = doc["attempts"].as_array().unwrap().last().unwrap();
    (
        last["started_at"].as_str().unwrap().to_owned(),
        last["finished_at"].as_str().unwrap().to_owned(),
    )
}

async fn post_all(app: &TestApp, path: &str, bodies: Vec<Value>) -> Vec<String> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (client, url) = (app.client.clone(), app.url(path));
            tokio::spawn(async move {
                let res = client.post(url).json(&b).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::ACCEPTED);
                res.json::<Value>().await.unwrap()["message_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_posts_run_in_acceptance_order() {
    let app = TestApp::spawn_with(
        |f| {
            write_flow(
                f,
                "t/Ordered.yaml",
                "auth: { none: true }\ndelivery: { ordered: true }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.n }\n",
            )
        },
        |_| {},
    )
    .await;
    let mut ids = post_all(
        &app,
        "/t/Ordered",
        (0..200).map(|n| json!({"n": n})).collect(),
    )
    .await;
    // UUIDv7 ids are assigned at commit, in acceptance order.
    ids.sort();
    let mut docs = Vec::new();
    for id in &ids {
        let doc = app
            .wait_final("t/Ordered", id, "", Duration::from_secs(30))
            .await;
        assert_eq!(doc["status"], "succeeded", "{doc}");
        docs.push(doc);
    }
    for pair in docs.windows(2) {
        let (_, prev_end) = interval(&pair[0]);
        let (next_start, _) = interval(&pair[1]);
        assert!(
            prev_end <= next_start,
            "{} finished at {prev_end}, after {} started at {next_start}",
            pair[0]["message_id"],
            pair[1]["message_id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_lanes_are_ordered_within_and_parallel_across_keys() {
    let app = TestApp::spawn_with(
        |f| {
            write_flow(
                f,
                "t/PerKey.yaml",
                &format!(
                    "auth: {{ none: true }}\ndelivery: {{ ordered: true, ordering_key: .body.k, concurrency: 4 }}\nresponse: {{ mode: async }}\nsteps:\n  - set: {{ w: {HEAVY} }}\n"
                ),
            )
        },
        |_| {},
    )
    .await;
    let bodies = (0..6)
        .map(|i| json!({"k": if i % 2 == 0 { "a" } else { "b" }, "i": i}))
        .collect();
    let ids = post_all(&app, "/t/PerKey", bodies).await;
    let mut lanes: HashMap<String, Vec<Run>> = HashMap::new();
    for id in &ids {
        let doc = app
            .wait_final("t/PerKey", id, "", Duration::from_secs(30))
            .await;
        assert_eq!(doc["status"], "succeeded");
        let lane = if ids.iter().position(|x| x == id).unwrap() % 2 == 0 {
            "a"
        } else {
            "b"
        };
        lanes
            .entry(lane.into())
            .or_default()
            .push((id.clone(), interval(&doc)));
    }
    for runs in lanes.values_mut() {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[0].1.1 <= pair[1].1.0,
                "a lane ran two messages at once: {pair:?}"
            );
        }
    }
    let overlaps = lanes["a"]
        .iter()
        .any(|(_, (s1, e1))| lanes["b"].iter().any(|(_, (s2, e2))| s1 < e2 && s2 < e1));
    assert!(
        overlaps,
        "lanes a and b never ran at the same time: {lanes:?}"
    );
}

fn failing_lane(on_exhausted: &str) -> String {
    format!(
        "auth: {{ none: true }}\ndelivery: {{ ordered: true, retry: [50ms, 50ms], on_exhausted: {on_exhausted} }}\nresponse: {{ mode: async }}\nsteps:\n  - if: .body.fail\n    then:\n      - fail: {{ status: 503, message: '\"downstream away\"' }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_retries_on_schedule_then_blocks_its_lane() {
    let app = TestApp::spawn_with(
        |f| write_flow(f, "t/Block.yaml", &failing_lane("block")),
        |_| {},
    )
    .await;
    let first = post_all(&app, "/t/Block", vec![json!({"fail": true})])
        .await
        .remove(0);
    let second = post_all(&app, "/t/Block", vec![json!({"fail": false})])
        .await
        .remove(0);
    let doc = app
        .wait_final("t/Block", &first, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "dead");
    let attempts = doc["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "one attempt and two retries: {doc}");
    assert!(
        attempts
            .iter()
            .all(|a| a["outcome"] == "failed" && a["error"] == "downstream away")
    );
    // The lane stays blocked: once it is known blocked, its task has ended
    // without starting the second message.
    let blocked = r#"flowgate_lanes_blocked{tenant="t",trigger="Block"}"#;
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || async {
            app.metric(blocked).await == 1.0
        })
        .await,
        "the lane was never reported blocked"
    );
    let doc: Value = app
        .get(&format!("/t/Block/messages/{second}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["status"], "queued");
    assert_eq!(doc["attempts"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_exhausted_skip_moves_the_lane_on() {
    let app = TestApp::spawn_with(
        |f| write_flow(f, "t/Skip.yaml", &failing_lane("skip")),
        |_| {},
    )
    .await;
    let ids = post_all(&app, "/t/Skip", vec![json!({"fail": true})]).await;
    let later = post_all(&app, "/t/Skip", vec![json!({"fail": false})]).await;
    let first = app
        .wait_final("t/Skip", &ids[0], "", Duration::from_secs(10))
        .await;
    let second = app
        .wait_final("t/Skip", &later[0], "", Duration::from_secs(10))
        .await;
    assert_eq!(first["status"], "dead");
    assert_eq!(second["status"], "succeeded");
    assert!(
        interval(&first).1 <= interval(&second).0,
        "the second ran after the first was given up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_from_fail_is_not_retried() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json(
            "/acme/CreateCustomerRecord",
            Some(crate::helpers::ERP_KEY),
            &json!({"email": "no name"}),
        )
        .await;
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = app
        .wait_final(
            "acme/CreateCustomerRecord",
            &id,
            crate::helpers::ERP_KEY,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(doc["status"], "rejected");
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(doc["error"], "a customer needs a name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_answer() {
    let app = TestApp::spawn().await;
    let erp = crate::helpers::ERP_KEY;
    let send = |key: &'static str| {
        app.client
            .post(app.url("/acme/CreateCustomerRecord"))
            .header("x-api-key", erp)
            .header("idempotency-key", key)
            .json(&json!({"name": "Once"}))
            .send()
    };
    let a: Value = send("order-1").await.unwrap().json().await.unwrap();
    let b = send("order-1").await.unwrap();
    assert_eq!(b.status(), StatusCode::ACCEPTED);
    assert_eq!(
        b.headers()["x-message-id"].to_str().unwrap(),
        a["message_id"].as_str().unwrap()
    );
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["message_id"], b["message_id"]);
    let c: Value = send("order-2").await.unwrap().json().await.unwrap();
    assert_ne!(a["message_id"], c["message_id"]);

    // Sync: the repeat gets the first response and id, and the flow does not run again.
    let get = || {
        app.client
            .get(app.url("/acme/ItemPrice?itemId=A-100&qty=2"))
            .header("x-api-key", WEBSHOP_KEY)
            .header("idempotency-key", "price-1")
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first_id = first.headers()["x-message-id"].to_str().unwrap().to_owned();
    let first_body: Value = first.json().await.unwrap();
    let again = get().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["x-message-id"].to_str().unwrap(), first_id);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    let doc: Value = app
        .get(
            &format!("/acme/ItemPrice/messages/{first_id}"),
            Some(WEBSHOP_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1);
}

/// A repeat sent the moment the first answer arrives finds the first message
/// finished: the answer is never ahead of the message's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_right_after_the_answer_gets_the_same_answer() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        let key = format!("burst-{i}");
        let get = || {
            app.client
                .get(app.url("/acme/ItemPrice?itemId=B-200&qty=3"))
                .header("x-api-key", WEBSHOP_KEY)
                .header("idempotency-key", key.as_str())
                .send()
        };
        let first = get().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK, "request {i}");
        let id = first.headers()["x-message-id"].to_str().unwrap().to_owned();
        let again = get().await.unwrap();
        assert_eq!(again.status(), StatusCode::OK, "repeat {i}");
        assert_eq!(again.headers()["x-message-id"].to_str().unwrap(), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_answers_429_at_once() {
    let app = TestApp::spawn_with(
        |f| {
            write_flow(
                f,
                "t/Held.yaml",
                "auth: { none: true }\ndelivery: { ordered: true, retry: [1h] }\nresponse: { mode: async }\nsteps:\n  - fail: { status: 500, message: '\"held\"' }\n",
            )
        },
        |s| s.max_backlog = 3,
    )
    .await;
    post_all(&app, "/t/Held", vec![json!({}), json!({}), json!({})]).await;
    let res = app.post_json("/t/Held", None, &json!({})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "backlog_full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_sync_timeout_the_caller_gets_202_and_the_flow_goes_on() {
    let app = TestApp::spawn_with(
        |f| {
            write_flow(
                f,
                "t/Slow.yaml",
                &format!(
                    "methods: [GET]\nauth: {{ none: true }}\nresponse: {{ mode: sync, timeout: 20ms }}\nsteps:\n  - set: {{ a: {HEAVY} }}\n  - set: {{ b: {HEAVY} }}\n  - respond: {{ body: '{{done: true}}' }}\n"
                ),
            )
        },
        |_| {},
    )
    .await;
    let res = app.get("/t/Slow", None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "running");
    let id = body["message_id"].as_str().unwrap();
    assert!(location.ends_with(id));
    let doc = app
        .wait_final("t/Slow", id, "", Duration::from_secs(30))
        .await;
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["response"]["body"], json!({"done": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_ordered_trigger_answers_once_its_turn_came() {
    let app = TestApp::spawn_with(
        |f| {
            write_flow(
                f,
                "t/SyncLane.yaml",
                "auth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.k }\nsteps:\n  - respond: { status: 201, body: '{k: .body.k}' }\n",
            )
        },
        |_| {},
    )
    .await;
    let res = app.post_json("/t/SyncLane", None, &json!({"k": "x"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().contains_key("x-message-id"));
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"k": "x"}));
}

/// A queue on an embedded store whose dispatcher is stepped by hand
/// (`Queue::run_due`), with `flows` (name, text) under tenant `t`.
async fn stepped_by_hand(
    dir: &std::path::Path,
    flows: &[(&str, &str)],
) -> (flowgate::queue::Queue, flowgate::store::Store) {
    use flowgate::flow::{Loader, SharedCatalog};
    use flowgate::queue::{Execution, Queue, QueueLimits};

    let settings = crate::helpers::settings_in(dir);
    for (name, text) in flows {
        write_flow(&settings.flows, &format!("t/{name}.yaml"), text);
    }
    let report = Loader::new(settings.flows.clone()).load();
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let store = flowgate::store::Store::open(&settings.store).unwrap();
    let queue = Queue::start(
        store.clone(),
        Execution::embedded_by_hand(),
        SharedCatalog::new(report.catalog),
        QueueLimits {
            max_backlog: 100,
            store_timeout: Duration::from_secs(5),
            tenant_max_running: 4,
        },
        crate::helpers::executor(),
    )
    .unwrap();
    queue.recover().await.unwrap();
    (queue, store)
}

/// Accepts a message for `t/{trigger}` received at `at`; its id.
async fn accept_at(
    queue: &flowgate::queue::Queue,
    trigger: &str,
    lane: Option<&str>,
    body: Value,
    at: i64,
) -> flowgate::domain::MessageId {
    accept_as(
        queue,
        trigger,
        lane,
        body,
        at,
        flowgate::domain::Mode::Async,
    )
    .await
}

/// As `accept_at`, in `mode`, with no caller waiting on this node (as when one
/// waits on another node, or waited before a restart).
async fn accept_as(
    queue: &flowgate::queue::Queue,
    trigger: &str,
    lane: Option<&str>,
    body: Value,
    at: i64,
    mode: flowgate::domain::Mode,
) -> flowgate::domain::MessageId {
    use flowgate::domain::{MessageId, NewMessage, TenantName, TriggerName};
    let message = NewMessage {
        id: MessageId::new(),
        tenant: TenantName::parse("t").unwrap(),
        trigger: TriggerName::parse(trigger).unwrap(),
        lane: lane.map(str::to_owned),
        mode,
        received_at: at,
        idempotency_key: None,
        input: json!({ "body": body }),
        body_json: None,
    };
    queue.accept(message, false).await.unwrap().0
}

/// A message's status and its attempts' start times, once written.
async fn seen(
    store: &flowgate::store::Store,
    id: flowgate::domain::MessageId,
) -> (flowgate::domain::MessageStatus, Vec<i64>) {
    store.flush().await.unwrap();
    let v = store.get(id).await.unwrap().unwrap();
    (
        v.head.status,
        v.attempts.iter().map(|a| a.started_at).collect(),
    )
}

const MINUTE: i64 = 60_000_000;

/// The dispatcher stepped by hand: a failing message walks its retry schedule
/// (minutes long) as times are passed in, with nothing slept; each attempt
/// starts at the time it was stepped to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_message_is_stepped_through_its_schedule_by_hand() {
    use flowgate::domain::MessageStatus::{Dead, Queued, Retrying};

    let dir = tempfile::tempdir().unwrap();
    let flow = "auth: { none: true }\ndelivery: { retry: [10m, 1h] }\nresponse: { mode: async }\nsteps:\n  - fail: { status: 503, message: '\"downstream away\"' }\n";
    let (queue, store) = stepped_by_hand(dir.path(), &[("Retry", flow)]).await;
    let t0 = flowgate::domain::now_micros();
    let id = accept_at(&queue, "Retry", None, json!({}), t0).await;
    assert_eq!(seen(&store, id).await, (Queued, vec![]), "not stepped yet");
    assert_eq!(queue.run_due(t0).await, 1);
    assert_eq!(seen(&store, id).await, (Retrying, vec![t0]));
    assert_eq!(queue.run_due(t0 + 9 * MINUTE).await, 0, "not due yet");
    assert_eq!(seen(&store, id).await, (Retrying, vec![t0]));
    let second = t0 + 10 * MINUTE;
    assert_eq!(queue.run_due(second).await, 1);
    assert_eq!(seen(&store, id).await, (Retrying, vec![t0, second]));
    assert_eq!(queue.run_due(second + 59 * MINUTE).await, 0, "not due yet");
    let third = second + 60 * MINUTE;
    assert_eq!(queue.run_due(third).await, 1);
    assert_eq!(
        seen(&store, id).await,
        (Dead, vec![t0, second, third]),
        "two retries, then dead"
    );
    let v = store.get(id).await.unwrap().unwrap();
    assert!(
        v.attempts
            .iter()
            .all(|a| a.outcome == Some(flowgate::domain::Outcome::Failed)),
        "{:?}",
        v.attempts
    );
    assert_eq!(queue.run_due(third + 600 * MINUTE).await, 0, "nothing left");
}

/// Stepped by hand, an ordered lane holds its next message behind a retry;
/// once the retry's time is passed in and the failed message is skipped, the
/// next one runs in the same step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_lane_is_stepped_past_a_retry_by_hand() {
    use flowgate::domain::MessageStatus::{Dead, Queued, Retrying, Succeeded};

    let dir = tempfile::tempdir().unwrap();
    let flow = "auth: { none: true }\ndelivery: { ordered: true, retry: [10m], on_exhausted: skip }\nresponse: { mode: async }\nsteps:\n  - if: .body.fail\n    then:\n      - fail: { status: 503, message: '\"downstream away\"' }\n";
    let (queue, store) = stepped_by_hand(dir.path(), &[("Lane", flow)]).await;
    let t0 = flowgate::domain::now_micros();
    let first = accept_at(&queue, "Lane", Some("k"), json!({"fail": true}), t0).await;
    let next = accept_at(&queue, "Lane", Some("k"), json!({"fail": false}), t0).await;
    assert_eq!(queue.run_due(t0).await, 1, "the lane runs one at a time");
    assert_eq!(seen(&store, first).await, (Retrying, vec![t0]));
    assert_eq!(seen(&store, next).await, (Queued, vec![]), "held behind it");
    let later = t0 + 10 * MINUTE;
    assert_eq!(queue.run_due(later).await, 2);
    assert_eq!(seen(&store, first).await, (Dead, vec![t0, later]));
    assert_eq!(seen(&store, next).await, (Succeeded, vec![later]));
}

/// Messages waiting behind a busy lane are held as their JSON text (so a
/// backlog costs about what its bodies weigh): read back when they run, their
/// input is what was accepted, to the last digit and character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_behind_a_lane_run_with_the_input_they_were_accepted_with() {
    use flowgate::domain::MessageStatus::{Dead, Succeeded};

    let dir = tempfile::tempdir().unwrap();
    let flow = "auth: { none: true }\ndelivery: { ordered: true, retry: [10m], on_exhausted: skip }\nresponse: { mode: async }\nsteps:\n  - if: .body.fail\n    then:\n      - fail: { status: 503, message: '\"downstream away\"' }\n  - respond: { body: .body }\n";
    let (queue, store) = stepped_by_hand(dir.path(), &[("Lane", flow)]).await;
    let t0 = flowgate::domain::now_micros();
    let first = accept_at(&queue, "Lane", Some("k"), json!({"fail": true}), t0).await;
    let bodies = [
        json!({"fail": false, "n": 9007199254740993u64, "x": -0.1, "s": "é\u{1F600}\\\"", "deep": [[[{"a": null}]]]}),
        json!({"fail": false, "lines": (0..40).map(|i| json!({"sku": format!("X-{i}"), "qty": i})).collect::<Vec<_>>()}),
    ];
    let mut held = Vec::new();
    for b in &bodies {
        held.push(accept_at(&queue, "Lane", Some("k"), b.clone(), t0).await);
    }
    assert_eq!(queue.run_due(t0).await, 1, "the lane runs one at a time");
    let later = t0 + 10 * MINUTE;
    assert_eq!(queue.run_due(later).await, 3);
    assert_eq!(seen(&store, first).await.0, Dead);
    for (id, body) in held.iter().zip(&bodies) {
        let v = store.get(*id).await.unwrap().unwrap();
        assert_eq!(v.head.status, Succeeded, "{v:?}");
        assert_eq!(&v.response.expect("answered").body, body);
    }
}

/// `response.on_timeout: cancel` holds where no caller waits on this node (it
/// waited on another, or before a restart): a sync message that would start
/// after its caller's timeout is cancelled by its time alone and never runs;
/// one that starts within it runs, and so does one of a trigger that goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_message_starting_past_its_callers_timeout_elsewhere_is_cancelled() {
    use flowgate::domain::MessageStatus::{Cancelled, Succeeded};
    use flowgate::domain::Mode::Sync;

    const SECOND: i64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let cancels = "auth: { none: true }\nresponse: { mode: sync, timeout: 2s, on_timeout: cancel }\nsteps:\n  - set: { x: 1 }\n";
    let goes_on = cancels.replace(", on_timeout: cancel", "");
    let (queue, store) =
        stepped_by_hand(dir.path(), &[("Cancels", cancels), ("GoesOn", &goes_on)]).await;
    let t0 = flowgate::domain::now_micros();
    let in_time = accept_as(&queue, "Cancels", None, json!({}), t0, Sync).await;
    assert_eq!(queue.run_due(t0 + SECOND).await, 1);
    assert_eq!(seen(&store, in_time).await, (Succeeded, vec![t0 + SECOND]));

    let late = accept_as(&queue, "Cancels", None, json!({}), t0, Sync).await;
    let other = accept_as(&queue, "GoesOn", None, json!({}), t0, Sync).await;
    let later = t0 + 10 * SECOND;
    assert_eq!(queue.run_due(later).await, 2);
    let v = store.get(late).await.unwrap().unwrap();
    assert_eq!(v.head.status, Cancelled, "{v:?}");
    assert_eq!(v.attempts.len(), 1);
    assert_eq!(v.attempts[0].error_code.as_deref(), Some("cancelled"));
    assert_eq!(v.trace, json!([]), "it never ran a step");
    assert_eq!(seen(&store, other).await, (Succeeded, vec![later]));
}
