//! The admin API: the trigger table, the log history and its filters and paging,
//! message detail, replay / skip / unblock on ordered lanes, bulk replay, and
//! tenant isolation for scoped tokens.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ERP_KEY, TestApp, write_flow};

pub const GLOBAL_TOKEN: &str = "fg_admin_global_test";
pub const ACME_TOKEN: &str = "fg_admin_acme_test";
/// A global token of role `read`: it sees everything and changes nothing.
pub const READ_TOKEN: &str = "fg_admin_read_test";

/// Admin tokens for the settings: a global one and one for tenant acme (both
/// of role `operate`, the default), and a global `read` one.
pub fn admin_tokens() -> Vec<flowgate::config::AdminToken> {
    use flowgate::config::AdminRole;
    vec![
        flowgate::config::AdminToken {
            label: "ops".into(),
            hash: flowgate::auth::keys::hash(GLOBAL_TOKEN).unwrap(),
            tenants: None,
            role: AdminRole::default(),
        },
        flowgate::config::AdminToken {
            label: "acme-ops".into(),
            hash: flowgate::auth::keys::hash(ACME_TOKEN).unwrap(),
            tenants: Some(vec!["acme".into()]),
            role: AdminRole::Operate,
        },
        flowgate::config::AdminToken {
            label: "auditor".into(),
            hash: flowgate::auth::keys::hash(READ_TOKEN).unwrap(),
            tenants: None,
            role: AdminRole::Read,
        },
    ]
}

/// An ordered trigger that fails (no retries, the lane blocks) while
/// `.body.ok` is not true — until the flow is fixed.
pub const LANE_FLOW: &str = "description: broken\nauth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.lane, retry: [], on_exhausted: block }\nresponse: { mode: async }\nsteps:\n  - name: check\n    if: .body.ok != true\n    then: [ { fail: { status: 500, message: '\"not ok\"' } } ]\n  - respond: { body: '{done: .body.n}' }\n";
pub const LANE_FLOW_FIXED: &str = "description: fixed\nauth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.lane, retry: [], on_exhausted: block }\nresponse: { mode: async }\nsteps:\n  - respond: { body: '{done: .body.n}' }\n";

pub async fn admin_app() -> TestApp {
    admin_app_with(|_| {}, |_| {}).await
}

/// `admin_app` with more flow files and other settings.
pub async fn admin_app_with(
    flows: impl FnOnce(&std::path::Path),
    settings: impl FnOnce(&mut flowgate::config::Settings),
) -> TestApp {
    TestApp::spawn_with(
        |f| {
            flows(f);
            write_flow(f, "acme/Lanes.yaml", LANE_FLOW);
            // Its subscription makes deliveries (to nowhere: nothing listens on port 9).
            write_flow(
                f,
                "other/_tenant.yaml",
                "subscriptions:\n  - { name: audit, url: \"https://127.0.0.1:9/\", events: [message.succeeded], enabled: true }\n",
            );
            write_flow(
                f,
                "other/Secret.yaml",
                "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - set: { x: .body }\n",
            );
        },
        |s| {
            s.admin_tokens = admin_tokens();
            settings(s);
        },
    )
    .await
}

impl TestApp {
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = self.url(&format!("/_admin/api{path}"));
        let mut r = match method {
            "POST" => self.client.post(url),
            "PATCH" => self.client.patch(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.get(url),
        };
        r = r.bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            flowgate::domain::depth::parse_stored(&text).unwrap_or(Value::Null),
        )
    }

    pub async fn post_async(&self, path: &str, key: Option<&str>, body: Value) -> String {
        let res = self.post_json(path, key, &body).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        res.json::<Value>().await.unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Polls the admin detail until the message has `status`.
    pub async fn admin_wait(&self, id: &str, status: &str) -> Value {
        for _ in 0..500 {
            let (code, doc) = self
                .admin("GET", &format!("/messages/{id}"), GLOBAL_TOKEN, None)
                .await;
            if code == StatusCode::OK && doc["status"] == status {
                return doc;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("message {id} never reached {status}");
    }

    /// Writes the Lanes flow and waits until the server has loaded it.
    pub async fn set_lanes_flow(&self, text: &str) {
        write_flow(&self.flows_dir(), "acme/Lanes.yaml", text);
        let want = if text == LANE_FLOW_FIXED {
            "fixed"
        } else {
            "broken"
        };
        for _ in 0..500 {
            let (_, doc) = self.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
            let found = doc["triggers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["trigger"] == "Lanes" && t["description"] == want);
            if found {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the Lanes flow was not reloaded");
    }
}

/// Two customer records to `app`: one that succeeds, one rejected (no name).
pub async fn one_good_one_bad(app: &TestApp) -> (String, String) {
    let post = |body| app.post_async("/acme/CreateCustomerRecord", Some(ERP_KEY), body);
    let ok = post(json!({"name": "Ada"})).await;
    let bad = post(json!({"id": 7})).await;
    (ok, bad)
}

#[tokio::test]
async fn lists_triggers_messages_and_message_detail() {
    let app = admin_app().await;
    let (ok, bad) = one_good_one_bad(&app).await;
    app.admin_wait(&ok, "succeeded").await;
    app.admin_wait(&bad, "rejected").await;

    let (code, _) = app.admin("GET", "/triggers", "wrong", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(app.url("/_admin/api/triggers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let (code, doc) = app.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        !doc.to_string().contains("$argon2"),
        "hashes never leave the server"
    );
    let t = doc["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trigger"] == "CreateCustomerRecord")
        .unwrap();
    assert_eq!(t["url"], app.url("/acme/CreateCustomerRecord"));
    assert_eq!(t["methods"], json!(["POST"]));
    assert_eq!(t["auth"], json!({"api_keys": ["erp"]}));
    assert_eq!(t["mode"], "async");
    assert_eq!(t["enabled"], true);
    assert_eq!(t["ordered"], false);
    assert_eq!(t["counts"], json!({"succeeded": 1, "rejected": 1}));
    assert_eq!(t["load_error"], Value::Null);
    let lanes = doc["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["trigger"] == "Lanes")
        .unwrap();
    assert_eq!(lanes["ordering_key"], ".body.lane");

    let path = "/messages?tenant=acme&trigger=CreateCustomerRecord";
    let (_, page) = app.admin("GET", path, GLOBAL_TOKEN, None).await;
    let ids: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bad.as_str(), ok.as_str()], "newest first");
    let first = &page["messages"][0];
    assert_eq!(first["status"], "rejected");
    assert_eq!(
        first["response_status"], 422,
        "a rejection shows the code its caller got"
    );
    assert_eq!(first["attempts"], 1);
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(page["messages"][1]["response_status"], 201);
    // A line says why its message failed.
    assert!(
        first["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{first}"
    );
    assert_eq!(page["messages"][1]["error"], Value::Null);

    let (_, p1) = app
        .admin("GET", &format!("{path}&limit=1"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(p1["messages"][0]["message_id"], bad.as_str());
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app
        .admin(
            "GET",
            &format!("{path}&limit=1&cursor={cursor}"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(p2["messages"][0]["message_id"], ok.as_str());
    let (_, only) = app
        .admin(
            "GET",
            &format!("{path}&status=succeeded"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(only["messages"].as_array().unwrap().len(), 1);
    let (_, none) = app
        .admin(
            "GET",
            &format!("{path}&from=2099-01-01T00:00:00Z"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(none["messages"], json!([]));
    let (_, all) = app
        .admin(
            "GET",
            &format!("{path}&from=2000-01-01T00:00:00Z&to=2099-01-01T00:00:00Z"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);
    let (code, _) = app
        .admin("GET", &format!("{path}&status=bogus"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (_, global) = app.admin("GET", "/messages", GLOBAL_TOKEN, None).await;
    assert_eq!(global["messages"].as_array().unwrap().len(), 2);

    let (code, d) = app
        .admin("GET", &format!("/messages/{bad}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(d["input"]["body"], json!({"id": 7}));
    let trace = d["trace"].as_array().unwrap();
    assert!(
        trace
            .iter()
            .any(|s| s["name"] == "validate" && s["duration_us"].is_u64())
    );
    assert_eq!(d["attempts"][0]["outcome"], "failed");
    assert_eq!(d["attempts"][0]["error_code"], "rejected");
    assert_eq!(d["error"], "a customer needs a name");
    let (_, d) = app
        .admin("GET", &format!("/messages/{ok}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(d["response"]["status"], 201);
    assert_eq!(d["response"]["body"]["name"], "ada");

    let (code, _) = app
        .admin(
            "GET",
            "/messages/0190a0a0-0000-7000-8000-000000000000",
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let res = app
        .client
        .get(app.url("/_admin/api/openapi.json"))
        .send()
        .await
        .unwrap();
    let spec: Value = res.json().await.unwrap();
    for p in [
        "/triggers",
        "/messages",
        "/messages/{id}",
        "/messages/{id}/replay",
        "/messages/{id}/skip",
        "/messages/{id}/unblock",
        "/replay",
        "/lanes",
        "/tenants",
        "/deliveries",
        "/deliveries/{id}",
        "/deliveries/{id}/redeliver",
    ] {
        assert!(spec["paths"][p].is_object(), "openapi.json documents {p}");
    }
}

#[tokio::test]
async fn replay_skip_and_unblock_release_ordered_lanes() {
    release_ordered_lanes(&[&admin_app().await]).await;
}

/// Blocks ordered lanes and lets them go by replay, skip and unblock. Messages
/// are posted to the nodes in turn and every action is taken on the next node.
pub async fn release_ordered_lanes(nodes: &[&TestApp]) {
    let node = |i: usize| nodes[i % nodes.len()];
    let app = node(0);
    let other = node(1);
    let head = app
        .post_async("/acme/Lanes", None, json!({"lane": "a", "n": 1}))
        .await;
    let next = app
        .post_async(
            "/acme/Lanes",
            None,
            json!({"lane": "a", "n": 2, "ok": true}),
        )
        .await;
    app.admin_wait(&head, "dead").await;
    let (_, lanes) = app
        .admin("GET", "/lanes?tenant=acme", GLOBAL_TOKEN, None)
        .await;
    assert_eq!(lanes["lanes"][0]["message_id"], head.as_str());
    assert_eq!(lanes["lanes"][0]["lane"], "a");
    let (_, d) = app
        .admin("GET", &format!("/messages/{head}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(d["blocking"], true);
    // Every node counts the blocked lane (on a shared store, the database's lanes).
    let gauge = "flowgate_lanes_blocked{tenant=\"acme\",trigger=\"Lanes\"}";
    assert_eq!(other.metric(gauge).await, 1.0);
    let (_, n) = app
        .admin("GET", &format!("/messages/{next}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(n["status"], "queued", "the lane holds the next message");

    // Fix the flow, replay the head: the replay runs first, then the lane goes on.
    for n in nodes {
        n.set_lanes_flow(LANE_FLOW_FIXED).await;
    }
    let (code, r) = other
        .admin(
            "POST",
            &format!("/messages/{head}/replay"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let replay = r["message_id"].as_str().unwrap().to_owned();
    let done = app.admin_wait(&replay, "succeeded").await;
    assert_eq!(done["replay_of"], head.as_str());
    let n = app.admin_wait(&next, "succeeded").await;
    assert!(
        n["attempts"][0]["started_at"].as_str().unwrap()
            >= done["attempts"][0]["finished_at"].as_str().unwrap()
    );
    let (code, _) = app
        .admin(
            "POST",
            &format!("/messages/{head}/skip"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "the lane is no longer held");

    // Skip and unblock on lanes held again.
    for n in nodes {
        n.set_lanes_flow(LANE_FLOW).await;
    }
    let b1 = app
        .post_async("/acme/Lanes", None, json!({"lane": "b", "n": 1}))
        .await;
    let b2 = other
        .post_async(
            "/acme/Lanes",
            None,
            json!({"lane": "b", "n": 2, "ok": true}),
        )
        .await;
    let c1 = app
        .post_async("/acme/Lanes", None, json!({"lane": "c", "n": 1}))
        .await;
    let c2 = other
        .post_async(
            "/acme/Lanes",
            None,
            json!({"lane": "c", "n": 2, "ok": true}),
        )
        .await;
    app.admin_wait(&b1, "dead").await;
    app.admin_wait(&c1, "dead").await;
    let (code, s) = other
        .admin("POST", &format!("/messages/{b1}/skip"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(
        (code, s["status"].clone()),
        (StatusCode::OK, json!("skipped"))
    );
    app.admin_wait(&b1, "skipped").await;
    app.admin_wait(&b2, "succeeded").await;
    let (code, _) = other
        .admin(
            "POST",
            &format!("/messages/{c1}/unblock"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    app.admin_wait(&c2, "succeeded").await;
    app.admin_wait(&c1, "dead").await;
    let (_, lanes) = app.admin("GET", "/lanes", GLOBAL_TOKEN, None).await;
    assert_eq!(lanes["lanes"], json!([]));
}

#[tokio::test]
async fn bulk_replay_counts_first() {
    let app = admin_app().await;
    let mut failed = Vec::new();
    for i in 0..3 {
        failed.push(
            app.post_async(
                "/acme/CreateCustomerRecord",
                Some(ERP_KEY),
                json!({"id": i}),
            )
            .await,
        );
    }
    for id in &failed {
        app.admin_wait(id, "rejected").await;
    }
    let filter = json!({"tenant": "acme", "trigger": "CreateCustomerRecord", "status": "rejected"});
    let mut dry = filter.clone();
    dry["dry_run"] = json!(true);
    let (_, c) = app.admin("POST", "/replay", GLOBAL_TOKEN, Some(dry)).await;
    assert_eq!(c["count"], 3);
    let (code, _) = app
        .admin("POST", "/replay", GLOBAL_TOKEN, Some(filter.clone()))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "no replay without the count");
    let mut go = filter.clone();
    go["expect"] = json!(3);
    let (code, r) = app.admin("POST", "/replay", GLOBAL_TOKEN, Some(go)).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(r["replayed"], 3);
    for id in r["message_ids"].as_array().unwrap() {
        let d = app.admin_wait(id.as_str().unwrap(), "rejected").await;
        assert!(failed.contains(&d["replay_of"].as_str().unwrap().to_owned()));
    }
}

/// The other tenant's secret: longer than any run of digits in a UUID, so that an
/// id echoed in a 404 cannot look like it.
const CARD: &str = "4111111111111111";

#[tokio::test]
async fn scoped_token_sees_nothing_of_another_tenant() {
    tenant_isolation(&admin_app().await).await;
}

/// A token scoped to acme tries every endpoint against the other tenant's ids.
pub async fn tenant_isolation(app: &TestApp) {
    let theirs = app
        .post_async("/other/Secret", None, json!({"card": CARD}))
        .await;
    let ours = app
        .post_async("/acme/Lanes", None, json!({"lane": "x", "n": 1}))
        .await;
    app.admin_wait(&theirs, "succeeded").await;
    app.admin_wait(&ours, "dead").await;

    let (_, t) = app.admin("GET", "/triggers", ACME_TOKEN, None).await;
    assert!(
        t["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["tenant"] == "acme")
    );
    assert!(!t["triggers"].as_array().unwrap().is_empty());
    let (_, t) = app.admin("GET", "/tenants", ACME_TOKEN, None).await;
    assert_eq!(t["tenants"].as_array().unwrap().len(), 1);
    assert!(
        !t.to_string().contains("audit"),
        "no other tenant's subscriptions"
    );
    let (_, t) = app.admin("GET", "/tenants", GLOBAL_TOKEN, None).await;
    assert!(t.to_string().contains("audit"));
    let (_, all) = app.admin("GET", "/messages", ACME_TOKEN, None).await;
    assert!(
        !all.to_string().contains(&theirs),
        "unfiltered lists hold only its tenants"
    );
    let (_, lanes) = app.admin("GET", "/lanes", ACME_TOKEN, None).await;
    assert_eq!(lanes["lanes"].as_array().unwrap().len(), 1);
    let (_, failed) = app
        .admin("GET", "/messages?status=succeeded", ACME_TOKEN, None)
        .await;
    assert!(!failed.to_string().contains(&theirs));

    let mut delivery = String::new();
    for _ in 0..250 {
        let (_, d) = app
            .admin("GET", "/deliveries?tenant=other", GLOBAL_TOKEN, None)
            .await;
        if let Some(id) = d["deliveries"][0]["delivery_id"].as_str() {
            delivery = id.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!delivery.is_empty(), "the other tenant has a delivery");
    let not_found = [
        ("GET", format!("/deliveries/{delivery}"), None),
        ("POST", format!("/deliveries/{delivery}/redeliver"), None),
        ("GET", "/messages?tenant=other".to_owned(), None),
        (
            "GET",
            "/messages?tenant=other&trigger=Secret".to_owned(),
            None,
        ),
        ("GET", format!("/messages/{theirs}"), None),
        ("POST", format!("/messages/{theirs}/replay"), None),
        ("POST", format!("/messages/{theirs}/skip"), None),
        ("POST", format!("/messages/{theirs}/unblock"), None),
        (
            "POST",
            "/replay".to_owned(),
            Some(json!({"tenant": "other", "trigger": "Secret", "dry_run": true})),
        ),
        ("GET", "/lanes?tenant=other".to_owned(), None),
        ("GET", "/deliveries?tenant=other".to_owned(), None),
        ("GET", format!("/deliveries/{theirs}"), None),
        ("POST", format!("/deliveries/{theirs}/redeliver"), None),
    ];
    for (method, path, body) in not_found {
        let (code, doc) = app.admin(method, &path, ACME_TOKEN, body).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{method} {path}: {doc}");
        assert!(!doc.to_string().contains(CARD), "{method} {path}: {doc}");
    }
    // The same requests with the global token reach it.
    let (code, d) = app
        .admin("GET", &format!("/messages/{theirs}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(
        (code, d["input"]["body"]["card"].clone()),
        (StatusCode::OK, json!(CARD))
    );
    let (code, _) = app
        .admin("GET", &format!("/messages/{ours}"), ACME_TOKEN, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let path = format!("/deliveries/{delivery}");
    let (code, _) = app.admin("GET", &path, GLOBAL_TOKEN, None).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn a_broken_trigger_file_shows_its_load_error() {
    let app = admin_app().await;
    write_flow(
        &app.flows_dir(),
        "acme/Lanes.yaml",
        "description: broken\nauth: { none: true }\nsteps: [ { nosuch: 1 } ]\n",
    );
    write_flow(&app.flows_dir(), "other/New.yaml", "steps: [\n");
    for _ in 0..250 {
        let (_, doc) = app.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
        let lanes = doc["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["trigger"] == "Lanes")
            .cloned();
        if let Some(err) = lanes.as_ref().and_then(|t| t["load_error"].as_str()) {
            assert!(err.contains("Lanes.yaml:3:"), "{err}");
            assert_eq!(
                lanes.unwrap()["enabled"],
                true,
                "the last good version keeps serving"
            );
            assert!(doc["load_errors"].to_string().contains("New.yaml"));
            let (_, scoped) = app.admin("GET", "/triggers", ACME_TOKEN, None).await;
            assert!(
                !scoped["load_errors"].to_string().contains("New.yaml"),
                "other's files stay hidden"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no load error shown");
}

/// `flowgate messages` as a separate process against the running server, with a
/// token from the environment as an operator would set it.
pub async fn messages_command(
    app: &TestApp,
    args: &[&str],
    token: Option<&str>,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"));
    cmd.arg("messages")
        .args(args)
        .env("FLOWGATE_URL", app.url(""))
        .env_remove("FLOWGATE_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("FLOWGATE_ADMIN_TOKEN", t);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_command_lists_shows_replays_and_releases_lanes() {
    let app = admin_app().await;
    let ok = app
        .post_async(
            "/acme/CreateCustomerRecord",
            Some(ERP_KEY),
            json!({"id": "c-1", "name": "Ada"}),
        )
        .await;
    let bad = app
        .post_async(
            "/acme/CreateCustomerRecord",
            Some(ERP_KEY),
            json!({"id": "c-2"}),
        )
        .await;
    app.admin_wait(&ok, "succeeded").await;
    app.admin_wait(&bad, "rejected").await;

    let filter = ["--tenant", "acme", "--trigger", "CreateCustomerRecord"];
    let out = messages_command(
        &app,
        &[&["list"], &filter[..], &["--status", "rejected"]].concat(),
        Some(GLOBAL_TOKEN),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("MESSAGE  "), "{text}");
    assert!(
        lines[1].starts_with(&format!(
            "{bad}  acme/CreateCustomerRecord  erp       -     rejected "
        )),
        "{text}"
    );
    assert_eq!(lines[2], "(end)");

    let page = |extra: &'static [&'static str], cursor: Option<String>| {
        let app = &app;
        async move {
            let mut args = [&["list"], &filter[..], extra, &["--json"]].concat();
            if let Some(c) = &cursor {
                args.extend(["--cursor", c.as_str()]);
            }
            let out = messages_command(app, &args, Some(GLOBAL_TOKEN)).await;
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let first = page(&["--limit", "1"], None).await;
    assert_eq!(
        first["messages"][0]["message_id"],
        bad.as_str(),
        "newest first"
    );
    assert_eq!(first["next_cursor"], bad.as_str());
    let next = page(&[], Some(bad.clone())).await;
    assert_eq!(
        next["messages"][0]["message_id"],
        ok.as_str(),
        "the next page"
    );

    let out = messages_command(&app, &["show", &ok], Some(GLOBAL_TOKEN)).await;
    let detail: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(detail["message_id"], ok.as_str());
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["response"]["body"]["name"], "ada");

    let out = messages_command(&app, &["replay", &bad], Some(GLOBAL_TOKEN)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let new = text
        .strip_prefix(&format!("replayed {bad} as "))
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();
    let replayed = app.admin_wait(&new, "rejected").await;
    assert_eq!(replayed["replay_of"], bad.as_str());

    let out = messages_command(&app, &["list"], None).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: an admin token is needed: --token or FLOWGATE_ADMIN_TOKEN\n"
    );
    let out = messages_command(&app, &["show", &ok], Some("fg_admin_wrong")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("flowgate messages: 401 Unauthorized: "),
        "{err}"
    );
    let unknown = flowgate::domain::MessageId::new().to_string();
    let out = messages_command(&app, &["show", &unknown], Some(ACME_TOKEN)).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("flowgate messages: 404 Not Found: "),
        "{err}"
    );

    // Ordered lanes held by failed messages: skip one, unblock another.
    let mut posted = Vec::new();
    for body in [
        json!({"lane": "a", "n": 1}),
        json!({"lane": "a", "n": 2, "ok": true}),
        json!({"lane": "b", "n": 3}),
    ] {
        posted.push(app.post_async("/acme/Lanes", None, body).await);
    }
    let [head, next, other] = <[String; 3]>::try_from(posted).unwrap();
    app.admin_wait(&head, "dead").await;
    app.admin_wait(&other, "dead").await;
    // Both blocked lanes, and each message that holds one.
    let out = messages_command(
        &app,
        &["lanes", "--tenant", "acme", "--trigger", "Lanes"],
        Some(GLOBAL_TOKEN),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TRIGGER     LANE  BLOCKED BY"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("acme/Lanes  a     {head}  dead")),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!("acme/Lanes  b     {other}  dead")),
        "{text}"
    );
    let out = messages_command(&app, &["lanes", "--json"], Some(GLOBAL_TOKEN)).await;
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["lanes"].as_array().unwrap().len(), 2, "{list}");
    let out = messages_command(&app, &["lanes", "--tenant", "other"], Some(GLOBAL_TOKEN)).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no blocked lanes\n");
    let out = messages_command(&app, &["lanes", "--tenant", "acme"], Some(ACME_TOKEN)).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&head));
    let out = messages_command(&app, &["lanes", "--tenant", "other"], Some(ACME_TOKEN)).await;
    assert!(!out.status.success(), "another tenant's lanes are not seen");
    // One lane's log history.
    let out = messages_command(
        &app,
        &[
            "list",
            "--tenant",
            "acme",
            "--trigger",
            "Lanes",
            "--lane",
            "b",
            "--json",
        ],
        Some(GLOBAL_TOKEN),
    )
    .await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["messages"][0]["message_id"], other.as_str());
    assert_eq!(page["messages"][0]["lane"], "b");
    assert_eq!(page["messages"][0]["error"], "not ok");
    let out = messages_command(&app, &["skip", &head], Some(GLOBAL_TOKEN)).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("skipped {head}; lane \"a\" goes on\n")
    );
    app.admin_wait(&next, "succeeded").await;
    let out = messages_command(&app, &["unblock", &other], Some(GLOBAL_TOKEN)).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("unblocked lane \"b\" held by {other}\n")
    );
    let d = app.admin_wait(&other, "dead").await;
    assert_eq!(d["blocking"], false);
    let out = messages_command(&app, &["skip", &ok], Some(GLOBAL_TOKEN)).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("flowgate messages: 409 Conflict: message {ok} does not hold an ordered lane\n")
    );
}
