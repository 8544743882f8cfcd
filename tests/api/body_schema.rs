//! A trigger's `body:` schema is checked at the edge: a body that does not
//! match is `400 invalid_body`, one error per violation, and leaves no message;
//! `flowgate test` answers it as the server does.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, admin_app_with};
use crate::helpers::{TestApp, write_flow};

/// Ordered by item and queued: a body reaching the queue would be stored.
const RESERVE: &str = r#"auth: { none: true }
body:
  type: object
  required: [item, qty]
  properties:
    item: { type: string, pattern: "^[A-Z]-[0-9]+$" }
    qty: { type: integer, minimum: 1 }
    tags: { type: array, items: { type: string } }
delivery: { ordered: true, ordering_key: .body.item }
response: { mode: async }
steps:
  - respond: { body: .body }
"#;

/// A pattern that backtracks exponentially on engines that backtrack.
const PATTERN: &str = r#"auth: { none: true }
body: { type: object, properties: { s: { type: string, pattern: "^(a+)+$" } } }
response: { mode: async }
steps:
  - respond: { body: .body }
"#;

async fn app() -> TestApp {
    admin_app_with(
        |f| {
            write_flow(f, "acme/Reserve.yaml", RESERVE);
            write_flow(f, "acme/Pattern.yaml", PATTERN);
        },
        |_| {},
    )
    .await
}

async fn stored(app: &TestApp, trigger: &str) -> usize {
    let path = format!("/messages?tenant=acme&trigger={trigger}");
    let (status, page) = app.admin("GET", &path, GLOBAL_TOKEN, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"].as_array().map_or(0, Vec::len)
}

async fn refused(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "invalid_body", "{body}");
            e["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_match_is_refused_with_each_violation_and_never_queued() {
    let app = app().await;
    let res = app
        .post_json("/acme/Reserve", None, &json!({"item": "c300", "qty": 0}))
        .await;
    let body: Value = res.json().await.unwrap();
    let pointers: Vec<&Value> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["pointer"])
        .collect();
    assert_eq!(pointers, [&json!("/item"), &json!("/qty")], "{body}");
    let res = app
        .post_json("/acme/Reserve", None, &json!({"item": "c300", "qty": 0}))
        .await;
    assert_eq!(
        refused(res).await,
        [
            "`/item`: \"c300\" does not match \"^[A-Z]-[0-9]+$\"",
            "`/qty`: 0 is less than the minimum of 1",
        ]
    );
    // No item: refused before its ordering key (null) could name a lane.
    let res = app
        .post_json("/acme/Reserve", None, &json!({"qty": 2}))
        .await;
    assert_eq!(
        refused(res).await,
        ["the body: \"item\" is a required property"]
    );
    // Not JSON at all: the decoded text is checked as well.
    let res = app
        .client
        .post(app.url("/acme/Reserve"))
        .header("content-type", "text/plain")
        .body("C-300 x2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused(res).await,
        ["the body: \"C-300 x2\" is not of type \"object\""]
    );
    assert_eq!(stored(&app, "Reserve").await, 0, "nothing reached a lane");

    let res = app
        .post_json("/acme/Reserve", None, &json!({"item": "C-300", "qty": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(stored(&app, "Reserve").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_beyond_twenty_are_counted_not_listed() {
    let app = app().await;
    let tags: Vec<u32> = (0..25).collect();
    let res = app
        .post_json(
            "/acme/Reserve",
            None,
            &json!({"item": "C-1", "qty": 1, "tags": tags}),
        )
        .await;
    let errors = refused(res).await;
    assert_eq!(errors.len(), 21, "{errors:?}");
    assert_eq!(errors[0], "`/tags/0`: 0 is not of type \"string\"");
    assert_eq!(errors[19], "`/tags/19`: 19 is not of type \"string\"");
    assert_eq!(
        errors[20],
        "5 more violation(s) of the body's schema not listed"
    );
    assert_eq!(stored(&app, "Reserve").await, 0);
}

/// `^(a+)+$` over 50,000 `a`s and a `!` would not end on a backtracking engine;
/// the server answers it, and the next request, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_that_would_backtrack_does_not_hang_the_server() {
    let app = app().await;
    let s = format!("{}!", "a".repeat(50_000));
    let res = app.post_json("/acme/Pattern", None, &json!({"s": s})).await;
    let errors = refused(res).await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("`/s`: \"aaaa"), "{errors:?}");
    let res = app
        .post_json("/acme/Pattern", None, &json!({"s": "aaa"}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}

/// `flowgate test` builds its request's document as the server does: the same
/// 400 and the same errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowgate_test_answers_an_invalid_body_as_the_server_does() {
    let app = app().await;
    let report = flowgate::flow::loader::check_dir(&app.flows_dir());
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let trigger = report.catalog.trigger("acme", "Reserve").unwrap();
    let case = flowgate::cli::flowtest::parse(
        "- name: c\n  body: { item: c300, qty: 0 }\n  expect: { status: 400 }\n",
    )
    .unwrap();
    let executor = app.queue.dispatcher().executor();
    let tested = flowgate::cli::flowtest::answer(executor, trigger, &case[0], false)
        .await
        .unwrap();
    let res = app
        .post_json("/acme/Reserve", None, &json!({"item": "c300", "qty": 0}))
        .await;
    let status = res.status().as_u16();
    let served: Value = res.json().await.unwrap();
    assert_eq!((tested.status, tested.body), (status, served));
}
