//! Every message records the consumer that sent it (the key's label and id, or
//! the Basic user): the admin API lists and filters by it, the message detail
//! and `flowgate messages list` show it, and `/_metrics` counts each consumer's
//! calls. On both stores.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{GLOBAL_TOKEN, admin_app_with, messages_command};
use crate::helpers::{ERP_KEY, TestApp, write_flow};

/// Webshop calls with a key that has an id, erp with a pasted key, the `duro`
/// Basic user through its own trigger.
struct Shop {
    app: TestApp,
    key_id: String,
    key: String,
}

const ORDER: &str = "auth: { api_keys: [webshop, erp] }\nresponse: { mode: async }\nsteps:\n  - set: { x: .body }\n";
const PRICE: &str = "methods: [GET]\nauth: { api_keys: [webshop, erp] }\nsteps:\n  - respond: { body: '{ok: true}' }\n";
const HOOK: &str =
    "auth: { basic: [duro] }\nresponse: { mode: async }\nsteps:\n  - set: { x: .body }\n";
const OPEN: &str =
    "auth: { none: true }\nresponse: { mode: async }\nsteps:\n  - set: { x: .body }\n";

async fn shop(store: Option<String>) -> Shop {
    let (key_id, key) = flowgate::auth::keys::generate();
    let hash = flowgate::auth::keys::hash(&key).unwrap();
    let erp = flowgate::auth::keys::hash(ERP_KEY).unwrap();
    let duro = flowgate::auth::keys::hash("duro-password").unwrap();
    let tenant = format!(
        "api_keys:\n  webshop:\n    keys:\n      - id: {key_id}\n        hash: \"{hash}\"\n  erp: \"{erp}\"\nbasic_users:\n  duro: \"{duro}\"\n"
    );
    let app = admin_app_with(
        |flows| {
            write_flow(flows, "shop/_tenant.yaml", &tenant);
            write_flow(flows, "shop/Order.yaml", ORDER);
            write_flow(flows, "shop/Price.yaml", PRICE);
            write_flow(flows, "shop/Hook.yaml", HOOK);
            write_flow(flows, "shop/Open.yaml", OPEN);
        },
        move |s| {
            if let Some(url) = store {
                s.store = url;
                s.pool_size = 4;
            }
        },
    )
    .await;
    Shop { app, key_id, key }
}

/// The message ids of a page of the admin API's list, and the page.
async fn list(app: &TestApp, query: &str) -> (Vec<String>, Value) {
    let (status, page) = app
        .admin("GET", &format!("/messages?{query}"), GLOBAL_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn records_and_filters_by_consumer(s: Shop) {
    let app = &s.app;
    let shop1 = app
        .post_async("/shop/Order", Some(&s.key), json!({"n": 1}))
        .await;
    let shop2 = app
        .post_async("/shop/Order", Some(&s.key), json!({"n": 2}))
        .await;
    let erp = app
        .post_async("/shop/Order", Some(ERP_KEY), json!({"n": 3}))
        .await;
    let open = app.post_async("/shop/Open", None, json!({"n": 4})).await;
    let basic = base64::engine::general_purpose::STANDARD.encode("duro:duro-password");
    let res = app
        .client
        .post(app.url("/shop/Hook"))
        .header("authorization", format!("Basic {basic}"))
        .json(&json!({"n": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let hook = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The sync path stores the message after it ran: its consumer too.
    let res = app.get("/shop/Price", Some(&s.key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let price = res.headers()["x-message-id"].to_str().unwrap().to_owned();
    for id in [&shop1, &shop2, &erp, &open, &hook] {
        app.admin_wait(id, "succeeded").await;
    }
    app.admin_wait(&price, "succeeded").await;

    // The detail names the consumer and the key.
    let detail = app.admin_wait(&shop1, "succeeded").await;
    assert_eq!(detail["consumer"], "webshop");
    assert_eq!(detail["key_id"], s.key_id.as_str());
    let detail = app.admin_wait(&erp, "succeeded").await;
    assert_eq!(detail["consumer"], "erp");
    assert_eq!(detail["key_id"], Value::Null, "a pasted key has no id");
    let detail = app.admin_wait(&hook, "succeeded").await;
    assert_eq!(detail["consumer"], "duro", "a Basic caller is its user");
    assert_eq!(detail["key_id"], Value::Null);
    let detail = app.admin_wait(&open, "succeeded").await;
    assert_eq!(detail["consumer"], Value::Null);
    // A replay is the same request again: it keeps who sent it.
    let (status, replay) = app
        .admin(
            "POST",
            &format!("/messages/{erp}/replay"),
            GLOBAL_TOKEN,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    let replay = replay["message_id"].as_str().unwrap().to_owned();
    let detail = app.admin_wait(&replay, "succeeded").await;
    assert_eq!(
        (&detail["consumer"], &detail["key_id"]),
        (&json!("erp"), &Value::Null)
    );

    // The list shows it on each line and filters by it: one trigger, a tenant,
    // every tenant.
    let (ids, page) = list(app, "tenant=shop&trigger=Order&consumer=webshop").await;
    assert_eq!(ids, vec![shop2.clone(), shop1.clone()], "newest first");
    for m in page["messages"].as_array().unwrap() {
        assert_eq!(m["consumer"], "webshop");
        assert_eq!(m["key_id"], s.key_id.as_str());
    }
    let (ids, _) = list(app, "tenant=shop&consumer=webshop").await;
    assert_eq!(
        sorted(ids),
        sorted(vec![shop1.clone(), shop2.clone(), price.clone()])
    );
    let (ids, _) = list(app, "consumer=erp").await;
    assert_eq!(ids, vec![replay.clone(), erp.clone()]);
    let (ids, _) = list(app, &format!("tenant=shop&key_id={}", s.key_id)).await;
    assert_eq!(ids.len(), 3);
    let (ids, _) = list(
        app,
        &format!("tenant=shop&consumer=erp&key_id={}", s.key_id),
    )
    .await;
    assert!(ids.is_empty(), "both filters hold");
    let (ids, _) = list(app, "tenant=shop&consumer=nobody").await;
    assert!(ids.is_empty());
    let (ids, _) = list(
        app,
        "tenant=shop&trigger=Order&status=succeeded&consumer=erp",
    )
    .await;
    assert_eq!(ids, vec![replay.clone(), erp.clone()]);
    let (ids, page) = list(app, "tenant=shop&trigger=Open").await;
    assert_eq!(ids, vec![open.clone()]);
    assert_eq!(page["messages"][0]["consumer"], Value::Null);

    // The same from a terminal.
    let out = messages_command(
        app,
        &[
            "list",
            "--tenant",
            "shop",
            "--consumer",
            "webshop",
            "--json",
        ],
        Some(GLOBAL_TOKEN),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 3, "{page}");
    let out = messages_command(
        app,
        &["list", "--tenant", "shop", "--consumer", "erp"],
        Some(GLOBAL_TOKEN),
    )
    .await;
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("CONSUMER"),
        "{table}"
    );
    assert!(table.contains(&erp) && table.contains(&replay), "{table}");
    assert!(table.contains(" erp "), "{table}");
    assert!(!table.contains(&shop1), "{table}");

    // `/_metrics` counts each consumer's calls.
    let text = app.get("/_metrics", None).await.text().await.unwrap();
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        )
    };
    has(
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Order\",consumer=\"webshop\",status=\"202\"} 2",
    );
    has(
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Order\",consumer=\"erp\",status=\"202\"} 1",
    );
    has(
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Price\",consumer=\"webshop\",status=\"200\"} 1",
    );
    has(
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Hook\",consumer=\"duro\",status=\"202\"} 1",
    );
    has("flowgate_requests_total{tenant=\"shop\",trigger=\"Open\",consumer=\"\",status=\"202\"} 1");
    // A refused call names nobody.
    assert_eq!(
        app.post_json("/shop/Order", Some("wrong"), &json!({}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let text = app.get("/_metrics", None).await.text().await.unwrap();
    assert!(
        text.lines().any(|l| l
            == "flowgate_requests_total{tenant=\"shop\",trigger=\"Order\",consumer=\"\",status=\"401\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_record_their_consumer_and_are_filtered_by_it() {
    records_and_filters_by_consumer(shop(None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_record_their_consumer_and_are_filtered_by_it_on_postgres() {
    let Some(pg) = crate::pg::schema("consumers").await else {
        return;
    };
    records_and_filters_by_consumer(shop(Some(pg.url.clone())).await).await;
}
