//! What a caller's body may be at the edge, and that whatever is accepted is what
//! the flow, the status URL, the admin API and a replay all see: `max_input_depth`
//! for JSON and XML, on both stores; stored documents that cannot be read back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{ACME_TOKEN, GLOBAL_TOKEN, admin_app_with};
use crate::helpers::{TestApp, write_flow};

/// Echoes the body as its response; async, so every reader goes through the store.
const ECHO: &str =
    "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - respond: { body: .body }\n";

/// `{"a": {"a": ... 1}}`, `levels` objects deep.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

fn nested_xml(levels: usize) -> String {
    format!("{}x{}", "<a>".repeat(levels), "</a>".repeat(levels))
}

async fn deep_app(settings: impl FnOnce(&mut flowgate::config::Settings)) -> TestApp {
    admin_app_with(
        |f| {
            write_flow(f, "acme/Echo.yaml", ECHO);
        },
        settings,
    )
    .await
}

async fn send(app: &TestApp, content_type: &str, body: String) -> reqwest::Response {
    app.client
        .post(app.url("/acme/Echo"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn too_deep(res: reqwest::Response, limit: usize) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "too_deep", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains(&format!("{limit} levels")), "{message}");
}

async fn replay(app: &TestApp, id: &str, token: &str) -> (StatusCode, Value) {
    app.admin("POST", &format!("/messages/{id}/replay"), token, None)
        .await
}

/// Accepts `body` and checks that the flow, the status URL, the admin detail and
/// a replay all see `expected` as `.body`.
async fn round_trip(app: &TestApp, content_type: &str, body: String, expected: &Value) {
    let res = send(app, content_type, body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = app
        .wait_final("acme/Echo", &id, "", Duration::from_secs(20))
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(&done["response"]["body"], expected, "the status URL");
    let (status, detail) = app
        .admin("GET", &format!("/messages/{id}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&detail["input"]["body"], expected, "the admin detail");
    assert_eq!(&detail["response"]["body"], expected);
    let (status, replayed) = replay(app, &id, GLOBAL_TOKEN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    let again = replayed["message_id"].as_str().unwrap();
    let done = app
        .wait_final("acme/Echo", again, "", Duration::from_secs(20))
        .await;
    assert_eq!(&done["response"]["body"], expected, "the replay ran on it");
}

async fn depth_limits_on(store: Option<String>) {
    let app = deep_app(move |s| {
        if let Some(url) = store {
            s.store = url;
            s.pool_size = 4;
        }
    })
    .await;
    // 128 levels: the default limit, more than serde_json reads back by itself.
    let deepest = nested(128);
    round_trip(&app, "application/json", deepest.to_string(), &deepest).await;
    too_deep(
        send(&app, "application/json", nested(129).to_string()).await,
        128,
    )
    .await;
    // Without a content type a body that is JSON is read as JSON, with the same limit.
    too_deep(send(&app, "", nested(129).to_string()).await, 128).await;

    let mut xml_value = json!("x");
    for _ in 0..128 {
        xml_value = json!({ "a": xml_value });
    }
    round_trip(&app, "application/xml", nested_xml(128), &xml_value).await;
    too_deep(send(&app, "application/xml", nested_xml(129)).await, 128).await;
    too_deep(send(&app, "text/xml", nested_xml(100_000)).await, 128).await;
    // Deep in every way at once, as a 2 MB body: refused without harm.
    too_deep(
        send(&app, "application/json", "[".repeat(2_000_000)).await,
        128,
    )
    .await;
    assert_eq!(app.get("/_health", None).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_input_depth_bounds_bodies_and_what_is_accepted_reads_back_whole() {
    depth_limits_on(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_inputs_read_back_whole_on_postgres() {
    let Some(pg) = crate::pg::schema("deep_inputs").await else {
        return;
    };
    depth_limits_on(Some(pg.url.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_input_depth_is_a_setting() {
    let app = deep_app(|s| s.max_input_depth = 250).await;
    let deep = nested(250);
    round_trip(&app, "application/json", deep.to_string(), &deep).await;
    too_deep(
        send(&app, "application/json", nested(251).to_string()).await,
        250,
    )
    .await;
    let app = deep_app(|s| s.max_input_depth = 3).await;
    too_deep(
        send(&app, "application/json", nested(4).to_string()).await,
        3,
    )
    .await;
    assert_eq!(
        send(&app, "application/json", nested(3).to_string())
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let s = flowgate::config::Settings {
        max_input_depth: 10_000,
        ..Default::default()
    };
    let errors = s.validate().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("max_input_depth must be between 1 and 250")),
        "{errors:?}"
    );
}

/// Replaces a stored input by hand, as a damaged database or a document from a
/// build with other limits would hold it.
fn damage_input(app: &TestApp, id: &str, text: &str) {
    let db = rusqlite::Connection::open(app.dir.path().join("flowgate.db")).unwrap();
    let n = db
        .execute(
            "UPDATE message_inputs SET input = ?2 WHERE seq = (SELECT seq FROM messages WHERE id = ?1)",
            [id, text],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_input_cannot_be_read_is_not_shown_as_null_nor_replayed() {
    let app = deep_app(|_| {}).await;
    let res = send(&app, "application/json", r#"{"n": 1}"#.into()).await;
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_final("acme/Echo", &id, "", Duration::from_secs(20))
        .await;
    app.queue.store().flush().await.unwrap();
    let deeper = "[".repeat(5000) + &"]".repeat(5000);
    damage_input(&app, &id, &deeper);

    let (status, body) = app
        .admin("GET", &format!("/messages/{id}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["errors"][0]["code"], "unreadable");
    let why = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        why.contains("the stored input cannot be read: nested deeper than"),
        "{why}"
    );
    let (status, body) = replay(&app, &id, ACME_TOKEN).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot replay: message {id}: the stored input")),
        "{body}"
    );
    // The caller's status URL: an opaque 500, not a document with a `null` in it.
    let res = app.get(&format!("/acme/Echo/messages/{id}"), None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // From a terminal: the refusal and its reason, exit 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["messages", "replay", &id, "--url", &app.base])
        .env("FLOWGATE_ADMIN_TOKEN", GLOBAL_TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("409") && err.contains("the stored input cannot be read"),
        "{err}"
    );

    // Not JSON at all: the same refusal.
    damage_input(&app, &id, "{\"body\": ");
    let (status, body) = replay(&app, &id, GLOBAL_TOKEN).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_message_whose_input_cannot_be_read_fails_instead_of_running_on_null() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flowgate.db").display());
    let store = flowgate::store::Store::open(&url).unwrap();
    let id = flowgate::domain::MessageId::new();
    let message = flowgate::domain::NewMessage {
        id,
        tenant: flowgate::domain::TenantName::parse("acme").unwrap(),
        trigger: flowgate::domain::TriggerName::parse("Echo").unwrap(),
        lane: None,
        mode: flowgate::domain::Mode::Async,
        received_at: flowgate::domain::now_micros(),
        idempotency_key: None,
        input: json!({"body": 1}),
        body_json: None,
    };
    store.enqueue(&[message]).await.unwrap();
    store.close().await.unwrap();
    let db = rusqlite::Connection::open(dir.path().join("flowgate.db")).unwrap();
    db.execute("UPDATE message_inputs SET input = 'not json'", [])
        .unwrap();
    drop(db);

    let store = flowgate::store::Store::open(&url).unwrap();
    let pending = store.recover(flowgate::domain::now_micros()).await.unwrap();
    assert_eq!(pending.len(), 1);
    let why = pending[0].input.as_ref().unwrap_err();
    assert!(
        why.to_string()
            .starts_with("the stored input cannot be read"),
        "{why}"
    );
}
