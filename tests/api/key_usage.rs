//! What is known of consumers' keys: 401s counted under the consumer a key
//! names (else under the tenant), each key's last use, the keys page and its
//! tenant scope (no hashes), the `key.expiring` event sent once per key, and
//! the store's part of it on both stores.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use flowgate::domain::{DAY_MICROS, now_micros, utc_day};
use flowgate::store::{KeyUse, Store, UsageDelta};

use crate::admin::{ACME_TOKEN, GLOBAL_TOKEN};
use crate::helpers::{TestApp, WEBSHOP_KEY, eventually};
use crate::limits::{Key, call, flushed, shop_app};
use crate::stub::{Reply, Stub};

fn consumer<'a>(keys: &'a Value, label: &str) -> &'a Value {
    keys["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no consumer {label} in {keys}"))
}

/// An RFC 3339 time `days` from now.
fn in_days(days: i64) -> String {
    flowgate::domain::format_rfc3339(now_micros() + days * DAY_MICROS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_answers_and_last_use_are_counted_by_consumer() {
    let (shop, old, idle) = (Key::new("shop"), Key::new("old"), Key::new("idle"));
    let pasted = flowgate::auth::keys::hash(WEBSHOP_KEY).unwrap();
    let tenant = format!(
        "api_keys:\n{}{}{}  pasted: \"{pasted}\"\n",
        shop.entry(Some(&in_days(400)), &["quota: 100/day"]),
        old.entry(Some("2020-01-01T00:00:00Z"), &[]),
        idle.entry(None, &[]),
    );
    let app = shop_app(tenant, &["shop", "old", "pasted"], None).await;
    for _ in 0..2 {
        assert_eq!(call(&app, &shop.key, "").await.status(), StatusCode::OK);
    }
    assert_eq!(call(&app, WEBSHOP_KEY, "").await.status(), StatusCode::OK);
    // Under its consumer: a wrong secret for its id, an expired key, a key
    // whose consumer may not call the trigger.
    let wrong = format!("fg_{}_{}", shop.id, "A".repeat(43));
    for (key, code) in [
        (wrong.as_str(), "unauthorized"),
        (old.key.as_str(), "key_expired"),
        (idle.key.as_str(), "unauthorized"),
    ] {
        let res = call(&app, key, "").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], code);
    }
    // Under the tenant: no key, an unknown id, a wrong key without an id.
    let unknown = format!("fg_zzzzzzzz_{}", "A".repeat(43));
    for key in [None, Some(unknown.as_str()), Some("not-a-key")] {
        let res = app.get("/shop/Echo", key).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }

    let (status, keys) = app
        .admin("GET", "/keys?tenant=shop", GLOBAL_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!keys.to_string().contains("argon2"), "no hashes: {keys}");
    assert_eq!(keys["unattributed_unauthorized_today"], 3, "{keys}");
    let s = consumer(&keys, "shop");
    assert_eq!(
        (
            s["requests_today"].as_u64(),
            s["unauthorized_today"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(s["quota"]["used_today"], 2);
    assert_eq!(s["keys"][0]["id"], shop.id.as_str());
    assert_eq!(s["keys"][0]["expired"], false);
    assert!(s["keys"][0]["last_used_at"].is_string(), "{s}");
    assert!(s["keys"][0]["expires_at"].is_string(), "{s}");
    let o = consumer(&keys, "old");
    assert_eq!(o["unauthorized_today"], 1);
    assert_eq!(o["keys"][0]["expired"], true);
    assert_eq!(o["keys"][0]["last_used_at"], Value::Null);
    assert_eq!(consumer(&keys, "idle")["unauthorized_today"], 1);
    let p = consumer(&keys, "pasted");
    assert_eq!(
        p["keys"],
        json!([{"id": null, "expires_at": null, "expired": false, "last_used_at": p["keys"][0]["last_used_at"]}])
    );
    assert!(p["keys"][0]["last_used_at"].is_string());
    assert_eq!(p["requests_today"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_page_is_scoped_to_the_tokens_tenants() {
    let shop = Key::new("shop");
    let app = shop_app(
        format!("api_keys:\n{}", shop.entry(None, &[])),
        &["shop"],
        None,
    )
    .await;
    let (status, body) = app
        .admin("GET", "/keys?tenant=shop", ACME_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains(&shop.id), "{body}");
    let (status, acme) = app
        .admin("GET", "/keys?tenant=acme", ACME_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let labels: Vec<&str> = acme["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["webshop", "erp"]);
    let (status, _) = app
        .admin("GET", "/keys?tenant=nobody", GLOBAL_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A tenant whose subscription wants `key.*`: one key expiring in three days,
/// one in thirty, one expired.
fn expiring_tenant(receiver: &str, soon: &Key, later: &Key, gone: &Key) -> String {
    format!(
        "api_keys:\n{}{}{}subscriptions:\n  - name: keys\n    url: {receiver}/hook\n    events: [key.*]\n    enabled: true\n",
        soon.entry(Some(&in_days(3)), &[]),
        later.entry(Some(&in_days(30)), &[]),
        gone.entry(Some("2020-01-01T00:00:00Z"), &[]),
    )
}

/// The `key.expiring` events the receiver got.
fn expiring(stub: &Stub) -> Vec<Value> {
    stub.requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|e| e["event"] == "key.expiring")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_expiring_is_sent_once_seven_days_ahead() {
    let stub = Stub::start(Reply::json(200, json!({}))).await;
    let (soon, later, gone) = (Key::new("soon"), Key::new("later"), Key::new("gone"));
    let tenant = expiring_tenant(&format!("http://{}", stub.addr), &soon, &later, &gone);
    let app = TestApp::spawn_with(
        |f| {
            crate::helpers::write_flow(f, "shop/_tenant.yaml", &tenant);
            crate::helpers::write_flow(f, "shop/Echo.yaml", &crate::limits::echo(&["soon"]));
        },
        |s| {
            s.subscriptions_allow_http = true;
            s.subscriptions_poll = Duration::from_millis(20);
        },
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !expiring(&stub).is_empty()
        })
        .await,
        "key.expiring is delivered"
    );
    // Several scans later, still the one.
    flushed(&app).await;
    flushed(&app).await;
    let events = expiring(&stub);
    assert_eq!(events.len(), 1, "{events:?}");
    let data = &events[0]["data"];
    assert_eq!(data["key_id"], soon.id.as_str());
    assert_eq!(data["label"], "soon");
    assert_eq!(data["tenant"], "shop");
    assert!(data["expires_at"].is_string());
    assert_eq!(events[0]["subscription"], "keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_key_expiring_is_sent_once_by_one_of_two_nodes() {
    let Some(pg) = crate::pg::schema("key_expiring_two").await else {
        return;
    };
    let stub = Stub::start(Reply::json(200, json!({}))).await;
    let (soon, later, gone) = (Key::new("soon"), Key::new("later"), Key::new("gone"));
    let tenant = expiring_tenant(&format!("http://{}", stub.addr), &soon, &later, &gone);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (tenant, url) = (tenant.clone(), pg.url.clone());
        nodes.push(
            TestApp::spawn_with(
                move |f| {
                    crate::helpers::write_flow(f, "shop/_tenant.yaml", &tenant);
                    crate::helpers::write_flow(
                        f,
                        "shop/Echo.yaml",
                        &crate::limits::echo(&["soon"]),
                    );
                },
                move |s| {
                    s.store = url;
                    s.subscriptions_allow_http = true;
                    s.subscriptions_poll = Duration::from_millis(20);
                },
            )
            .await,
        );
    }
    assert!(
        eventually(Duration::from_secs(15), || async {
            !expiring(&stub).is_empty()
        })
        .await,
        "key.expiring is delivered"
    );
    for node in &nodes {
        flushed(node).await;
    }
    let events = expiring(&stub);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["key_id"], soon.id.as_str());
}

/// What every store does with consumers' counts and key notices.
async fn usage_contract(store: &Store) {
    let day = utc_day(now_micros());
    let delta = |label: &str, requests: u64, unauthorized: u64| UsageDelta {
        day,
        tenant: "t".into(),
        label: label.into(),
        requests,
        limited: 0,
        unauthorized,
    };
    let used = |key_id: &str, at: i64| KeyUse {
        tenant: "t".into(),
        label: "a".into(),
        key_id: key_id.into(),
        last_used: at,
    };
    // Two writers (nodes) add to the same rows; an older use never wins.
    let rows = store
        .add_usage(
            vec![delta("a", 2, 0), delta("", 0, 1)],
            vec![used("k1", 50)],
            day,
        )
        .await
        .unwrap();
    assert_eq!(rows.iter().find(|r| r.label == "a").unwrap().requests, 2);
    let rows = store
        .add_usage(
            vec![
                delta("a", 3, 1),
                delta("a", 1, 0),
                UsageDelta {
                    day: day - 1,
                    ..delta("a", 7, 0)
                },
            ],
            vec![used("k1", 40), used("k2", 60)],
            day,
        )
        .await
        .unwrap();
    let a = rows.iter().find(|r| r.label == "a").unwrap();
    assert_eq!((a.requests, a.unauthorized), (6, 1), "today's only");
    let (mine, uses) = store.usage_of("t", day).await.unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(
        mine.iter()
            .find(|r| r.label.is_empty())
            .unwrap()
            .unauthorized,
        1
    );
    let k1 = uses.iter().find(|u| u.key_id == "k1").unwrap();
    assert_eq!(k1.last_used, 50);
    assert_eq!(
        store.usage_of("other", day).await.unwrap(),
        (vec![], vec![])
    );
    // A notice is recorded once per key and expiry, with its event in the
    // outbox: written with the record, and only by the claim that made it.
    let ev = |tenant: &str, at: i64| {
        let tenant = flowgate::domain::TenantName::parse(tenant).unwrap();
        flowgate::events::Events::key_expiring(&tenant, "webshop", "k1", at)
    };
    let notices = || async {
        let out = store.outbox(100).await.unwrap();
        out.iter().filter(|e| e.event == "key.expiring").count()
    };
    let before = notices().await;
    let expires = now_micros() + DAY_MICROS;
    let claim = |tenant: &'static str, at: i64, now: i64| {
        store.claim_key_notice(tenant, "k1", at, now, ev(tenant, at))
    };
    assert!(claim("t", expires, 1).await.unwrap());
    assert_eq!(notices().await, before + 1, "the event is written with it");
    assert!(!claim("t", expires, 2).await.unwrap());
    assert_eq!(notices().await, before + 1, "a refused claim writes none");
    assert!(claim("t", expires + 1, 3).await.unwrap(), "a new expiry");
    assert!(claim("u", expires, 4).await.unwrap());
    assert_eq!(notices().await, before + 3);
    // Purged: days before today, notices of keys already expired.
    let purged = store.purge_usage(day, expires + 2).await.unwrap();
    assert_eq!(purged, 1 + 3);
    assert!(claim("t", expires, 5).await.unwrap());
    assert_eq!(store.usage_of("t", day).await.unwrap().0.len(), 2);
}

#[tokio::test]
async fn usage_and_notices_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display())).unwrap();
    usage_contract(&store).await;
}

#[tokio::test]
async fn pg_usage_and_notices_on_postgres() {
    let Some(pg) = crate::pg::schema("usage_contract").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings_in(dir.path());
    let store = Store::connect(&pg.url, settings.pg_options())
        .await
        .unwrap();
    usage_contract(&store).await;
}

/// A store that cannot be written does not fail requests: the counts wait
/// (and still hold the quota on this node) until a flush succeeds.
#[tokio::test]
async fn counts_wait_for_a_store_that_is_away() {
    use flowgate::auth::usage::Usage;
    use flowgate::domain::{Limits, TenantName};

    let mut tenant = flowgate::flow::Tenant::empty(TenantName::parse("t").unwrap());
    tenant.limits.insert(
        "shop".into(),
        Limits {
            rate: None,
            quota: Some(3),
        },
    );
    let usage = Usage::new();
    for _ in 0..2 {
        assert_eq!(usage.admit(&tenant, "shop", Some("abcdefgh")).refused, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let open =
        |name: &str| Store::open(&format!("sqlite://{}", dir.path().join(name).display())).unwrap();
    let away = open("away.db");
    away.close().await.unwrap();
    assert!(usage.flush(&away).await.is_err());
    let stats = &usage.stats;
    let errors = stats
        .flush_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(errors, 1);
    let day = utc_day(now_micros());
    assert_eq!(
        usage.pending("t", day)["shop"],
        (2, 0, 0),
        "kept for the next flush"
    );
    // Still held against the quota meanwhile.
    assert_eq!(usage.admit(&tenant, "shop", None).refused, None);
    assert!(usage.admit(&tenant, "shop", None).refused.is_some());

    let back = open("back.db");
    usage.flush(&back).await.unwrap();
    assert_eq!(usage.pending("t", day)["shop"], (0, 0, 0));
    let (rows, uses) = back.usage_of("t", day).await.unwrap();
    assert_eq!((rows[0].requests, rows[0].limited), (3, 1));
    assert_eq!(
        uses.len(),
        2,
        "the key with an id and the one without: {uses:?}"
    );
    // After the flush the quota is held against the store's total.
    assert!(usage.admit(&tenant, "shop", None).refused.is_some());
}
