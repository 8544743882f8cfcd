//! Subscriptions made through the admin API, against a receiver the test starts:
//! create, list, change, delete, the secret shown once and rotated, a ping when
//! switched on, `test` answering its attempt (2xx, and a refused port read as
//! `connect`), the subscription's own retry schedule, message events reaching
//! API subscriptions through their `triggers` filter, metrics, tenant isolation,
//! `_tenant.yaml` subscriptions read-only, fields checked with their names — on
//! SQLite and on PostgreSQL, where a second node sees changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{ACME_TOKEN, GLOBAL_TOKEN, admin_app_with};
use crate::helpers::{TestApp, eventually, write_flow};

/// What the receiver got: (path, headers, body).
pub type Got = Arc<Mutex<Vec<(String, Vec<(String, String)>, String)>>>;

/// A receiver on port 0 answering 200 to everything.
pub async fn receiver() -> (String, Got) {
    let got: Got = Arc::default();
    let data = web::Data::new(got.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |req: HttpRequest, body: String, got: web::Data<Got>| async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                got.lock()
                    .unwrap()
                    .push((req.path().to_owned(), headers, body));
                HttpResponse::Ok().body("got it")
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

/// A loopback URL where nothing listens.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/gone")
}

/// The admin app (tenants acme and other; other's `audit` subscription is in
/// its `_tenant.yaml`), http receivers allowed, a long server schedule, and a
/// trigger of acme that rejects every message.
async fn app(store: Option<String>) -> TestApp {
    admin_app_with(
        |f| {
            write_flow(
                f,
                "acme/Rejects.yaml",
                "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - fail: { status: 422, message: '\"no\"' }\n",
            );
        },
        move |s| {
            s.subscriptions_allow_http = true;
            s.subscriptions_poll = Duration::from_millis(20);
            s.subscriptions_retry = vec![Duration::from_secs(3600)];
            if let Some(url) = store {
                s.store = url;
            }
        },
    )
    .await
}

/// Whether the `X-Flowgate-Signature` of a delivery is made with `secret`.
pub fn verify(secret: &str, headers: &[(String, String)], body: &str) -> bool {
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{body}", h("x-flowgate-timestamp")).as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    h("x-flowgate-signature") == format!("sha256={hex}")
}

/// The deliveries of acme's subscription `name` once `ready` holds for them.
async fn log_of(app: &TestApp, name: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/deliveries?tenant=acme&subscription={name}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = app.admin("GET", &path, GLOBAL_TOKEN, None).await;
        let list = page["deliveries"].as_array().cloned().unwrap_or_default();
        if ready(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}'s delivery log: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole life of an API subscription on `app`.
async fn lifecycle(app: &TestApp) {
    let (base, got) = receiver().await;
    let body = json!({
        "tenant": "acme", "name": "crm", "description": "the CRM",
        "url": format!("{base}/hook"), "events": ["message.rejected", "order.*"],
        "triggers": ["Rejects"], "auth": {"type": "basic", "username": "u", "password": "pw"},
        "include": "ids", "retry": ["1h"],
    });
    let (code, made) = app
        .admin("POST", "/subscriptions", ACME_TOKEN, Some(body.clone()))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(made["enabled"], false);
    assert_eq!(made["source"], "api");
    assert_eq!(made["auth"], json!({"type": "basic", "username": "u"}));
    assert_eq!(made["retry"], json!(["1h"]));
    assert!(!made.to_string().contains("\"pw\""), "no password: {made}");
    let one = format!(
        "/subscriptions/{}",
        made["subscription_id"].as_str().unwrap()
    );

    // The same name again, here or in a file, is a conflict.
    let (code, e) = app
        .admin("POST", "/subscriptions", ACME_TOKEN, Some(body))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(e["errors"][0]["code"], "subscription_exists");

    // Listed, and shown, without the secret.
    let (_, list) = app
        .admin("GET", "/subscriptions?tenant=acme", ACME_TOKEN, None)
        .await;
    assert_eq!(list["subscriptions"][0]["name"], "crm", "{list}");
    let (code, shown) = app.admin("GET", &one, ACME_TOKEN, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(shown.get("secret").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&secret));

    // Switched on: a ping, signed with the secret, in the log.
    let (code, on) = app
        .admin("PATCH", &one, ACME_TOKEN, Some(json!({"enabled": true})))
        .await;
    assert_eq!(code, StatusCode::OK, "{on}");
    assert_eq!(on["description"], "the CRM", "unchanged fields stay");
    let pings = log_of(app, "crm", |d| {
        d.iter()
            .any(|d| d["event"] == "ping" && d["status"] == "succeeded")
    })
    .await;
    let attempt = &pings[0]["attempts"][0];
    assert_eq!(attempt["url"], format!("{base}/hook"));
    assert_eq!(attempt["status"], 200);
    assert!(attempt["error_kind"].is_null());
    assert!(attempt["duration_ms"].as_f64().unwrap() >= 0.0);
    {
        let got = got.lock().unwrap();
        let (_, headers, sent) = got.last().unwrap();
        let ping: Value = serde_json::from_str(sent).unwrap();
        assert_eq!(ping["event"], "ping");
        assert_eq!(ping["subscription"], "crm");
        assert!(verify(&secret, headers, sent), "signed with the secret");
    }

    // Events of the trigger it names reach it; `message.*` of others would not.
    let id = app.post_async("/acme/Rejects", None, json!({})).await;
    let d = log_of(app, "crm", |d| {
        d.iter().any(|d| d["event"] == "message.rejected")
    })
    .await;
    let rejected = d.iter().find(|d| d["event"] == "message.rejected").unwrap();
    assert_eq!(rejected["message_id"], id.as_str());

    // A new secret, answered once; the test ping is signed with it.
    let (code, rotated) = app
        .admin("POST", &format!("{one}/rotate-secret"), ACME_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let (code, tested) = app
        .admin("POST", &format!("{one}/test"), ACME_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], true);
    assert_eq!(tested["status"], 200);
    assert!(tested["error_kind"].is_null());
    {
        let got = got.lock().unwrap();
        let (_, headers, sent) = got.last().unwrap();
        assert!(
            verify(&new_secret, headers, sent),
            "signed with the new one"
        );
        assert!(!verify(&secret, headers, sent));
    }

    // The name stays: its deliveries are filed under it.
    let (code, refused) = app
        .admin("PATCH", &one, ACME_TOKEN, Some(json!({"name": "crm2"})))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("`name`"),
        "{refused}"
    );
    let same = json!({"name": "crm"});
    assert_eq!(
        app.admin("PATCH", &one, ACME_TOKEN, Some(same)).await.0,
        StatusCode::OK
    );

    // A refused port reads as `connect`; its ping waits the subscription's hour.
    let (code, _) = app
        .admin(
            "PATCH",
            &one,
            ACME_TOKEN,
            Some(json!({"url": refused_url()})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (_, tested) = app
        .admin("POST", &format!("{one}/test"), ACME_TOKEN, None)
        .await;
    assert_eq!(tested["ok"], false, "{tested}");
    assert_eq!(tested["error_kind"], "connect", "{tested}");
    assert!(tested["status"].is_null());
    let msg = tested["error"].as_str().unwrap();
    assert!(msg.contains("refused the connection"), "{msg}");

    // Off and on again: the ping fails and waits the subscription's `retry`.
    for on in [false, true] {
        let change = json!({"enabled": on});
        assert_eq!(
            app.admin("PATCH", &one, ACME_TOKEN, Some(change)).await.0,
            StatusCode::OK
        );
    }
    let d = log_of(app, "crm", |d| {
        d.first().is_some_and(|d| {
            d["event"] == "ping" && d["attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
    })
    .await;
    let (last, at) = (&d[0], &d[0]["attempts"][0]);
    assert_eq!(last["status"], "pending");
    assert_eq!(at["error_kind"], "connect");
    let micros = |v: &Value| {
        let t = time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        t.unix_timestamp()
    };
    let wait = micros(&last["next_attempt_at"]) - micros(&at["at"]);
    assert!(
        (3590..=3610).contains(&wait),
        "waits the subscription's 1h: {wait}s"
    );

    // Deleted: gone from the API.
    let (code, _) = app.admin("DELETE", &one, ACME_TOKEN, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        app.admin("GET", &one, ACME_TOKEN, None).await.0,
        StatusCode::NOT_FOUND
    );
}

/// `_tenant.yaml`'s subscriptions are listed but not changed; another
/// tenant's are not seen by a scoped token; fields are checked by name.
async fn read_only_isolated_and_checked(app: &TestApp) {
    let (_, all) = app.admin("GET", "/subscriptions", GLOBAL_TOKEN, None).await;
    let audit = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "audit")
        .cloned()
        .unwrap();
    assert_eq!(audit["source"], "file");
    assert_eq!(audit["tenant"], "other");
    let theirs = format!(
        "/subscriptions/{}",
        audit["subscription_id"].as_str().unwrap()
    );
    for (method, path) in [
        ("PATCH", theirs.clone()),
        ("DELETE", theirs.clone()),
        ("POST", format!("{theirs}/rotate-secret")),
    ] {
        let (code, e) = app
            .admin(method, &path, GLOBAL_TOKEN, Some(json!({"enabled": false})))
            .await;
        assert_eq!(code, StatusCode::CONFLICT, "{method} {path}");
        assert_eq!(e["errors"][0]["code"], "subscription_in_file");
    }

    // acme's token: other's subscriptions are not there.
    let (_, mine) = app.admin("GET", "/subscriptions", ACME_TOKEN, None).await;
    assert!(!mine.to_string().contains("\"other\""), "{mine}");
    for (method, path) in [
        ("GET", theirs.clone()),
        ("PATCH", theirs.clone()),
        ("POST", format!("{theirs}/test")),
        ("GET", "/subscriptions?tenant=other".to_owned()),
    ] {
        let (code, _) = app.admin(method, &path, ACME_TOKEN, Some(json!({}))).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let in_other =
        json!({"tenant": "other", "name": "x", "url": "https://example.com/", "events": ["ping"]});
    let (code, _) = app
        .admin("POST", "/subscriptions", ACME_TOKEN, Some(in_other))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Each mistake is a 400 that names its field.
    let base = json!({"tenant": "acme", "name": "x", "url": "https://example.com/", "events": ["message.failed"]});
    for (field, value) in [
        ("name", json!("no spaces")),
        ("url", json!("ftp://example.com/")),
        ("events", json!(["message.exploded"])),
        ("events", json!([])),
        ("retry", json!(["soon"])),
        ("include", json!("everything")),
        ("triggers", json!(["no such!"])),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (code, e) = app
            .admin("POST", "/subscriptions", ACME_TOKEN, Some(body))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{field}: {e}");
        let said = e["errors"][0]["message"].as_str().unwrap();
        assert!(said.starts_with(&format!("`{field}`")), "{said}");
    }
}

/// The delivery series of acme's `crm` subscription are on `/_metrics`.
async fn metrics_count_attempts(app: &TestApp) {
    let text = app.get("/_metrics", None).await.text().await.unwrap();
    let ok =
        "flowgate_deliveries_total{tenant=\"acme\",subscription=\"crm\",outcome=\"succeeded\"}";
    let refused =
        "flowgate_deliveries_total{tenant=\"acme\",subscription=\"crm\",outcome=\"connect\"}";
    for series in [ok, refused] {
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series}"))
            .trim()
            .parse()
            .unwrap();
        assert!(n >= 1, "{series} {n}");
    }
    assert!(text.contains(
        "flowgate_delivery_duration_seconds_count{tenant=\"acme\",subscription=\"crm\"}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_subscriptions_on_sqlite() {
    let app = app(None).await;
    lifecycle(&app).await;
    read_only_isolated_and_checked(&app).await;
    metrics_count_attempts(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_subscriptions_on_postgres_and_a_second_node_sees_them() {
    let Some(pg) = crate::pg::schema("managed_subs").await else {
        return;
    };
    let a = app(Some(pg.url.clone())).await;
    let b = app(Some(pg.url.clone())).await;
    lifecycle(&a).await;
    read_only_isolated_and_checked(&a).await;

    // Made on a, seen by b within a second or so, and gone from b when a deletes it.
    let body = json!({"tenant": "acme", "name": "seen", "url": "https://example.com/", "events": ["lane.*"]});
    let (code, made) = a
        .admin("POST", "/subscriptions", GLOBAL_TOKEN, Some(body))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    let one = format!(
        "/subscriptions/{}",
        made["subscription_id"].as_str().unwrap()
    );
    let seen = eventually(Duration::from_secs(5), || async {
        b.admin("GET", &one, GLOBAL_TOKEN, None).await.0 == StatusCode::OK
    })
    .await;
    assert!(seen, "b sees what a made");
    assert_eq!(
        a.admin("DELETE", &one, GLOBAL_TOKEN, None).await.0,
        StatusCode::OK
    );
    let gone = eventually(Duration::from_secs(5), || async {
        b.admin("GET", &one, GLOBAL_TOKEN, None).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone, "b sees it deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receivers_are_refused_without_the_setting() {
    let app = admin_app_with(|_| {}, |_| {}).await;
    let body = json!({"tenant": "acme", "name": "plain", "url": "http://example.com/", "events": ["message.failed"]});
    let (code, e) = app
        .admin("POST", "/subscriptions", GLOBAL_TOKEN, Some(body))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let said = e["errors"][0]["message"].as_str().unwrap();
    assert!(said.starts_with("`url`"), "{said}");
    assert!(said.contains("subscriptions_allow_http"), "{said}");
}

#[test]
fn tenant_file_subscriptions_take_the_new_fields_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/_tenant.yaml",
        "subscriptions:\n  - name: ok\n    description: the CRM\n    url: https://example.com/\n    events: [order.created, message.*]\n    triggers: [Orders]\n    include: full\n    retry: [5s, 2m]\n  - name: bad\n    url: https://example.com/\n    events: [lane.sideways]\n    retry: [5s, soon]\n    include: all\n",
    );
    let report = flowgate::flow::check_dir(dir.path());
    let text: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0].contains("_tenant.yaml:11:14") && text[0].contains("unknown event `lane.sideways`"),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("_tenant.yaml:12:17") && t.contains("retry `soon`")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("_tenant.yaml:13:14") && t.contains("include `all`")),
        "{text:#?}"
    );
}

/// A tenant makes at most `MAX_API_SUBSCRIPTIONS` subscriptions through the API (every
/// matching event goes to each); another tenant is not held back by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_makes_at_most_a_hundred_subscriptions() {
    let app = app(None).await;
    let max = flowgate::domain::MAX_API_SUBSCRIPTIONS;
    let make = |tenant: &str, n: usize| json!({"tenant": tenant, "name": format!("s{n}"), "url": "https://example.com/", "events": ["lane.*"]});
    for n in 0..max {
        let (code, body) = app
            .admin(
                "POST",
                "/subscriptions",
                GLOBAL_TOKEN,
                Some(make("acme", n)),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{n}: {body}");
    }
    let (code, body) = app
        .admin(
            "POST",
            "/subscriptions",
            GLOBAL_TOKEN,
            Some(make("acme", max)),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["errors"][0]["code"], "too_many_subscriptions",
        "{body}"
    );
    let (code, body) = app
        .admin(
            "POST",
            "/subscriptions",
            GLOBAL_TOKEN,
            Some(make("other", 0)),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "another tenant: {body}");
}

/// With `subscriptions_deny_private` (the default), a receiver written as a
/// non-public address is refused when it is given, not at every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_receivers_are_refused_when_given() {
    let app = admin_app_with(|_| {}, |s| s.subscriptions_deny_private = true).await;
    let made = |url: &str| json!({"tenant": "acme", "name": "inside", "url": url, "events": ["message.failed"]});
    for url in [
        "https://127.0.0.1:9/",
        "https://10.1.2.3/hook",
        "https://[::1]/",
        "https://localhost:8443/",
    ] {
        let (code, e) = app
            .admin("POST", "/subscriptions", GLOBAL_TOKEN, Some(made(url)))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{url}: {e}");
        let said = e["errors"][0]["message"].as_str().unwrap();
        assert!(said.starts_with("`url`"), "{said}");
        assert!(said.contains("subscriptions_deny_private"), "{said}");
    }
    let (code, e) = app
        .admin(
            "POST",
            "/subscriptions",
            GLOBAL_TOKEN,
            Some(made("https://8.8.8.8/hook")),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "a public address: {e}");
    let one = format!("/subscriptions/{}", e["subscription_id"].as_str().unwrap());
    let change = json!({"url": "https://192.168.1.1/"});
    let (code, e) = app.admin("PATCH", &one, GLOBAL_TOKEN, Some(change)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
}
