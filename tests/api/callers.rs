//! Callers who sign or come from known addresses, XML in and out, and secrets that
//! never reach the store, the logs or the answers.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, write_flow};
use crate::stub::{Reply, Stub};

const SECRET: &[u8] = b"whsec-test-secret";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    flowgate::auth::signature::hex(&flowgate::auth::signature::compute(
        flowgate::domain::HmacAlgorithm::Sha256,
        SECRET,
        parts,
    ))
}

const ECHO: &str = "steps:\n  - respond: { body: '{auth: .auth, body: .body}' }\n";

async fn signed_app() -> TestApp {
    TestApp::spawn_with(
        |flows| {
            for (name, hmac) in [
                ("Duro", "preset: duro, timestamp_header: X-Duro-Timestamp"),
                (
                    "Github",
                    "preset: github, timestamp_header: X-Signature-Timestamp",
                ),
                ("Stripe", "preset: stripe"),
                (
                    "Custom",
                    "header: X-Sig, algorithm: sha512, encoding: base64",
                ),
            ] {
                write_flow(
                    flows,
                    &format!("hooks/{name}.yaml"),
                    &format!(
                        "auth:\n  hmac: {{ {hmac}, secret: \"{}\" }}\n{ECHO}",
                        std::str::from_utf8(SECRET).unwrap()
                    ),
                );
            }
        },
        |_| {},
    )
    .await
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, String)], body: &str) -> StatusCode {
    let mut r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_signature_preset_accepts_valid_and_refuses_tampered_and_replayed() {
    let app = signed_app().await;
    let body = r#"{"event":"ITEM_UPDATE","id":"A-100"}"#;
    let tampered = r#"{"event":"ITEM_UPDATE","id":"A-999"}"#;
    let (fresh, stale) = (now(), now() - 3600);

    for (path, sig_header, ts_header) in [
        ("/hooks/Duro", "x-duro-signature", "x-duro-timestamp"),
        (
            "/hooks/Github",
            "x-hub-signature-256",
            "x-signature-timestamp",
        ),
    ] {
        let sign = |ts: i64| {
            format!(
                "sha256={}",
                sha256_hex(&[ts.to_string().as_bytes(), b".", body.as_bytes()])
            )
        };
        let ok = [(sig_header, sign(fresh)), (ts_header, fresh.to_string())];
        assert_eq!(
            post(&app, path, &ok, body).await,
            StatusCode::OK,
            "{path} valid"
        );
        assert_eq!(
            post(&app, path, &ok, tampered).await,
            StatusCode::UNAUTHORIZED,
            "{path} tampered"
        );
        let replay = [(sig_header, sign(stale)), (ts_header, stale.to_string())];
        assert_eq!(
            post(&app, path, &replay, body).await,
            StatusCode::UNAUTHORIZED,
            "{path} replayed"
        );
        assert_eq!(
            post(&app, path, &[], body).await,
            StatusCode::UNAUTHORIZED,
            "{path} unsigned"
        );
    }

    let stripe = |t: i64, b: &str| {
        format!(
            "t={t},v1={}",
            sha256_hex(&[t.to_string().as_bytes(), b".", b.as_bytes()])
        )
    };
    let res = app
        .client
        .post(app.url("/hooks/Stripe"))
        .header("stripe-signature", stripe(fresh, body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(
        doc["auth"],
        json!({"method": "hmac", "header": "stripe-signature"})
    );
    assert_eq!(doc["body"]["id"], "A-100");
    assert_eq!(
        post(
            &app,
            "/hooks/Stripe",
            &[("stripe-signature", stripe(fresh, body))],
            tampered
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(
            &app,
            "/hooks/Stripe",
            &[("stripe-signature", stripe(stale, body))],
            body
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD.encode(flowgate::auth::signature::compute(
        flowgate::domain::HmacAlgorithm::Sha512,
        SECRET,
        &[body.as_bytes()],
    ));
    assert_eq!(
        post(&app, "/hooks/Custom", &[("x-sig", sig.clone())], body).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/hooks/Custom", &[("x-sig", sig)], tampered).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_url_of_a_signed_trigger_takes_a_signature_of_its_path() {
    let app = signed_app().await;
    let body = r#"{"event":"ITEM_UPDATE","id":"A-100"}"#;
    let ts = now().to_string();
    let sign = |bytes: &[u8]| format!("sha256={}", sha256_hex(&[ts.as_bytes(), b".", bytes]));
    let res = app
        .client
        .post(app.url("/hooks/Duro"))
        .header("x-duro-signature", sign(body.as_bytes()))
        .header("x-duro-timestamp", ts.clone())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let path = format!("/hooks/Duro/messages/{id}");
    let get = |sig: String| {
        app.client
            .get(app.url(&path))
            .header("x-duro-signature", sig)
            .header("x-duro-timestamp", ts.clone())
            .send()
    };

    let for_url = |p: &str| sign(format!("flowgate:status-url:{p}").as_bytes());

    // Signed path: the message's status (the sync execution is recorded just after).
    let mut status = StatusCode::NOT_FOUND;
    for _ in 0..100 {
        status = get(for_url(&path)).await.unwrap().status();
        if status != StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::OK);

    // A signature of the empty body, of the bare path (a body's signature), or
    // of another message's status URL opens nothing.
    for sig in [
        sign(b""),
        sign(path.as_bytes()),
        for_url("/hooks/Duro/messages/other"),
    ] {
        let res = get(sig).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()["www-authenticate"],
            "Signature realm=\"flowgate\", header=\"x-duro-signature\""
        );
    }

    // The status URL's signature does not sign a body, not even the bytes it covers.
    let covered = format!("flowgate:status-url:{path}");
    let res = app
        .client
        .post(app.url("/hooks/Duro"))
        .header("x-duro-signature", for_url(&path))
        .header("x-duro-timestamp", ts.clone())
        .body(covered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_users_and_ip_rules_with_and_without_trusted_proxies() {
    let hash = flowgate::auth::keys::hash("p4ssw0rd").unwrap();
    let tenant = format!("basic_users:\n  partner: \"{hash}\"\n");
    let flows = move |trusted: bool| {
        let tenant = tenant.clone();
        move |flows: &std::path::Path| {
            write_flow(flows, "net/_tenant.yaml", &tenant);
            write_flow(
                flows,
                "net/Basic.yaml",
                &format!("auth: {{ basic: [partner] }}\n{ECHO}"),
            );
            write_flow(
                flows,
                "net/Office.yaml",
                &format!("auth: {{ none: true, allow_ips: [10.1.0.0/16] }}\n{ECHO}"),
            );
            write_flow(
                flows,
                "net/Local.yaml",
                &format!("auth: {{ none: true, allow_ips: [127.0.0.1] }}\n{ECHO}"),
            );
            let _ = trusted;
        }
    };
    let app = TestApp::spawn_with(flows(false), |_| {}).await;
    let basic = |u: &str, p: &str| {
        app.client
            .post(app.url("/net/Basic"))
            .basic_auth(u, Some(p))
            .body("{}")
    };
    let res = basic("partner", "p4ssw0rd").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["auth"],
        json!({"method": "basic", "user": "partner"})
    );
    assert_eq!(
        basic("partner", "wrong").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        basic("other", "p4ssw0rd").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let res = app
        .client
        .post(app.url("/net/Basic"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Basic realm=\"flowgate\", charset=\"UTF-8\""
    );

    let xff = |v: &str| vec![("x-forwarded-for", v.to_owned())];
    // Without trusted proxies the peer (127.0.0.1) counts; X-Forwarded-For is ignored.
    assert_eq!(post(&app, "/net/Local", &[], "{}").await, StatusCode::OK);
    assert_eq!(
        post(&app, "/net/Office", &xff("10.1.2.3"), "{}").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&app, "/net/Local", &xff("10.1.2.3"), "{}").await,
        StatusCode::OK
    );

    let app = TestApp::spawn_with(flows(true), |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    assert_eq!(
        post(&app, "/net/Office", &xff("10.1.2.3"), "{}").await,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/net/Office", &xff("10.1.2.3, 127.0.0.5"), "{}").await,
        StatusCode::OK
    );
    assert_eq!(
        post(&app, "/net/Office", &xff("192.168.1.1"), "{}").await,
        StatusCode::FORBIDDEN
    );
    // A forged hop on the left does not help: the rightmost untrusted one counts.
    assert_eq!(
        post(&app, "/net/Office", &xff("10.1.2.3, 192.168.1.1"), "{}").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&app, "/net/Local", &xff("10.1.2.3"), "{}").await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_in_and_out() {
    let flow = r##"auth: { none: true }
steps:
  - respond:
      body: '{id: .body.order["@id"], items: [.body.order.item[] | .["#text"]], raw: (.raw_body | length > 0)}'
      xml: '{receipt: {"@id": .body.order["@id"], count: (.body.order.item | length)}}'
"##;
    let app = TestApp::spawn_with(move |f| write_flow(f, "x/Order.yaml", flow), |_| {}).await;
    let xml = r#"<?xml version="1.0"?><order id="7"><item sku="A">Apple</item><item sku="B">Pear</item></order>"#;
    let send = |accept: &str| {
        app.client
            .post(app.url("/x/Order"))
            .header("content-type", "application/xml")
            .header("accept", accept)
            .body(xml)
            .send()
    };
    let res = send("application/json").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"id": "7", "items": ["Apple", "Pear"], "raw": true})
    );
    let res = send("application/xml, application/json;q=0.5")
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "application/xml; charset=utf-8"
    );
    assert_eq!(
        res.text().await.unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><receipt id="7"><count>2</count></receipt>"#
    );
    let res = app
        .client
        .post(app.url("/x/Order"))
        .header("content-type", "text/xml")
        .body("<order><item>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_store_the_logs_or_the_answers() {
    let token = "tok-7f3a9c1e5b";
    let password = "pw-e4d2b8a6c0";
    let stub = Stub::start(Reply::echo(200)).await;
    stub.then(Reply::echo(200)).then(Reply::echo(500));
    let tenant = format!(
        "connections:\n  echo:\n    http:\n      base_url: \"{}\"\n      headers: {{ authorization: \"Bearer ${{FG_TEST_TOKEN:-{token}}}\" }}\n      basic: {{ username: u, password: \"{password}\" }}\n",
        stub.url()
    );
    let flow = "auth: { none: true }\nsteps:\n  - name: call\n    http: { connection: echo, url: /e, into: r }\n  - log: .vars.r.body\n  - respond: { body: .vars.r }\n";
    let failing =
        "auth: { none: true }\nsteps:\n  - name: call\n    http: { connection: echo, url: /e }\n";
    let (t2, f1, f2) = (tenant.clone(), flow.to_owned(), failing.to_owned());
    let app = TestApp::spawn_with(
        move |flows| {
            write_flow(flows, "s/_tenant.yaml", &t2);
            write_flow(flows, "s/Echo.yaml", &f1);
            write_flow(flows, "s/Fail.yaml", &f2);
        },
        |_| {},
    )
    .await;
    let res = app.post_json("/s/Echo", None, &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let echoed = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let text = res.text().await.unwrap();
    // The far side did get the credentials; the flow only ever sees them redacted.
    assert!(stub.recorded()[0].header("authorization").is_some());
    assert!(text.contains("[redacted]"), "{text}");
    let res = app.post_json("/s/Fail", None, &json!({})).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let failed = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    let answer = res.text().await.unwrap();
    // Both executions are recorded (behind their answers) before the store is read.
    for id in [echoed, failed] {
        let id = id.parse().unwrap();
        assert!(
            crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
                app.queue
                    .message(id)
                    .await
                    .unwrap()
                    .is_some_and(|m| m.head.status.is_final())
            })
            .await,
            "message {id} was never recorded"
        );
    }
    app.queue.store().flush().await.unwrap();

    let basic_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("u:{password}"))
    };
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            stored.extend(std::fs::read(&p).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored).into_owned();
    assert!(
        stored.contains("[redacted]"),
        "the store holds the redacted echo"
    );
    for secret in [token, password, basic_b64.as_str()] {
        assert!(!text.contains(secret), "answer holds {secret}");
        assert!(!answer.contains(secret), "error answer holds {secret}");
        assert!(!stored.contains(secret), "the store holds {secret}");
    }

    // Logs and the printed trace of a local run, with the token from the environment.
    let flows = app.flows_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["run", "s/Echo", "--flows"])
        .arg(&flows)
        .env("FG_TEST_TOKEN", "env-token-91b2c3")
        .env("FLOWGATE_LOG", "debug")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("[redacted]"), "{all}");
    for secret in ["env-token-91b2c3", password, basic_b64.as_str()] {
        assert!(
            !all.contains(secret),
            "the run's output holds {secret}:\n{all}"
        );
    }
}
