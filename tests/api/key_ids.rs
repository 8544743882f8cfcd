//! Keys with public ids (`fg_<id>_<secret>`): looked up by id (one argon2
//! verification, none for an unknown id), expiry, rotation and revocation by a
//! reload, keys without ids alongside, `flowgate key new` end to end, and the
//! load diagnostics of `keys:` entries.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, WEBSHOP_KEY, eventually, spawn_tenant, write_flow};

const ECHO: &str = "methods: [GET]\nauth:\n  api_keys: [webshop, old, late]\nsteps:\n  - respond: { body: '{auth: .auth}' }\n";

/// A key with an id and its hash.
fn key_with_id() -> (String, String, String) {
    let (id, key) = flowgate::auth::keys::generate();
    let hash = flowgate::auth::keys::hash(&key).unwrap();
    (id, key, hash)
}

fn item(id: &str, hash: &str, expires: Option<&str>) -> String {
    let mut s = format!("      - id: {id}\n        hash: \"{hash}\"\n");
    if let Some(at) = expires {
        s.push_str(&format!("        expires: {at}\n"));
    }
    s
}

fn tenant_yaml(webshop: &[String], late: &str) -> String {
    let old = flowgate::auth::keys::hash(WEBSHOP_KEY).unwrap();
    format!(
        "api_keys:\n  webshop:\n    keys:\n{}  old: \"{old}\"\n  late:\n    keys:\n{late}",
        webshop.concat()
    )
}

async fn call(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let res = app.get("/shop/Echo", Some(key)).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn verifications(app: &TestApp) -> f64 {
    app.metric("flowgate_key_verifications_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_looked_up_by_id_expire_and_rotate() {
    let (id1, key1, hash1) = key_with_id();
    let (id2, key2, hash2) = key_with_id();
    let (id3, key3, hash3) = key_with_id();
    let one = item(&id1, &hash1, Some("2999-01-01T00:00:00Z"));
    let two = item(&id2, &hash2, None);
    let late = item(&id3, &hash3, Some("2020-06-30T00:00:00Z"));
    let app = spawn_tenant(
        "shop",
        tenant_yaml(&[one, two.clone()], &late),
        &[("Echo", ECHO)],
    )
    .await;

    // An id nobody declared: 401 with no argon2 work.
    let before = verifications(&app).await;
    let unknown = format!("fg_zzzzzzzz_{}", &key1[12..]);
    let (status, body) = call(&app, &unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "unauthorized");
    assert_eq!(verifications(&app).await, before);

    // A declared id with a wrong secret: exactly one verification.
    let wrong = format!("fg_{id1}_{}", "A".repeat(43));
    assert_eq!(call(&app, &wrong).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(verifications(&app).await, before + 1.0);

    // Both keys of the label work, each after one verification; the id is in `.auth`.
    for (id, key) in [(&id1, &key1), (&id2, &key2)] {
        let (status, body) = call(&app, key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["auth"]["label"], "webshop");
        assert_eq!(body["auth"]["key_id"], id.as_str());
    }
    assert_eq!(verifications(&app).await, before + 3.0);

    // An expired key: `key_expired`, no verification.
    let (status, body) = call(&app, &key3).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "key_expired", "{body}");
    assert_eq!(verifications(&app).await, before + 3.0);

    // A key without an id (which has the `fg_x_y` shape too) goes by its label.
    let (status, body) = call(&app, WEBSHOP_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["auth"]["label"], "old");
    assert!(body["auth"].get("key_id").is_none());

    // Rotation done: the first key is removed; once reloaded it is refused
    // although its answer was cached, and the second still works.
    write_flow(
        &app.flows_dir(),
        "shop/_tenant.yaml",
        &tenant_yaml(&[two], &late),
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            call(&app, &key1).await.0 == StatusCode::UNAUTHORIZED
        })
        .await,
        "a removed key is revoked by the reload"
    );
    assert_eq!(call(&app, &key2).await.0, StatusCode::OK);
    assert_eq!(call(&app, WEBSHOP_KEY).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_new_json_gives_an_entry_that_lets_the_key_in() {
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["key", "new", "--label", "webshop", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["hash", "id", "key", "label", "yaml"]);
    assert_eq!(v["label"], "webshop");
    let id = v["id"].as_str().unwrap();
    let key = v["key"].as_str().unwrap();
    assert!(
        id.len() == 8
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{id}"
    );
    let secret = key.strip_prefix(&format!("fg_{id}_")).unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret).unwrap();
    assert_eq!(bytes.len(), 32);
    assert!(flowgate::auth::keys::verify(
        key,
        v["hash"].as_str().unwrap()
    ));

    // Pasted under `api_keys:` as it is, the key gets in.
    let entry: String = v["yaml"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let app = spawn_tenant(
        "shop",
        format!("api_keys:\n{entry}"),
        &[(
            "Echo",
            "methods: [GET]\nauth:\n  api_keys: [webshop]\nsteps:\n  - respond: { body: '{auth: .auth}' }\n",
        )],
    )
    .await;
    let (status, body) = call(&app, key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["auth"]["key_id"], id);
    assert_eq!(
        call(&app, &key.replace(id, "zzzzzzzz")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn check_names_each_key_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$yDec7/LCqk4YkPJ/Ut1n1Q$22eAS/r9D0iiP9nwgdMYVs2awa/63PUplsyW8Z7Vrfk";
    let tenant = format!(
        "api_keys:\n  webshop:\n    keys:\n{}{}{}  erp:\n    keys:\n{}{}    rate: 100/day\n    burst: 0\n    quota: 5/h\n  cart:\n    keys:\n{}    burst: 10\n",
        item("k3q7x2ab", hash, None),
        item("K3Q7X2AB", hash, None),
        item("m4d2ffqa", hash, Some("30 June 2027")),
        item("k3q7x2ab", hash, None),
        item("p2p2p2p2", "not-a-hash", None),
        item("c4c4c4c4", hash, None),
    );
    write_flow(dir.path(), "t/_tenant.yaml", &tenant);
    write_flow(
        dir.path(),
        "t/Echo.yaml",
        "auth:\n  api_keys: [webshop, erp, cart]\nsteps:\n  - respond: { body: '{}' }\n",
    );
    let (ok, stdout, stderr) = crate::check::check(dir.path());
    assert!(!ok);
    let text = format!("{stdout}{stderr}");
    for expected in [
        "_tenant.yaml:6:13: api key `webshop` id `K3Q7X2AB`: an id is 8 characters of `a-z` and `2-7`",
        "_tenant.yaml:10:18: api key `webshop` id `m4d2ffqa`: `expires`: `30 June 2027` is not an RFC 3339 time",
        "_tenant.yaml:13:13: api key `erp` id `k3q7x2ab`: the id is declared already (under `webshop`)",
        "_tenant.yaml:16:15: api key `erp` id `p2p2p2p2`: not a PHC hash string",
        "_tenant.yaml:17:11: api key `erp`: `rate`: `100/day` is not a rate like 100/s, 600/min or 1000/h",
        "_tenant.yaml:18:12: api key `erp`: `burst` is a whole number of requests, at least 1",
        "_tenant.yaml:19:12: api key `erp`: `quota`: `5/h` is not a quota like 1000000/day",
        "_tenant.yaml:24:12: api key `cart`: `burst` needs a `rate`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_records_its_consumer_label_and_key_id() {
    let (id, key, hash) = key_with_id();
    let tenant = format!(
        "api_keys:\n  webshop:\n    keys:\n{}",
        item(&id, &hash, None)
    );
    let app = crate::admin::admin_app_with(
        |flows| {
            write_flow(flows, "shop/_tenant.yaml", &tenant);
            write_flow(
                flows,
                "shop/Order.yaml",
                "auth: { api_keys: [webshop] }\nresponse: { mode: async }\nsteps:\n  - set: { x: .body }\n",
            );
        },
        |_| {},
    )
    .await;
    let message = app
        .post_async("/shop/Order", Some(&key), serde_json::json!({"n": 1}))
        .await;
    let detail = app.admin_wait(&message, "succeeded").await;
    assert_eq!(
        detail["input"]["auth"],
        serde_json::json!({"method": "api_key", "label": "webshop", "key_id": id})
    );
}
