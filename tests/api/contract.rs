//! The caller's HTTP contract against the shipped example flows: answers, status
//! codes, error bodies and headers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ERP_KEY, TestApp, WEBSHOP_KEY, write_flow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_get_answers_from_the_flow_with_typed_params_and_defaults() {
    let app = TestApp::spawn().await;
    let res = app
        .get("/acme/ItemPrice?itemId=B-200&qty=2", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-message-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"item": "B-200", "currency": "EUR", "qty": 2, "unit_price": 4.95, "total": 9.9})
    );

    let res = app
        .get("/acme/StockAtHand?itemId=A-100", Some(WEBSHOP_KEY))
        .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["warehouse"], "MAIN");
    assert_eq!(body["on_hand"], 120);

    // Authorization: Bearer works as well as X-Api-Key.
    let res = app
        .client
        .get(app.url("/acme/StockAtHand?itemId=A-100&warehouse=NORTH"))
        .bearer_auth(ERP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["on_hand"], 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_naming_each_parameter() {
    let app = TestApp::spawn().await;
    let res = app
        .get("/acme/ItemPrice?currency=GBP&qty=zero", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        !res.headers().contains_key("x-message-id"),
        "no message was created"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": [
            {"code": "invalid_parameter", "message": "parameter `itemId` is required"},
            {"code": "invalid_parameter", "message": "parameter `currency` must be one of EUR, SEK, USD (got `GBP`)"},
            {"code": "invalid_parameter", "message": "parameter `qty` is invalid: `zero` is not an integer"},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_with_www_authenticate() {
    let app = TestApp::spawn().await;
    for key in [None, Some("not-a-key")] {
        let res = app.get("/acme/ItemPrice?itemId=A-100", key).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"flowgate\""
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "unauthorized");
    }
    // A valid key of the tenant whose label the trigger does not list.
    let res = app
        .post_json(
            "/acme/CreateCustomerRecord",
            Some(WEBSHOP_KEY),
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_disabled_and_wrong_method() {
    let app = TestApp::spawn_with(
        |flows| {
            write_flow(
                flows,
                "acme/Off.yaml",
                "enabled: false\nauth: { none: true }\nsteps:\n  - log: '\"x\"'\n",
            )
        },
        |_| {},
    )
    .await;
    for path in ["/nobody/ItemPrice", "/acme/Nope", "/acme/Off", "/acme", "/"] {
        let res = app.get(path, Some(WEBSHOP_KEY)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "not_found", "{path}");
    }
    let res = app
        .post_json("/acme/ItemPrice", Some(WEBSHOP_KEY), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET");
    let res = app
        .client
        .put(app.url("/acme/WorkOrder"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_and_decoded() {
    let app = TestApp::spawn_with(
        |flows| {
            write_flow(
                flows,
                "t/Echo.yaml",
                "auth: { none: true }\nsteps:\n  - respond: { body: '{body: .body, query: .query, auth: .auth, key: .headers[\"x-api-key\"]}' }\n",
            )
        },
        |s| s.body_limit = 1000,
    )
    .await;
    let res = app
        .client
        .post(app.url("/t/Echo"))
        .body(vec![b'x'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json::<Value>().await.unwrap()["errors"][0]["code"],
        "payload_too_large"
    );

    let post = |ct: &'static str, body: &'static [u8]| {
        app.client
            .post(app.url("/t/Echo?a=1&a=2&b=x"))
            .header("content-type", ct)
            .header("x-api-key", "secret-value")
            .body(body)
            .send()
    };
    let echo: Value = post("application/json", b"{\"n\": 1}")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["body"], json!({"n": 1}));
    assert_eq!(echo["query"], json!({"a": ["1", "2"], "b": "x"}));
    assert_eq!(echo["auth"], json!({"method": "none"}));
    assert_eq!(
        echo["key"], "[redacted]",
        "secret headers never reach a flow"
    );
    let echo: Value = post("application/x-www-form-urlencoded", b"k=v+w")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["body"], json!({"k": "v w"}));
    let echo: Value = post("text/plain", b"hello")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["body"], json!("hello"));
    let echo: Value = post("image/png", b"\x89PNG")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["body"], json!({"base64": "iVBORw=="}));
    let res = post("application/json", b"{broken").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "invalid_body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_answer_500_without_internals_and_fail_steps_with_their_status() {
    let app = TestApp::spawn_with(
        |flows| {
            write_flow(
                flows,
                "t/Broken.yaml",
                "methods: [GET]\nauth: { none: true }\nsteps:\n  - name: compute\n    set: { x: '.params.nothing + 1 | error(\"secret internals\")' }\n",
            )
        },
        |_| {},
    )
    .await;
    let res = app.get("/t/Broken", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let text = res.text().await.unwrap();
    assert!(!text.contains("secret internals"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["errors"][0]["code"], "flow_failed");
    assert_eq!(body["message_id"], id.as_str());
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`compute`")
    );

    let res = app
        .get("/acme/ItemPrice?itemId=NOPE", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["errors"][0],
        json!({"code": "rejected", "message": "unknown item NOPE"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_accept_then_status_url() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json(
            "/acme/CreateCustomerRecord",
            Some(ERP_KEY),
            &json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let header_id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["message_id"], header_id.as_str());
    assert_eq!(
        location,
        format!("/acme/CreateCustomerRecord/messages/{header_id}")
    );

    let doc = app
        .wait_final(
            "acme/CreateCustomerRecord",
            &header_id,
            ERP_KEY,
            std::time::Duration::from_secs(10),
        )
        .await;
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["tenant"], "acme");
    assert_eq!(doc["attempts"][0]["number"], 1);
    assert_eq!(doc["attempts"][0]["outcome"], "succeeded");
    assert_eq!(doc["response"]["status"], 201);
    assert_eq!(doc["response"]["body"]["name"], "ada");
    assert_eq!(
        doc["response"]["body"]["id"],
        header_id.as_str(),
        "the flow sees its message_id"
    );
    let received = doc["received_at"].as_str().unwrap();
    assert_eq!(
        received.len(),
        "2026-11-22T10:15:30.123456Z".len(),
        "{received}"
    );

    // The status URL needs the trigger's key and the right trigger.
    assert_eq!(
        app.get(&location, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let other = format!("/acme/WorkOrder/messages/{header_id}");
    assert_eq!(
        app.get(&other, Some(ERP_KEY)).await.status(),
        StatusCode::NOT_FOUND
    );
    let bogus = "/acme/CreateCustomerRecord/messages/not-an-id";
    assert_eq!(
        app.get(bogus, Some(ERP_KEY)).await.status(),
        StatusCode::NOT_FOUND
    );
    // Only GET reads a status URL; deeper or trailing paths are no route.
    let post = app
        .client
        .post(app.url(&location))
        .header("x-api-key", ERP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET");
    for path in [
        format!("{location}/more"),
        "/acme/CreateCustomerRecord/".to_owned(),
        "/acme".to_owned(),
    ] {
        assert_eq!(
            app.get(&path, Some(ERP_KEY)).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_messages_are_recorded_for_the_status_url() {
    let app = TestApp::spawn().await;
    let res = app
        .get("/acme/ItemPrice?itemId=C-300", Some(WEBSHOP_KEY))
        .await;
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let doc: Value = app
        .get(&format!("/acme/ItemPrice/messages/{id}"), Some(WEBSHOP_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["response"]["body"]["unit_price"], 199.0);
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_with_the_same_key_runs_no_new_verification() {
    let app = TestApp::spawn().await;
    assert_eq!(app.metric("flowgate_key_verifications_total").await, 0.0);
    let res = app
        .get("/acme/ItemPrice?itemId=A-100", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after_first = app.metric("flowgate_key_verifications_total").await;
    assert!(after_first >= 1.0);
    for _ in 0..5 {
        let res = app
            .get("/acme/StockAtHand?itemId=A-100", Some(WEBSHOP_KEY))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(
        app.metric("flowgate_key_verifications_total").await,
        after_first
    );
    assert!(app.metric("flowgate_key_cache_hits_total").await >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_and_store_down_is_503() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/_health", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/_ready", None).await.status(), StatusCode::OK);
    app.queue.store().close().await.unwrap();
    let res = app
        .post_json(
            "/acme/CreateCustomerRecord",
            Some(ERP_KEY),
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "store_unavailable");
    assert_eq!(
        app.get("/_ready", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// An embedder stops the server through its handle, as a signal would: the port
/// closes, `run_until_stopped` returns, and a message accepted before is kept in
/// the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_stops_through_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let app = flowgate::startup::Application::build(crate::helpers::settings_in(dir.path()))
        .await
        .unwrap();
    let (base, handle, queue) = (
        format!("http://{}", app.local_addr()),
        app.handle(),
        app.queue(),
    );
    let running = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/acme/CreateCustomerRecord"))
        .header("x-api-key", ERP_KEY)
        .json(&json!({"name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id: flowgate::domain::MessageId = res.headers()["x-message-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    handle.stop(true).await;
    tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .expect("run_until_stopped returns once stopped")
        .unwrap()
        .unwrap();
    assert!(
        client.get(format!("{base}/_health")).send().await.is_err(),
        "the port is closed"
    );
    let stored = queue.message(id).await.unwrap();
    assert!(stored.is_some(), "the accepted message is stored");
}
