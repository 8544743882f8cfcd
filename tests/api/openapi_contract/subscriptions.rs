//! The contract test's calls of the subscription endpoints.

use reqwest::StatusCode;
use serde_json::json;

use super::{BAD, CONFLICT, Contract, FORBIDDEN, NOT_FOUND, OK};
use crate::admin::{ACME_TOKEN, GLOBAL_TOKEN, READ_TOKEN};
use crate::helpers::TestApp;

/// The subscription endpoints: the file's (read-only) and one made here.
pub(super) async fn subscriptions(app: &TestApp, c: &Contract) {
    let (g, a) = (GLOBAL_TOKEN, ACME_TOKEN);
    let list = ("GET", "/subscriptions");
    let all = c.want(app, OK, list, "/subscriptions", g, None).await;
    let file = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "file")
        .expect("the other tenant's file subscription")["subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.want(app, NOT_FOUND, list, "/subscriptions?tenant=other", a, None)
        .await;
    let create = ("POST", "/subscriptions");
    let new = |tenant: &str, name: &str, url: &str| json!({"tenant": tenant, "name": name, "url": url, "events": ["message.*"]});
    let made = c
        .want(
            app,
            StatusCode::CREATED,
            create,
            "/subscriptions",
            a,
            Some(new("acme", "contract", "https://127.0.0.1:9/")),
        )
        .await;
    assert!(made["secret"].is_string(), "{made}");
    let refused = [
        (BAD, new("acme", "plain", "http://127.0.0.1:9/"), a),
        (CONFLICT, new("other", "audit", "https://127.0.0.1:9/"), g),
        (NOT_FOUND, new("other", "mine", "https://127.0.0.1:9/"), a),
    ];
    for (status, body, token) in refused {
        c.want(app, status, create, "/subscriptions", token, Some(body))
            .await;
    }
    let one = format!(
        "/subscriptions/{}",
        made["subscription_id"].as_str().unwrap()
    );
    let theirs = format!("/subscriptions/{file}");
    let (get, change) = (
        ("GET", "/subscriptions/{id}"),
        ("PATCH", "/subscriptions/{id}"),
    );
    // A `read` token sees a subscription and may change none of it.
    let r = READ_TOKEN;
    c.want(app, OK, get, &one, r, None).await;
    let read_only = [
        (
            create,
            "/subscriptions".to_owned(),
            Some(new("acme", "r", "https://127.0.0.1:9/")),
        ),
        (change, one.clone(), Some(json!({"enabled": true}))),
        (("DELETE", "/subscriptions/{id}"), one.clone(), None),
        (
            ("POST", "/subscriptions/{id}/rotate-secret"),
            format!("{one}/rotate-secret"),
            None,
        ),
        (
            ("POST", "/subscriptions/{id}/test"),
            format!("{one}/test"),
            None,
        ),
    ];
    for (endpoint, url, body) in read_only {
        let refused = c.want(app, FORBIDDEN, endpoint, &url, r, body).await;
        assert_eq!(refused["errors"][0]["code"], "read_only_token", "{refused}");
    }
    let shown = c.want(app, OK, get, &one, a, None).await;
    assert!(shown.get("secret").is_none(), "shown once only: {shown}");
    c.want(app, NOT_FOUND, get, &theirs, a, None).await;
    c.want(app, OK, get, &theirs, g, None).await;
    let changes = [
        (
            OK,
            &one,
            json!({"description": "d", "retry": ["1s"], "triggers": null}),
        ),
        (BAD, &one, json!({"events": ["lane.sideways"]})),
        (CONFLICT, &theirs, json!({"enabled": false})),
    ];
    for (status, url, body) in changes {
        c.want(app, status, change, url, g, Some(body)).await;
    }
    let rotate = ("POST", "/subscriptions/{id}/rotate-secret");
    c.want(
        app,
        CONFLICT,
        rotate,
        &format!("{theirs}/rotate-secret"),
        g,
        None,
    )
    .await;
    let rotated = c
        .want(app, OK, rotate, &format!("{one}/rotate-secret"), a, None)
        .await;
    assert_ne!(rotated["secret"], made["secret"]);
    let tested = c
        .want(
            app,
            OK,
            ("POST", "/subscriptions/{id}/test"),
            &format!("{one}/test"),
            a,
            None,
        )
        .await;
    assert_eq!(tested["ok"], false, "nothing listens on port 9: {tested}");
    assert_eq!(tested["error_kind"], "connect", "{tested}");
    let remove = ("DELETE", "/subscriptions/{id}");
    c.want(app, CONFLICT, remove, &theirs, g, None).await;
    c.want(app, OK, remove, &one, a, None).await;
    c.want(app, NOT_FOUND, get, &one, a, None).await;
}
