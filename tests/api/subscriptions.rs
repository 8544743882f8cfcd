//! Event webhooks out, against a receiver the test starts: signed payloads, the
//! retry schedule (a short one), the delivery log, redelivery, disabled
//! subscriptions and the https rule.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, admin_tokens};
use crate::helpers::{TestApp, write_flow};

const SECRET_VAR: &str = "FLOWGATE_TEST_HOOK_SECRET";
const SECRET: &str = "s3cret-for-tests";

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A receiver on port 0: `/flaky` answers 500 twice, then 200; anything else 200.
async fn receiver() -> (String, Log) {
    let log: Log = Arc::default();
    let data = web::Data::new(log.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |req: HttpRequest, body: String, log: web::Data<Log>| async move {
                let mut log = log.lock().unwrap();
                log.push(Received {
                    path: req.path().to_owned(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body,
                });
                let seen = log.iter().filter(|r| r.path == req.path()).count();
                if req.path() == "/flaky" && seen <= 2 {
                    HttpResponse::InternalServerError()
                        .insert_header(("x-why", "not yet"))
                        .body("try again")
                } else {
                    HttpResponse::Ok().body("thanks")
                }
            },
        ))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), log)
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no header {name}"))
}

/// A server with tenant `hooks` (its `_tenant.yaml` and one trigger), admin tokens,
/// a fast poll and a short retry schedule.
async fn hooks_app(tenant: &str, trigger: (&str, &str), allow_http: bool) -> TestApp {
    TestApp::spawn_with(
        |f| {
            write_flow(f, "hooks/_tenant.yaml", tenant);
            write_flow(f, &format!("hooks/{}.yaml", trigger.0), trigger.1);
        },
        |s| {
            s.admin_tokens = admin_tokens();
            s.subscriptions_allow_http = allow_http;
            s.subscriptions_retry = vec![Duration::from_millis(100); 3];
            s.subscriptions_poll = Duration::from_millis(20);
        },
    )
    .await
}

async fn app_with(receiver: &str, allow_http: bool) -> TestApp {
    // SAFETY: set once, to the same value, before any server of this test runs.
    unsafe { std::env::set_var(SECRET_VAR, SECRET) };
    let tenant = format!(
        "api_keys: {{}}\nsubscriptions:\n  - name: ops\n    url: {receiver}/flaky\n    events: [message.rejected]\n    secret: \"${{{SECRET_VAR}}}\"\n    basic_auth: {{ username: ops, password: \"${{{SECRET_VAR}}}\" }}\n    enabled: true\n  - name: quiet\n    url: {receiver}/quiet\n    events: [message.failed, message.succeeded]\n"
    );
    let fails = "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - fail: { status: 422, message: '\"rejected\"' }\n";
    hooks_app(&tenant, ("Fails", fails), allow_http).await
}

/// Polls the delivery log until its first delivery has `status`.
async fn wait_delivery(app: &TestApp, status: &str) -> Value {
    for _ in 0..500 {
        let (_, list) = app
            .admin("GET", "/deliveries?tenant=hooks", GLOBAL_TOKEN, None)
            .await;
        if let Some(d) = list["deliveries"].as_array().and_then(|l| l.first())
            && d["status"] == status
        {
            let path = format!("/deliveries/{}", d["delivery_id"].as_str().unwrap());
            return app.admin("GET", &path, GLOBAL_TOKEN, None).await.1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery reached {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_delivery_fails_twice_then_succeeds_in_three_attempts() {
    let (base, log) = receiver().await;
    let app = app_with(&base, true).await;
    let id = app.post_async("/hooks/Fails", None, json!({"n": 1})).await;

    let d = wait_delivery(&app, "succeeded").await;
    let statuses: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(500), json!(200)]);
    assert_eq!(d["attempts"][0]["body"], "try again");
    assert!(d["attempts"][0]["headers"].to_string().contains("not yet"));
    assert_eq!(d["event"], "message.rejected");
    assert_eq!(d["message_id"], id.as_str());

    let got: Vec<Received> = log.lock().unwrap().clone();
    let flaky: Vec<&Received> = got.iter().filter(|r| r.path == "/flaky").collect();
    assert_eq!(flaky.len(), 3, "exactly three attempts");
    assert!(
        got.iter().all(|r| r.path != "/quiet"),
        "a disabled subscription sends nothing"
    );

    let last = flaky[2];
    let payload: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(payload["event"], "message.rejected");
    assert_eq!(payload["subscription"], "ops");
    assert_eq!(payload["id"], d["delivery_id"]);
    assert_eq!(
        payload["data"],
        json!({"message_id": id, "tenant": "hooks", "trigger": "Fails"})
    );
    assert_eq!(payload, d["payload"]);

    let ts = header(last, "x-flowgate-timestamp");
    let sig = header(last, "x-flowgate-signature")
        .strip_prefix("sha256=")
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", last.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, expected, "the signature verifies with the secret");
    let mut tampered = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    tampered.update(format!("{ts}.{}x", last.body).as_bytes());
    let other: String = tampered
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(sig, other);
    assert!(header(last, "authorization").starts_with("Basic "));

    // Manual redelivery sends it once more.
    let path = format!(
        "/deliveries/{}/redeliver",
        d["delivery_id"].as_str().unwrap()
    );
    let (code, _) = app.admin("POST", &path, GLOBAL_TOKEN, None).await;
    assert_eq!(code, reqwest::StatusCode::ACCEPTED);
    for _ in 0..250 {
        if log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/flaky")
            .count()
            == 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = wait_delivery(&app, "succeeded").await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 4);
}

#[test]
fn http_receivers_need_the_setting_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/_tenant.yaml",
        "subscriptions:\n  - name: a\n    url: http://127.0.0.1:9/hook\n    events: [message.failed]\n",
    );
    let refused = flowgate::flow::check_dir_with(dir.path(), false);
    let text: Vec<String> = refused.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("_tenant.yaml:3:10"), "{text:?}");
    assert!(text[0].contains("subscriptions_allow_http"), "{text:?}");
    let allowed = flowgate::flow::check_dir_with(dir.path(), true);
    assert!(allowed.diagnostics.is_empty(), "{:?}", allowed.diagnostics);
}

#[test]
fn subscription_mistakes_are_load_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/_tenant.yaml",
        "subscriptions:\n  - name: a\n    url: ftp://x\n    events: [message.failed, message.exploded]\n    secret: \"${FLOWGATE_TEST_SURELY_UNSET}\"\n  - name: a\n    url: https://x\n    events: [lane.blocked]\n    colour: blue\n",
    );
    let report = flowgate::flow::check_dir(dir.path());
    let text: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("_tenant.yaml:3:"), "{all}");
    assert!(all.contains("url must start with https://"), "{all}");
    assert!(all.contains("unknown event `message.exploded`"), "{all}");
    assert!(
        all.contains("`FLOWGATE_TEST_SURELY_UNSET` is not set"),
        "{all}"
    );
    assert!(
        all.contains("colour") || all.contains("unknown field"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_and_load_events_are_delivered() {
    let (base, log) = receiver().await;
    let tenant = format!(
        "subscriptions:\n  - name: lanes\n    url: {base}/events\n    events: [lane.blocked, lane.unblocked, flow.load_failed]\n    enabled: true\n"
    );
    let lane = "auth: { none: true }\ndelivery: { ordered: true, retry: [] }\nresponse: { mode: async }\nsteps:\n  - fail: { status: 500, message: '\"down\"' }\n";
    let app = hooks_app(&tenant, ("Lane", lane), true).await;
    let id = app.post_async("/hooks/Lane", None, json!({})).await;
    app.admin_wait(&id, "dead").await;
    let (code, _) = app
        .admin("POST", &format!("/messages/{id}/skip"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(code, reqwest::StatusCode::OK);
    write_flow(&app.flows_dir(), "hooks/Broken.yaml", "steps: [\n");

    let mut events = Vec::new();
    for _ in 0..500 {
        events = log
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .collect();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["lane.blocked", "lane.unblocked", "flow.load_failed"]
    );
    assert_eq!(events[0]["data"]["message_id"], id.as_str());
    assert_eq!(events[1]["data"]["message_id"], id.as_str());
    assert_eq!(
        events[2]["data"],
        json!({"message_id": null, "tenant": "hooks", "trigger": "Broken"})
    );
    assert!(events.iter().all(|e| e["subscription"] == "lanes"));
}

/// `flowgate check` reads `subscriptions_allow_http` from the settings, as
/// `serve` does, so the two agree on an `http://` receiver.
#[test]
fn check_refuses_an_http_receiver_unless_the_settings_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "flows/t/_tenant.yaml",
        "subscriptions:\n  - name: a\n    url: http://example.com/hook\n    events: [message.failed]\n",
    );
    let check = |allow: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"));
        cmd.current_dir(dir.path())
            .args(["check", "flows"])
            .env_remove("FLOWGATE_SUBSCRIPTIONS_ALLOW_HTTP");
        if let Some(v) = allow {
            cmd.env("FLOWGATE_SUBSCRIPTIONS_ALLOW_HTTP", v);
        }
        cmd.output().unwrap()
    };
    let refused = check(None);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("_tenant.yaml:3:10:"), "{said}");
    assert!(said.contains("subscriptions_allow_http"), "{said}");
    let allowed = check(Some("true"));
    let said = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{said}");
}
