//! Consumers' limits: `rate:` with `burst:` (per node) and `quota:` (per UTC
//! day, counted in the store, across nodes on PostgreSQL), each over its limit
//! a 429 with its code and `Retry-After`, and the `RateLimit-*` headers on
//! every answer to a limited consumer and on none to the others.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::admin::{GLOBAL_TOKEN, admin_app_with};
use crate::helpers::{TestApp, eventually, write_flow};

/// A consumer's key with an id.
pub struct Key {
    pub label: String,
    pub id: String,
    pub key: String,
    hash: String,
}

impl Key {
    pub fn new(label: &str) -> Self {
        let (id, key) = flowgate::auth::keys::generate();
        let hash = flowgate::auth::keys::hash(&key).unwrap();
        Self {
            label: label.into(),
            id,
            key,
            hash,
        }
    }

    /// Its `api_keys:` entry; `more` are lines of the label (`rate: 1/h`).
    pub fn entry(&self, expires: Option<&str>, more: &[&str]) -> String {
        let mut s = format!(
            "  {}:\n    keys:\n      - id: {}\n        hash: \"{}\"\n",
            self.label, self.id, self.hash
        );
        if let Some(at) = expires {
            s.push_str(&format!("        expires: {at}\n"));
        }
        for line in more {
            s.push_str(&format!("    {line}\n"));
        }
        s
    }
}

/// A trigger any of `labels` may call: it answers its `.auth`; `?n=` is an integer.
pub fn echo(labels: &[&str]) -> String {
    format!(
        "methods: [GET]\nauth:\n  api_keys: [{}]\nparams:\n  n: {{ type: integer, default: 1 }}\nsteps:\n  - respond: {{ body: '{{auth: .auth}}' }}\n",
        labels.join(", ")
    )
}

/// An admin app with tenant `shop` (`tenant`: its `_tenant.yaml`) and its
/// trigger `Echo`; `store`: another store URL.
pub async fn shop_app(tenant: String, labels: &[&str], store: Option<String>) -> TestApp {
    let echo = echo(labels);
    admin_app_with(
        move |f| {
            write_flow(f, "shop/_tenant.yaml", &tenant);
            write_flow(f, "shop/Echo.yaml", &echo);
        },
        move |s| {
            if let Some(url) = store {
                s.store = url;
            }
        },
    )
    .await
}

pub async fn call(app: &TestApp, key: &str, query: &str) -> Response {
    app.get(&format!("/shop/Echo{query}"), Some(key)).await
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset`, when the answer has them.
pub fn ratelimit(res: &Response) -> Option<(u64, u64, u64)> {
    let h = |name: &str| -> Option<u64> { res.headers().get(name)?.to_str().ok()?.parse().ok() };
    match (
        h("ratelimit-limit"),
        h("ratelimit-remaining"),
        h("ratelimit-reset"),
    ) {
        (Some(l), Some(r), Some(s)) => Some((l, r, s)),
        (None, None, None) => None,
        partial => panic!("some RateLimit headers only: {partial:?}"),
    }
}

fn retry_after(res: &Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A refused answer: its code, after checking the error body's shape.
pub async fn refused(res: Response) -> String {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = res.json().await.unwrap();
    let errors = body["errors"].as_array().expect("the error body");
    assert_eq!(errors.len(), 1, "{body}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    errors[0]["code"].as_str().unwrap().to_owned()
}

/// Seconds to the next UTC midnight.
pub fn to_midnight() -> u64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    86_400 - now % 86_400
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_refuses_past_its_burst_with_headers_on_every_answer() {
    let (burst, once, free, wide) = (
        Key::new("burst"),
        Key::new("once"),
        Key::new("free"),
        Key::new("wide"),
    );
    let tenant = format!(
        "api_keys:\n{}{}{}{}",
        burst.entry(None, &["rate: 1/h", "burst: 2"]),
        once.entry(None, &["rate: 1/h"]),
        free.entry(None, &[]),
        wide.entry(None, &["rate: 1000/s"]),
    );
    let app = shop_app(tenant, &["burst", "once", "free", "wide"], None).await;

    // Two at once, then one an hour: the third waits for the hour's token.
    let first = call(&app, &burst.key, "").await;
    assert_eq!(first.status(), StatusCode::OK);
    let (limit, remaining, reset) = ratelimit(&first).unwrap();
    assert_eq!((limit, remaining), (2, 1));
    assert!(
        (3590..=3600).contains(&reset),
        "full again in an hour: {reset}"
    );
    let second = call(&app, &burst.key, "").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(ratelimit(&second).map(|h| h.1), Some(0));
    let third = call(&app, &burst.key, "").await;
    let wait = retry_after(&third);
    assert!((3500..=3600).contains(&wait), "Retry-After {wait}");
    assert_eq!(ratelimit(&third).map(|h| (h.0, h.1)), Some((2, 0)));
    assert_eq!(refused(third).await, "rate_limited");

    // No burst given: one second of the rate, at least one request.
    let one = call(&app, &once.key, "").await;
    assert_eq!(ratelimit(&one).map(|h| (h.0, h.1)), Some((1, 0)));
    assert_eq!(
        refused(call(&app, &once.key, "").await).await,
        "rate_limited"
    );

    // A consumer without limits gets no headers; nor does a caller whose key
    // names no consumer.
    let open = call(&app, &free.key, "").await;
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(ratelimit(&open), None);
    let wrong = call(&app, &format!("fg_{}_{}", free.id, "A".repeat(43)), "").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ratelimit(&wrong), None);

    // An error answer to a limited consumer carries them too.
    let bad = call(&app, &wide.key, "?n=many").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(ratelimit(&bad).map(|h| (h.0, h.1)), Some((1000, 999)));

    // The keys page says what the consumers used.
    let (_, keys) = app
        .admin("GET", "/keys?tenant=shop", GLOBAL_TOKEN, None)
        .await;
    let of = |label: &str| {
        keys["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == label)
            .unwrap()
            .clone()
    };
    let b = of("burst");
    assert_eq!(
        (b["requests_today"].as_u64(), b["limited_today"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(b["rate"], serde_json::json!({"limit": "1/h", "burst": 2}));
    assert_eq!(of("once")["rate"]["burst"], 1);
    assert_eq!(of("free")["rate"], Value::Null);

    // `/_metrics` counts the refusals under their consumer.
    let text = app.get("/_metrics", None).await.text().await.unwrap();
    for line in [
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Echo\",consumer=\"burst\",status=\"429\"} 1",
        "flowgate_requests_total{tenant=\"shop\",trigger=\"Echo\",consumer=\"once\",status=\"429\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

/// Up to the quota, then `quota_exceeded` until midnight UTC; the headers
/// describe the limit closest to exhaustion (here the quota).
async fn quota_holds(app: &TestApp, capped: &Key) {
    for left in [2, 1, 0] {
        let res = call(app, &capped.key, "").await;
        assert_eq!(res.status(), StatusCode::OK);
        let (limit, remaining, reset) = ratelimit(&res).unwrap();
        assert_eq!((limit, remaining), (3, left));
        assert!(reset.abs_diff(to_midnight()) <= 5, "{reset}");
    }
    let over = call(app, &capped.key, "").await;
    assert!(retry_after(&over).abs_diff(to_midnight()) <= 5);
    assert_eq!(ratelimit(&over).map(|h| (h.0, h.1)), Some((3, 0)));
    assert_eq!(refused(over).await, "quota_exceeded");
}

fn capped_tenant(capped: &Key) -> String {
    format!(
        "api_keys:\n{}",
        capped.entry(None, &["rate: 1000/s", "quota: 3/day"])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_is_counted_in_the_store_on_sqlite() {
    let capped = Key::new("capped");
    let app = shop_app(capped_tenant(&capped), &["capped"], None).await;
    quota_holds(&app, &capped).await;
    let (_, keys) = app
        .admin("GET", "/keys?tenant=shop", GLOBAL_TOKEN, None)
        .await;
    let c = &keys["consumers"][0];
    assert_eq!(c["label"], "capped");
    assert_eq!(c["quota"]["used_today"], 3, "{keys}");
    assert_eq!(c["quota"]["remaining"], 0);
    assert_eq!(c["limited_today"], 1);
    // Written to the store by the next flush.
    let day = flowgate::domain::utc_day(flowgate::domain::now_micros());
    let store = app.queue.store().clone();
    let stored = eventually(Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let (rows, uses) = store.usage_of("shop", day).await.unwrap();
            rows.iter()
                .any(|r| r.label == "capped" && r.requests == 3 && r.limited == 1)
                && uses.iter().any(|u| u.label == "capped")
        }
    })
    .await;
    assert!(stored, "the counts reach the store");
}

/// `flowgate_usage_flushes_total` of a node.
pub async fn flushes(app: &TestApp) -> f64 {
    app.metric("flowgate_usage_flushes_total").await
}

/// Waits until `app` has flushed twice more (so once after now, whole).
pub async fn flushed(app: &TestApp) {
    let start = flushes(app).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            flushes(app).await >= start + 2.0
        })
        .await,
        "the node flushes its counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_daily_quota_holds_across_two_nodes() {
    let Some(pg) = crate::pg::schema("quota_two_nodes").await else {
        return;
    };
    let capped = Key::new("capped");
    let tenant = capped_tenant(&capped);
    let a = shop_app(tenant.clone(), &["capped"], Some(pg.url.clone())).await;
    let b = shop_app(tenant, &["capped"], Some(pg.url.clone())).await;

    // Two on node a; once a has written them and b has read them back, b
    // admits the third only.
    for _ in 0..2 {
        assert_eq!(call(&a, &capped.key, "").await.status(), StatusCode::OK);
    }
    flushed(&a).await;
    flushed(&b).await;
    let third = call(&b, &capped.key, "").await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(ratelimit(&third).map(|h| h.1), Some(0));
    assert_eq!(
        refused(call(&b, &capped.key, "").await).await,
        "quota_exceeded"
    );
    // And node a, once b's count has reached it, refuses too.
    flushed(&b).await;
    flushed(&a).await;
    assert_eq!(
        refused(call(&a, &capped.key, "").await).await,
        "quota_exceeded"
    );

    // Either node's keys page shows every node's counts.
    let (_, keys) = a
        .admin("GET", "/keys?tenant=shop", GLOBAL_TOKEN, None)
        .await;
    let c = &keys["consumers"][0];
    assert_eq!(c["requests_today"], 3, "{keys}");
    assert_eq!(c["limited_today"], 2, "{keys}");
}
