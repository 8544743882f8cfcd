//! Business events from flows (`emit`), on both stores: delivered once per
//! successful execution and never for a failed one, queued and sync alike;
//! `include: full` bodies (the emitted data; a message's redacted input and
//! its response) and their fallback to ids past 256 KiB; `flowgate check`
//! refusing names a flow may not emit; `flowgate test` expecting what a flow
//! emitted.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use flowgate::domain::TenantName;
use flowgate::store::DeliveryQuery;

use crate::helpers::{TestApp, eventually, write_flow};

/// Bodies a receiver got, by path.
type Got = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver on port 0 answering 200 to everything, keeping each body.
async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let data = web::Data::new(got.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |req: HttpRequest, body: String, got: web::Data<Got>| async move {
                let doc = serde_json::from_str(&body).unwrap_or(Value::Null);
                got.lock().unwrap().push((req.path().to_owned(), doc));
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), got)
}

fn bodies(got: &Got, path: &str, event: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, b)| p == path && b["event"] == event)
        .map(|(_, b)| b.clone())
        .collect()
}

/// An order flow that emits, then fails when asked to; a sync quote flow that
/// emits; subscriptions by prefix (ids) and by name (full).
async fn shop(receiver: &str, store: Option<String>) -> TestApp {
    let tenant = format!(
        "subscriptions:
  - name: biz
    url: {receiver}/biz
    events: [order.*, quote.made]
    enabled: true
  - name: full
    url: {receiver}/full
    events: [order.created, message.succeeded]
    include: full
    enabled: true
"
    );
    let orders = "auth: { none: true }
response: { mode: async }
delivery: { retry: [] }
steps:
  - emit: { event: order.created, data: '{n: .body.n, big: .body.big}' }
  - if: .body.fail
    then: [ { fail: { status: 500, message: '\"refused\"' } } ]
  - respond: { status: 201, body: '{n: .body.n}' }
";
    let quote = "auth: { none: true }
response: { mode: sync }
steps:
  - emit: { event: quote.made, data: '{q: .body.q}' }
  - respond: { body: '{q: .body.q}' }
";
    TestApp::spawn_with(
        |f| {
            write_flow(f, "shop/_tenant.yaml", &tenant);
            write_flow(f, "shop/Orders.yaml", orders);
            write_flow(f, "shop/Quote.yaml", quote);
        },
        |s| {
            s.subscriptions_allow_http = true;
            s.subscriptions_poll = Duration::from_millis(20);
            if let Some(url) = store {
                s.store = url;
            }
        },
    )
    .await
}

async fn emitted_events_arrive_once_per_successful_execution(store: Option<String>) {
    let (base, got) = receiver().await;
    let app = shop(&base, store).await;
    let mut failed = Vec::new();
    for n in 0..2 {
        let (id, doc) = app
            .post_until_final("/shop/Orders", &json!({"n": n, "fail": true}))
            .await;
        assert_eq!(doc["status"], "dead", "{doc}");
        failed.push(id);
    }
    let mut succeeded = Vec::new();
    for n in 10..13 {
        let (id, doc) = app.post_until_final("/shop/Orders", &json!({"n": n})).await;
        assert_eq!(doc["status"], "succeeded", "{doc}");
        succeeded.push(id);
    }
    // Its input keeps the caller's Authorization header only redacted.
    let res = app
        .client
        .post(app.url("/shop/Quote"))
        .header("authorization", "Bearer quote-secret-123")
        .json(&json!({"q": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let quote_id = res.headers()["x-message-id"].to_str().unwrap().to_owned();

    let arrived = eventually(Duration::from_secs(20), || {
        let got = got.clone();
        async move {
            bodies(&got, "/biz", "order.created").len() >= 3
                && bodies(&got, "/biz", "quote.made").len() == 1
                && bodies(&got, "/full", "order.created").len() >= 3
                && bodies(&got, "/full", "message.succeeded").len() >= 4
        }
    })
    .await;
    assert!(arrived, "{:#?}", got.lock().unwrap());

    // Every event was fanned out: the deliveries stored are all there will be.
    let store = app.queue.store();
    store.flush().await.unwrap();
    let drained = eventually(Duration::from_secs(10), || async {
        store.outbox(10).await.unwrap().is_empty()
    })
    .await;
    assert!(drained, "the outbox empties");
    let deliveries = store
        .list_deliveries(DeliveryQuery {
            tenant: TenantName::parse("shop").unwrap(),
            subscription: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap();
    let count = |sub: &str, event: &str| {
        deliveries
            .iter()
            .filter(|d| d.delivery.subscription == sub && d.delivery.event == event)
            .count()
    };
    assert_eq!(count("biz", "order.created"), 3, "once per success");
    assert_eq!(count("biz", "quote.made"), 1);
    assert_eq!(count("full", "order.created"), 3);
    assert_eq!(count("full", "message.succeeded"), 4);
    assert_eq!(deliveries.len(), 11, "nothing else, nothing twice");
    for d in &deliveries {
        let about = d.delivery.message_id.map(|m| m.to_string());
        assert!(
            !failed.iter().any(|f| Some(f) == about.as_ref()),
            "a failed execution's events are never delivered: {:?}",
            d.delivery
        );
    }

    // ids: the event and what it is about.
    let ids = bodies(&got, "/biz", "order.created");
    for b in &ids {
        assert!(succeeded.contains(&b["data"]["message_id"].as_str().unwrap().to_owned()));
        assert_eq!(b["data"]["tenant"], "shop");
        assert_eq!(b["data"]["trigger"], "Orders");
        assert!(b["data"].get("data").is_none(), "{b}");
    }
    // full: the emitted data, and a message's input and response.
    let mut ns: Vec<i64> = bodies(&got, "/full", "order.created")
        .iter()
        .map(|b| b["data"]["data"]["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![10, 11, 12]);
    let quote = bodies(&got, "/full", "message.succeeded")
        .into_iter()
        .find(|b| b["data"]["message_id"] == quote_id.as_str())
        .expect("the sync message's event");
    assert_eq!(quote["data"]["input"]["body"], json!({"q": 7}));
    assert_eq!(
        quote["data"]["input"]["headers"]["authorization"],
        "[redacted]"
    );
    assert!(!quote.to_string().contains("quote-secret-123"));
    assert_eq!(quote["data"]["response"]["status"], 200);
    assert_eq!(quote["data"]["response"]["body"], json!({"q": 7}));
    let order = bodies(&got, "/full", "message.succeeded")
        .into_iter()
        .find(|b| b["data"]["message_id"] == succeeded[0].as_str())
        .expect("an order's event");
    assert_eq!(order["data"]["response"]["status"], 201);
    assert_eq!(order["data"]["input"]["body"]["n"], 10);

    // Past 256 KiB a full body falls back to the ids, saying so.
    let big = "x".repeat(300 * 1024);
    let (id, doc) = app
        .post_until_final("/shop/Orders", &json!({"n": 99, "big": big}))
        .await;
    assert_eq!(doc["status"], "succeeded");
    let cut = eventually(Duration::from_secs(20), || {
        let got = got.clone();
        let id = id.clone();
        async move {
            bodies(&got, "/full", "order.created")
                .iter()
                .any(|b| b["data"]["message_id"] == id.as_str())
        }
    })
    .await;
    assert!(cut);
    let body = bodies(&got, "/full", "order.created")
        .into_iter()
        .find(|b| b["data"]["message_id"] == id.as_str())
        .unwrap();
    assert_eq!(body["truncated"], true, "{}", body.to_string().len());
    assert!(body["data"].get("data").is_none());
    assert_eq!(body["data"]["trigger"], "Orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_events_arrive_once_per_successful_execution_on_sqlite() {
    emitted_events_arrive_once_per_successful_execution(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_events_arrive_once_per_successful_execution_on_postgres() {
    let Some(pg) = crate::pg::schema("emit_events").await else {
        return;
    };
    emitted_events_arrive_once_per_successful_execution(Some(pg.url.clone())).await;
}

#[test]
fn check_refuses_names_a_flow_may_not_emit_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Bad.yaml",
        "auth: { none: true }
steps:
  - emit: { event: Order.Created }
  - emit: { event: message.sent, data: '.body' }
  - emit: { event: ordercreated }
  - emit: { event: order.created, data: '.body |' }
",
    );
    let report = flowgate::flow::check_dir(dir.path());
    let all: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("Bad.yaml:3:"), "{all}");
    assert!(
        all.contains("`Order.Created` is not an event name"),
        "{all}"
    );
    assert!(all.contains("Bad.yaml:4:"), "{all}");
    assert!(all.contains("`message.sent` is flowgate's own"), "{all}");
    assert!(all.contains("Bad.yaml:5:"), "{all}");
    assert!(all.contains("`ordercreated` is not an event name"), "{all}");
    assert!(all.contains("Bad.yaml:6:"), "{all}");
}

#[test]
fn run_shows_and_test_expects_what_a_flow_emitted() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Order.yaml",
        "auth: { none: true }
steps:
  - for_each: .body.lines
    as: line
    do:
      - emit: { event: order.line_added, data: '{sku: .vars.line}' }
  - emit: { event: order.created, data: '{lines: (.body.lines | length)}' }
",
    );
    write_flow(
        dir.path(),
        "t/Order.test.yaml",
        "- name: two lines
  body: { lines: [a, b] }
  expect:
    emitted:
      - { event: order.line_added, data: { sku: a } }
      - { event: order.line_added, data: { sku: b } }
      - { event: order.created, data: { lines: 2 } }
- name: wrong on purpose
  body: { lines: [a] }
  expect:
    emitted:
      - { event: order.created, data: { lines: 1 } }
",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success());
    assert!(text.contains("  ok     two lines"), "{text}");
    assert!(text.contains("  FAIL   wrong on purpose"), "{text}");
    assert!(
        text.contains(
            "emitted: expected 1 event(s) [order.created], got 2 [order.line_added, order.created]"
        ),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["run", "t/Order", "--body", "-", "--flows"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(br#"{"lines": ["x"]}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["emitted"],
        json!([
            {"event": "order.line_added", "data": {"sku": "x"}},
            {"event": "order.created", "data": {"lines": 1}},
        ])
    );
}

#[tokio::test]
async fn an_execution_emits_at_most_a_hundred_events() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Flood.yaml",
        "auth: { none: true }
steps:
  - name: lines
    for_each: '[range(1000)]'
    as: i
    do:
      - name: each
        emit: { event: line.added, data: .vars.i }
",
    );
    let report = flowgate::flow::check_dir(dir.path());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let trigger = report.catalog.trigger("t", "Flood").unwrap().clone();
    let ex = crate::helpers::executor()
        .execute(
            &trigger,
            &json!({"message_id": flowgate::domain::MessageId::new().to_string()}),
            None,
            None,
            &flowgate::engine::Stop::new(),
            None,
        )
        .await;
    let err = ex.result.unwrap_err().to_string();
    assert!(err.contains("more than 100 events"), "{err}");
    assert_eq!(ex.emitted.len(), 100);
}

#[tokio::test]
async fn an_execution_emits_at_most_a_mebibyte_of_data() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/Heavy.yaml",
        "auth: { none: true }
steps:
  - emit: { event: blob.stored, data: .body.big }
  - name: second
    emit: { event: blob.stored, data: .body.big }
",
    );
    let report = flowgate::flow::check_dir(dir.path());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let trigger = report.catalog.trigger("t", "Heavy").unwrap().clone();
    let big = "x".repeat(600 * 1024);
    let ex = crate::helpers::executor()
        .execute(
            &trigger,
            &json!({"message_id": flowgate::domain::MessageId::new().to_string(), "body": {"big": big}}),
            None,
            None,
            &flowgate::engine::Stop::new(),
            None,
        )
        .await;
    let err = ex.result.unwrap_err().to_string();
    assert!(err.contains("step `second`"), "{err}");
    assert!(err.contains("hold more than 1 MiB"), "{err}");
    assert_eq!(ex.emitted.len(), 1);
}
