//! The `http` step against small servers on loopback: requests as configured,
//! retries that honour Retry-After and stop on 4xx, timeouts, the outbound policy.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, write_flow};
use crate::stub::{Reply, Stub};

fn tenant(stub: &Stub) -> String {
    format!(
        "connections:\n  crm:\n    http:\n      base_url: \"{}/api\"\n      headers: {{ x-client: flowgate }}\n      basic: {{ username: svc, password: pw-1234 }}\n      timeout: 5s\n",
        stub.url()
    )
}

async fn spawn(stub: &Stub, triggers: &[(&str, &str)]) -> TestApp {
    crate::helpers::spawn_tenant("io", tenant(stub), triggers).await
}

/// The stored trace of the message that answered `res` (sync executions are
/// recorded just after the answer).
pub async fn trace_of(app: &TestApp, res: reqwest::Response, trigger: &str) -> Value {
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    for _ in 0..250 {
        if let Some(view) = app.queue.message(id.parse().unwrap()).await.unwrap()
            && view.trace.as_array().is_some_and(|t| !t.is_empty())
        {
            return view.trace;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no trace for message {id} of {trigger}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_step_sends_what_the_flow_says_and_reads_the_answer() {
    let stub =
        Stub::start(Reply::json(201, json!({"ok": true, "n": 7})).header("set-cookie", "sid=abc"))
            .await;
    let flow = r#"auth: { none: true }
methods: [POST]
steps:
  - name: push
    http:
      method: POST
      connection: crm
      url: "/items/{{ .body.id }}?src=fg"
      headers: { x-trace: "t-{{ .body.id }}" }
      body: '{name: .body.name, qty: 2}'
      into: r
  - name: form
    http:
      method: PUT
      connection: crm
      url: form
      content_type: application/x-www-form-urlencoded
      body: '{a: "x y", b: 3}'
  - respond: { body: .vars.r }
"#;
    let app = spawn(&stub, &[("Push", flow)]).await;
    let res = app
        .post_json("/io/Push", None, &json!({"id": "A-1", "name": "Apple"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 201);
    assert_eq!(body["body"], json!({"ok": true, "n": 7}));
    assert_eq!(body["headers"]["content-type"], "application/json");
    assert_eq!(body["headers"]["set-cookie"], "[redacted]");

    let reqs = stub.recorded();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/items/A-1?src=fg")
    );
    assert_eq!(r.header("x-client"), Some("flowgate"));
    assert_eq!(r.header("x-trace"), Some("t-A-1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), Some("Basic c3ZjOnB3LTEyMzQ="));
    assert_eq!(
        r.header("idempotency-key"),
        Some(format!("{id}-push").as_str())
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"name": "Apple", "qty": 2})
    );
    let f = &reqs[1];
    assert_eq!((f.method.as_str(), f.path.as_str()), ("PUT", "/api/form"));
    assert_eq!(
        f.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(f.body, b"a=x+y&b=3");
    assert_eq!(
        f.header("idempotency-key"),
        Some(format!("{id}-form").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_retry_after_and_stop_on_4xx() {
    let stub = Stub::start(Reply::json(200, json!({"done": true}))).await;
    let flow = r#"auth: { none: true }
methods: [GET]
steps:
  - name: call
    retry: [10ms, 10ms, 10ms]
    http: { connection: crm, url: /x, into: r }
  - respond: { body: .vars.r.status }
"#;
    let lenient = r#"auth: { none: true }
methods: [GET]
steps:
  - name: call
    retry: [10ms]
    http: { connection: crm, url: /missing, into: r, accept_status: [404] }
  - respond: { body: .vars.r.status }
"#;
    let app = spawn(&stub, &[("Retry", flow), ("Lenient", lenient)]).await;

    // 503 with Retry-After: 1 s is waited for (not the 10 ms of the schedule),
    // then 429, then success: three tries with the same idempotency key.
    stub.then(Reply::json(503, json!({})).header("retry-after", "1"))
        .then(Reply::json(429, json!({})));
    let res = app.get("/io/Retry", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!(200));
    let reqs = stub.recorded();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_millis(900),
        "Retry-After was not honoured"
    );
    assert_eq!(
        reqs[0].header("idempotency-key"),
        reqs[2].header("idempotency-key")
    );

    // A 4xx is not transient: one try, and the step fails.
    stub.requests.lock().unwrap().clear();
    stub.then(Reply::json(404, json!({"error": "no such item"})));
    let res = app.get("/io/Retry", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(stub.recorded().len(), 1);
    let trace = trace_of(&app, res, "Retry").await;
    let err = trace[0]["error"].as_str().unwrap();
    assert!(err.contains("answered 404 after 1 attempt(s)"), "{err}");

    // Unless the step accepts it.
    stub.then(Reply::json(404, json!({})));
    let res = app.get("/io/Lenient", None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!(404));

    // Retries run out: the step fails with the last answer.
    stub.requests.lock().unwrap().clear();
    for _ in 0..4 {
        stub.then(Reply::json(502, json!({})));
    }
    let res = app.get("/io/Retry", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(stub.recorded().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_fails_the_message_without_delivery_retries() {
    let stub = Stub::start(Reply::json(200, json!({}))).await;
    let flow = r#"auth: { none: true }
methods: [POST]
response: { mode: async }
delivery: { retry: [10ms, 10ms, 10ms] }
steps:
  - name: push
    retry: [10ms, 10ms]
    http: { connection: crm, url: /items, method: POST, body: .body }
"#;
    let app = spawn(&stub, &[("Push", flow)]).await;

    // 422: the receiver refuses this very request; no later run can change that.
    stub.then(Reply::json(422, json!({"error": "bad item"})));
    let res = app.post_json("/io/Push", None, &json!({"id": 1})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let doc = app
        .wait_final("io/Push", &id, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(stub.recorded().len(), 1, "a 4xx was sent again");

    // A 503 that outlasts the step's retries is transient: delivery runs it again.
    stub.requests.lock().unwrap().clear();
    for _ in 0..3 {
        stub.then(Reply::json(503, json!({})));
    }
    let res = app.post_json("/io/Push", None, &json!({"id": 2})).await;
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let doc = app
        .wait_final("io/Push", &id, "", Duration::from_secs(10))
        .await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(stub.recorded().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_fails_the_step() {
    let stub = Stub::start(Reply::json(200, json!({})).delay(Duration::from_secs(3))).await;
    let flow = r#"auth: { none: true }
methods: [GET]
steps:
  - name: slow
    http: { connection: crm, url: /slow, timeout: 200ms }
"#;
    let app = spawn(&stub, &[("Slow", flow)]).await;
    let res = app.get("/io/Slow", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("slow")
    );
    // Nothing of the failure's internals goes to the caller; the trace has it.
    let trace = trace_of(&app, app.get("/io/Slow", None).await, "Slow").await;
    let err = trace[0]["error"].as_str().unwrap();
    assert!(err.contains("no answer within 200ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_policy_refuses_private_and_unlisted_hosts() {
    let stub = Stub::start(Reply::json(200, json!({}))).await;
    let flow = format!(
        "auth: {{ none: true }}\nmethods: [GET]\nsteps:\n  - name: out\n    http: {{ url: \"{}/x\" }}\n",
        stub.url()
    );
    let named = format!(
        "auth: {{ none: true }}\nmethods: [GET]\nsteps:\n  - name: out\n    http: {{ url: \"http://localhost:{}/x\" }}\n",
        stub.addr.port()
    );
    let (f1, f2) = (flow.clone(), named.clone());
    let app = TestApp::spawn_with(
        move |flows| {
            write_flow(flows, "io/Direct.yaml", &f1);
            write_flow(flows, "io/Named.yaml", &f2);
        },
        |s| s.outbound_deny_private = true,
    )
    .await;
    for trigger in ["Direct", "Named"] {
        let res = app.get(&format!("/io/{trigger}"), None).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{trigger}");
        let trace = trace_of(&app, res, trigger).await;
        let err = trace[0]["error"].as_str().unwrap();
        assert!(err.contains("private"), "{trigger}: {err}");
    }
    assert!(stub.recorded().is_empty());

    let app = TestApp::spawn_with(
        move |flows| write_flow(flows, "io/Direct.yaml", &flow),
        |s| s.outbound_allow_hosts = vec!["*.example.com".into()],
    )
    .await;
    let res = app.get("/io/Direct", None).await;
    let trace = trace_of(&app, res, "Direct").await;
    assert!(trace[0]["error"].as_str().unwrap().contains("allow-list"));
    assert!(stub.recorded().is_empty());
}
