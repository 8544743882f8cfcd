//! Requests as a hostile or broken caller sends them: slow bodies, huge heads,
//! bodies of every wrong kind. Each is answered as it should be, and afterwards
//! the process still serves `/_health` and other tenants' triggers.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, WEBSHOP_KEY, write_flow};

const ECHO: &str = "methods: [GET, POST]\nauth: { none: true }\nsteps:\n  - respond: { body: '{body: .body, query: .query}' }\n";

async fn app_with(settings: impl FnOnce(&mut flowgate::config::Settings)) -> TestApp {
    TestApp::spawn_with(|f| write_flow(f, "open/Echo.yaml", ECHO), settings).await
}

/// `/_health` answers, and so does another tenant's trigger.
async fn still_serving(app: &TestApp) {
    let started = Instant::now();
    assert_eq!(app.get("/_health", None).await.status(), StatusCode::OK);
    let res = app
        .get("/acme/ItemPrice?itemId=A-100", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered, but after {:?}",
        started.elapsed()
    );
}

/// Sends `request` as it is and reads until the server closes the connection
/// (or `wait` passes): the answer's text.
async fn raw(app: &TestApp, request: &[u8], wait: Duration) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = sock.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, sock.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn error_code(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<Value>(body).map_or_else(
        |_| String::new(),
        |v| v["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_slow_bodies_get_408_and_do_not_hold_the_server() {
    let app = app_with(|s| s.body_timeout = Duration::from_secs(1)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let slow: Vec<_> = (0..300)
        .map(|i| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let sock = TcpStream::connect(&addr).await.unwrap();
                let (mut rd, mut wr) = sock.into_split();
                // A 10 MiB body declared, then one byte every 200 ms.
                let head = format!(
                    "POST /open/Echo?i={i} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10485760\r\n\r\n"
                );
                wr.write_all(head.as_bytes()).await.unwrap();
                let dribble = tokio::spawn(async move {
                    while wr.write_all(b" ").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                let mut answer = Vec::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(15),
                    rd.read_to_end(&mut answer),
                )
                .await;
                dribble.abort();
                (read.is_ok(), String::from_utf8_lossy(&answer).into_owned())
            })
        })
        .collect();
    // While they dribble, everyone else is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serving(&app).await;
    for task in slow {
        let (closed, answer) = task.await.unwrap();
        assert!(closed, "the connection stayed open: {answer:?}");
        assert!(status_line(&answer).contains(" 408 "), "{answer}");
        assert_eq!(error_code(&answer), "body_timeout");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_arrives_in_time_is_read_however_it_comes() {
    let app = app_with(|s| s.body_timeout = Duration::from_secs(2)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"slow": true}"#;
    let head = format!(
        "POST /open/Echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for b in body {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sock.write_all(&[*b]).await.unwrap();
    }
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(status_line(&answer).contains(" 200 "), "{answer}");
    assert!(answer.contains(r#""slow":true"#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_and_forms_that_are_not_utf8_are_refused() {
    let app = app_with(|_| {}).await;
    let res = app
        .get("/acme/ItemPrice?itemId=%FF%FE", Some(WEBSHOP_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "invalid_query", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`itemId` is not valid UTF-8"),
        "{body}"
    );
    let res = app.get("/open/Echo?%C3%28=1", None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Valid escapes, `+`, a stray `%` and an empty pair are all fine.
    let res = app.get("/open/Echo?a=%C3%A9+x&b=100%&&c", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["query"],
        serde_json::json!({"a": "é x", "b": "100%", "c": ""})
    );

    let res = app
        .client
        .post(app.url("/open/Echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=%FF")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "invalid_body", "{body}");
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_answered_and_harmless() {
    let app = app_with(|s| s.body_timeout = Duration::from_secs(2)).await;
    let wait = Duration::from_secs(8);
    let post = |ct: &str, body: &[u8]| {
        let mut r = format!(
            "POST /open/Echo HTTP/1.1\r\nhost: x\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let big_header = format!(
        "GET /_health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(200_000)
    );
    let many_headers = format!(
        "GET /_health HTTP/1.1\r\nhost: x\r\n{}connection: close\r\n\r\n",
        (0..500)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let long_url = format!(
        "GET /open/Echo?{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a=1&".repeat(50_000)
    );
    let many_params = format!(
        "GET /open/Echo?{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        (0..2000).map(|i| format!("p{i}=v&")).collect::<String>()
    );
    let form_keys = post(
        "application/x-www-form-urlencoded",
        format!("{}=1&a[b][c][d]=2", "a[b]".repeat(10_000)).as_bytes(),
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("a head of 200 kB", big_header.into_bytes(), " 431 ", ""),
        ("500 headers", many_headers.into_bytes(), " 431 ", ""),
        ("a 200 kB URL", long_url.into_bytes(), " 431 ", ""),
        ("2000 parameters", many_params.into_bytes(), " 200 ", ""),
        ("deep form keys stay flat", form_keys, " 200 ", ""),
        ("invalid JSON", post("application/json", b"{\"a\": tru"), " 400 ", "invalid_body"),
        ("JSON that is not UTF-8", post("application/json", b"\"\xff\""), " 400 ", "invalid_body"),
        ("XML with an external entity", post("application/xml", b"<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>"), " 400 ", "invalid_body"),
        ("XML entity expansion", post("text/xml", b"<!DOCTYPE a [<!ENTITY b \"bbbbbbbbbb\"><!ENTITY c \"&b;&b;&b;&b;\">]><a>&c;&c;&c;</a>"), " 400 ", "invalid_body"),
        ("a control character in a header", post(";;;/\u{1}", b"x"), " 400 ", ""),
        ("a content type that is not one", post("nonsense;;;=", b"\x00\x01"), " 200 ", ""),
        ("text that is not UTF-8", post("text/plain", b"\xff\xfe"), " 400 ", "invalid_body"),
        ("a body over body_limit", b"POST /open/Echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10485761\r\nconnection: close\r\n\r\nabc".to_vec(), " 413 ", "payload_too_large"),
        ("two lengths", b"POST /open/Echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(), " 400 ", ""),
        ("a broken chunk", b"POST /open/Echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(), "", ""),
        ("a NUL in the path", b"GET /open/E\0cho HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), " 400 ", ""),
        ("a path of dots", b"GET /../../_admin/api/triggers HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), " 404 ", "not_found"),
        ("a method of its own", b"BREW /open/Echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), " 405 ", "method_not_allowed"),
        ("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), "", ""),
    ];
    for (what, request, status, code) in cases {
        let answer = raw(&app, &request, wait).await;
        assert!(
            status_line(&answer).contains(status),
            "{what}: {}",
            status_line(&answer)
        );
        if !code.is_empty() {
            assert_eq!(error_code(&answer), code, "{what}: {answer}");
        }
    }
    still_serving(&app).await;

    // A body of exactly 10 MiB (the default body_limit) is taken.
    let body = format!("\"{}\"", "x".repeat(10 * 1024 * 1024 - 2));
    let res = app
        .client
        .post(app.url("/open/Echo"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_ends_and_a_body_nobody_reads_do_not_keep_connections() {
    let app = app_with(|s| s.body_timeout = Duration::from_secs(1)).await;
    // Half a head: actix's own request timeout (5 s) answers 408 and closes.
    let started = Instant::now();
    let answer = raw(
        &app,
        b"POST /open/Echo HTTP/1.1\r\nhost: x\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(status_line(&answer).contains(" 408 "), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(9));

    // Refused before its body is read (a wrong key): the rest is not waited for.
    let started = Instant::now();
    let answer = raw(
        &app,
        b"POST /acme/CreateCustomerRecord HTTP/1.1\r\nhost: x\r\nx-api-key: wrong\r\ncontent-length: 1000000\r\n\r\n{",
        Duration::from_secs(10),
    )
    .await;
    assert!(status_line(&answer).contains(" 401 "), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the connection stayed open {:?}",
        started.elapsed()
    );
    still_serving(&app).await;
}
