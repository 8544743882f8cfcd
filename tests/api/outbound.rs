//! Where flows and event subscriptions may send requests: URLs built from caller
//! data stay under their connection's base URL, redirects are followed only
//! within the same policy (and carry no credentials to another origin), and
//! private addresses are refused for event webhooks by default.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, admin_tokens};
use crate::helpers::{TestApp, write_flow};
use crate::stub::{Reply, Stub};

const TOKEN: &str = "Bearer crm-secret-token";

/// Tenant `io` with connection `crm` at `<base>/api` (a credential header and
/// Basic auth) and trigger `Get`, which calls `url` (a template over
/// `.params.p`) on it and answers what came back.
async fn io_app(
    base: &str,
    url: &str,
    settings: impl FnOnce(&mut flowgate::config::Settings),
) -> TestApp {
    let tenant = format!(
        "connections:\n  crm:\n    http:\n      base_url: \"{base}/api\"\n      headers: {{ authorization: \"{TOKEN}\", x-api-key: crm-key }}\n      basic: {{ username: svc, password: pw }}\n"
    );
    let flow = format!(
        "methods: [GET, POST]\nauth: {{ none: true }}\nparams:\n  p: {{ type: string, default: x }}\nsteps:\n  - name: call\n    http: {{ connection: crm, method: POST, url: \"{url}\", body: '{{n: 1}}', headers: {{ x-step: s }}, into: r }}\n  - respond: {{ body: '{{status: .vars.r.status, body: .vars.r.body}}' }}\n"
    );
    TestApp::spawn_with(
        move |f| {
            write_flow(f, "io/_tenant.yaml", &tenant);
            write_flow(f, "io/Get.yaml", &flow);
        },
        settings,
    )
    .await
}

/// The error of the `call` step of the message answered by `res`.
async fn step_error(app: &TestApp, res: reqwest::Response) -> String {
    let url = res.url().to_string();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{url}");
    let id = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    for _ in 0..100 {
        if let Some(view) = app.queue.message(id.parse().unwrap()).await.unwrap() {
            return view.trace[0]["error"].as_str().unwrap_or("").to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("message {id} was not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interpolated_paths_cannot_leave_the_connections_base_path() {
    let stub = Stub::start(Reply::json(200, json!({"ok": true}))).await;
    let encoded = io_app(&stub.url(), "/items/{{ .params.p | @uri }}", |_| {}).await;
    let raw = io_app(&stub.url(), "/items/{{ .params.p }}", |_| {}).await;
    let whole = io_app(&stub.url(), "{{ .params.p }}", |_| {}).await;
    let res = encoded.get("/io/Get?p=A-1", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(stub.recorded()[0].path, "/api/items/A-1");

    for (app, p) in [
        (&encoded, ".."),
        (&encoded, "."),
        (&raw, "%2e%2e"),
        (&raw, "%2E."),
        (&raw, "../../admin"),
        (&raw, "..%5c..%5cadmin"),
        (&raw, "..\\admin"),
        (&raw, "a/../../b"),
    ] {
        let query = serde_urlencoded::to_string([("p", p)]).unwrap();
        let err = step_error(app, app.get(&format!("/io/Get?{query}"), None).await).await;
        assert!(err.contains("path segment"), "{p}: {err}");
    }
    // A whole URL from the caller: only under the base URL.
    for p in [
        "https://evil.example/steal",
        &format!("{}/other", stub.url()),
        &format!("{}/api-other/x", stub.url()),
    ] {
        let query = serde_urlencoded::to_string([("p", p)]).unwrap();
        let err = step_error(&whole, whole.get(&format!("/io/Get?{query}"), None).await).await;
        assert!(err.contains("outside the base URL"), "{p}: {err}");
    }
    let query = serde_urlencoded::to_string([("p", format!("{}/api/fine", stub.url()))]).unwrap();
    let res = whole.get(&format!("/io/Get?{query}"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Nothing refused was sent, with the credentials or without.
    let paths: Vec<String> = stub.recorded().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/api/items/A-1", "/api/fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_keep_credentials_home_and_follow_the_same_policy() {
    let elsewhere = Stub::start(Reply::json(200, json!({"elsewhere": true}))).await;
    let home = Stub::start(Reply::json(200, json!({"home": true}))).await;
    // Same origin, then another origin (another port), by 307 (method and body kept).
    home.then(Reply::json(302, Value::Null).header("location", "/api/moved"))
        .then(
            Reply::json(307, Value::Null)
                .header("location", &format!("{}/landing", elsewhere.url())),
        );
    let app = io_app(&home.url(), "/start", |_| {}).await;
    let res = app.get("/io/Get", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap()["body"],
        json!({"elsewhere": true})
    );
    let at_home = home.recorded();
    assert_eq!(at_home.len(), 2);
    assert_eq!(at_home[0].method, "POST");
    // 302 after a POST goes on as a GET, without the body, credentials kept at home.
    assert_eq!(
        (at_home[1].method.as_str(), at_home[1].path.as_str()),
        ("GET", "/api/moved")
    );
    assert!(at_home[1].body.is_empty());
    for r in &at_home {
        assert_eq!(r.header("x-api-key"), Some("crm-key"));
        assert!(r.header("authorization").is_some());
    }
    let away = elsewhere.recorded();
    assert_eq!(away.len(), 1);
    assert_eq!(away[0].method, "GET");
    assert_eq!(away[0].header("authorization"), None);
    assert_eq!(away[0].header("x-api-key"), None);
    // The step's own, non-credential header goes on.
    assert_eq!(away[0].header("x-step"), Some("s"));

    // Under an allow-list, a redirect to a host not on it is refused, unsent.
    let listed = Stub::start(Reply::json(200, json!({}))).await;
    listed.then(Reply::json(301, Value::Null).header(
        "location",
        &format!("http://localhost:{}/x", elsewhere.addr.port()),
    ));
    let app = io_app(&listed.url(), "/start", |s| {
        s.outbound_allow_hosts = vec!["127.0.0.1".into()]
    })
    .await;
    let err = step_error(&app, app.get("/io/Get", None).await).await;
    assert!(
        err.contains("a redirect to") && err.contains("allow-list"),
        "{err}"
    );
    assert_eq!(elsewhere.recorded().len(), 1);

    // Endless redirects end.
    let looping = Stub::start(Reply::json(302, Value::Null).header("location", "/api/again")).await;
    let app = io_app(&looping.url(), "/start", |_| {}).await;
    let err = step_error(&app, app.get("/io/Get", None).await).await;
    assert!(err.contains("more than 5 redirects"), "{err}");
    assert_eq!(looping.recorded().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_steps_refuse_private_addresses_in_every_spelling() {
    let stub = Stub::start(Reply::json(200, json!({}))).await;
    let port = stub.addr.port();
    let flow = |url: String| {
        format!(
            "methods: [GET]\nauth: {{ none: true }}\nsteps:\n  - name: call\n    http: {{ url: \"{url}\" }}\n"
        )
    };
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::7f00:1]:{port}/"),
        format!("http://[64:ff9b::7f00:1]:{port}/"),
        format!("http://[2002:7f00:1::]:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://2130706433:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ];
    let flows: Vec<String> = urls.iter().map(|u| flow(u.clone())).collect();
    let app = TestApp::spawn_with(
        move |f| {
            for (i, text) in flows.iter().enumerate() {
                write_flow(f, &format!("io/Call{i}.yaml"), text);
            }
        },
        |s| s.outbound_deny_private = true,
    )
    .await;
    for (i, url) in urls.iter().enumerate() {
        let res = app.get(&format!("/io/Call{i}"), None).await;
        let err = step_error(&app, res).await;
        assert!(err.contains("private"), "{url}: {err}");
    }
    assert!(stub.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_webhooks_to_private_addresses_are_refused_by_default() {
    let stub = Stub::start(Reply::json(200, json!({"internal": "secret answer"}))).await;
    let port = stub.addr.port();
    let subscriptions: String = [
        format!("http://127.0.0.1:{port}/a"),
        format!("http://localhost:{port}/b"),
        format!("http://[::ffff:127.0.0.1]:{port}/c"),
    ]
    .iter()
    .enumerate()
    .map(|(i, u)| {
        format!("  - {{ name: s{i}, url: \"{u}\", events: [message.succeeded], enabled: true }}\n")
    })
    .collect();
    let tenant = format!("subscriptions:\n{subscriptions}");
    let deliveries = |deny: bool| {
        let tenant = tenant.clone();
        async move {
            let app = TestApp::spawn_with(
                move |f| {
                    write_flow(f, "ev/_tenant.yaml", &tenant);
                    write_flow(
                        f,
                        "ev/Hook.yaml",
                        "auth: { none: true }\nsteps:\n  - respond: { body: '1' }\n",
                    );
                },
                move |s| {
                    s.admin_tokens = admin_tokens();
                    s.subscriptions_allow_http = true;
                    s.subscriptions_deny_private = deny;
                    s.subscriptions_poll = Duration::from_millis(50);
                },
            )
            .await;
            assert_eq!(
                app.post_json("/ev/Hook", None, &json!({})).await.status(),
                200
            );
            for _ in 0..200 {
                let (_, list) = app
                    .admin("GET", "/deliveries?tenant=ev", GLOBAL_TOKEN, None)
                    .await;
                let all = list["deliveries"].as_array().cloned().unwrap_or_default();
                let tried = |d: &Value| d["attempts"].as_array().is_some_and(|a| !a.is_empty());
                if all.len() == 3 && all.iter().all(tried) {
                    let mut details = Vec::new();
                    for d in all {
                        let id = d["delivery_id"].as_str().unwrap();
                        let (_, detail) = app
                            .admin("GET", &format!("/deliveries/{id}"), GLOBAL_TOKEN, None)
                            .await;
                        details.push(detail);
                    }
                    return details;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the deliveries were not attempted");
        }
    };
    // The default: refused before anything is sent; the log shows why, and
    // nothing of the internal service.
    assert!(flowgate::config::Settings::default().subscriptions_deny_private);
    for d in deliveries(true).await {
        let attempt = &d["attempts"][0];
        assert_eq!(attempt["status"], Value::Null, "{d}");
        let error = attempt["error"].as_str().unwrap();
        assert!(error.contains("private"), "{error}");
        assert!(!d.to_string().contains("secret answer"), "{d}");
    }
    assert!(stub.recorded().is_empty());
    // Switched off (local receivers): delivered.
    for d in deliveries(false).await {
        assert_eq!(d["attempts"][0]["status"], 200, "{d}");
    }
    assert_eq!(stub.recorded().len(), 3);
}
