//! The admin API answers as its OpenAPI document says: every endpoint of the
//! document (which is the route table: both are made from one list) is called
//! for real, with a global and a tenant-scoped token, and each answer's body is
//! validated against the schema the document gives for its path, method and
//! status. An answer with a status the document does not list fails, and so
//! does an endpoint the test never called.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::admin::{
    ACME_TOKEN, GLOBAL_TOKEN, READ_TOKEN, admin_app, admin_app_with, one_good_one_bad,
};
use crate::helpers::TestApp;

mod subscriptions;

/// The served document and the endpoints called so far.
struct Contract {
    doc: Value,
    called: Mutex<BTreeSet<(String, String)>>,
}

impl Contract {
    async fn of(app: &TestApp) -> Self {
        // No token: the document is public, like the UI.
        let res = app.get("/_admin/api/openapi.json", None).await;
        assert_eq!(res.status(), StatusCode::OK);
        Self {
            doc: res.json().await.unwrap(),
            called: Mutex::default(),
        }
    }

    /// Every `(METHOD, path)` the document lists.
    fn endpoints(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                all.insert((method.to_uppercase(), path.clone()));
            }
        }
        all
    }

    /// Every operation's id, which OpenAPI wants unique.
    fn operation_ids(&self) -> Vec<String> {
        let paths = self.doc["paths"].as_object().unwrap();
        let ops = paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values());
        ops.map(|op| op["operationId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Whether `body` is what the document allows `method path` to answer with `status`.
    fn check(&self, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        if !op.is_object() {
            return Err(format!("{method} {path} is not in the document"));
        }
        let mut response = &op["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!(
                "{method} {path} answered {status}, which the document does not list"
            ));
        }
        if let Some(r) = response["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/responses/");
            response = &self.doc["components"]["responses"][name];
        }
        let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
            return Err(format!("{method} {path} {status} has no JSON schema"));
        };
        // The schema, with the components its references point into.
        let mut root = schema.clone();
        root.insert("components".into(), self.doc["components"].clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("{method} {path} {status}: the schema is invalid: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: {}\n{body:#}",
                errors.join("; ")
            ))
        }
    }

    /// Calls `method url` with `token` (`path` is the url's template in the
    /// document), checks the answer against the document and wants `status`.
    /// A 503 ("retry later": the store's pool was busy, as it can be with
    /// every test of the binary on one PostgreSQL server) is checked too, and
    /// the call made again, as a client would, until a deadline.
    async fn want(
        &self,
        app: &TestApp,
        status: StatusCode,
        (method, path): (&str, &str),
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        self.called
            .lock()
            .unwrap()
            .insert((method.to_owned(), path.to_owned()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (got, answer) = app.admin(method, url, token, body.clone()).await;
            if let Err(e) = self.check(method, path, got.as_u16(), &answer) {
                panic!("{url}: {e}");
            }
            let busy = got == StatusCode::SERVICE_UNAVAILABLE && status != got;
            if !busy || tokio::time::Instant::now() > deadline {
                assert_eq!(got, status, "{method} {url}: {answer}");
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn uncalled(&self) -> Vec<(String, String)> {
        let called = self.called.lock().unwrap();
        self.endpoints().difference(&called).cloned().collect()
    }
}

/// Polls `path` until `ready` holds for its answer.
async fn admin_until(app: &TestApp, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, doc) = app.admin("GET", path, GLOBAL_TOKEN, None).await;
        if ready(&doc) {
            return doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never became ready: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the scenario made: ids to call the endpoints with.
struct Made {
    /// Succeeded, failed (acme).
    ok: String,
    bad: String,
    /// Dead, each holding an ordered lane (acme).
    held: String,
    other_lane: String,
    /// The other tenant's message and the delivery of its event.
    theirs: String,
    delivery: String,
}

async fn make(app: &TestApp) -> Made {
    let (ok, bad) = one_good_one_bad(app).await;
    let lane = |lane: &str| app.post_async("/acme/Lanes", None, json!({"lane": lane, "n": 1}));
    let held = lane("a").await;
    let other_lane = lane("b").await;
    let theirs = app.post_async("/other/Secret", None, json!({"x": 1})).await;
    for (id, status) in [
        (&ok, "succeeded"),
        (&bad, "rejected"),
        (&held, "dead"),
        (&other_lane, "dead"),
        (&theirs, "succeeded"),
    ] {
        app.admin_wait(id, status).await;
    }
    let deliveries = admin_until(app, "/deliveries?tenant=other", |d| {
        d["deliveries"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let delivery = deliveries["deliveries"][0]["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    Made {
        ok,
        bad,
        held,
        other_lane,
        theirs,
        delivery,
    }
}

const OK: StatusCode = StatusCode::OK;
const ACCEPTED: StatusCode = StatusCode::ACCEPTED;
const NOT_FOUND: StatusCode = StatusCode::NOT_FOUND;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const CONFLICT: StatusCode = StatusCode::CONFLICT;
const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// Calls every endpoint of the document on `app`, with both tokens, for its
/// answers and for its errors; fails on any answer unlike the document, and on
/// an endpoint not called.
async fn every_endpoint_answers_as_documented(app: &TestApp) {
    let c = Contract::of(app).await;
    let m = make(app).await;
    let message = |id: &str| format!("/messages/{id}");
    let act = |id: &str, what: &str| format!("/messages/{id}/{what}");
    let delivery = format!("/deliveries/{}", m.delivery);
    let redeliver = format!("{delivery}/redeliver");
    let (g, a, r) = (GLOBAL_TOKEN, ACME_TOKEN, READ_TOKEN);

    // Reads with either token, and the errors of reads: (status, template, url, token).
    let mut reads = vec![
        (
            StatusCode::UNAUTHORIZED,
            "/triggers",
            "/triggers".to_owned(),
            "wrong",
        ),
        (NOT_FOUND, "/messages/{id}", message(&m.theirs), a),
        (OK, "/messages/{id}", message(&m.theirs), g),
        (NOT_FOUND, "/lanes", "/lanes?tenant=other".into(), a),
        (BAD, "/messages", "/messages?status=bogus".into(), g),
        (
            NOT_FOUND,
            "/deliveries",
            "/deliveries?tenant=other".into(),
            a,
        ),
        (
            BAD,
            "/deliveries",
            "/deliveries?tenant=other&cursor=x".into(),
            g,
        ),
        (OK, "/deliveries", "/deliveries?tenant=other".into(), g),
        (NOT_FOUND, "/deliveries/{id}", delivery.clone(), a),
        (OK, "/deliveries/{id}", delivery.clone(), g),
        (NOT_FOUND, "/keys", "/keys?tenant=other".into(), a),
        (NOT_FOUND, "/keys", "/keys?tenant=nobody".into(), g),
        (OK, "/keys", "/keys?tenant=other".into(), g),
        (OK, "/keys", "/keys?tenant=acme".into(), a),
        (OK, "/keys", "/keys?tenant=shop".into(), g),
    ];
    for (token, role) in [(g, "operate"), (a, "operate"), (r, "read")] {
        let me = c.want(app, OK, ("GET", "/me"), "/me", token, None).await;
        assert_eq!(me["role"], role, "{me}");
    }
    for token in [g, a, r] {
        for (path, url) in [
            ("/triggers", "/triggers".to_owned()),
            ("/tenants", "/tenants".into()),
            ("/lanes", "/lanes".into()),
            ("/lanes", "/lanes?tenant=acme&trigger=Lanes".into()),
            ("/messages", "/messages".into()),
            ("/messages", "/messages?tenant=acme&limit=1".into()),
            ("/messages/{id}", message(&m.ok)),
            ("/messages/{id}", message(&m.bad)),
            ("/messages/{id}", message(&m.held)),
        ] {
            reads.push((OK, path, url, token));
        }
    }
    for (status, path, url, token) in reads {
        c.want(app, status, ("GET", path), &url, token, None).await;
    }
    let lanes = c.want(app, OK, ("GET", "/lanes"), "/lanes", a, None).await;
    assert_eq!(lanes["lanes"].as_array().unwrap().len(), 2);
    let page = c
        .want(app, OK, ("GET", "/messages"), "/messages?limit=1", a, None)
        .await;
    assert!(page["next_cursor"].is_string());
    let full = c
        .want(app, OK, ("GET", "/deliveries/{id}"), &delivery, g, None)
        .await;
    assert!(full.get("payload").is_some(), "in full: {full}");

    // What an operator does, and its errors: (status, template, url, token, body).
    let skip = ("POST", "/messages/{id}/skip");
    let unblock = ("POST", "/messages/{id}/unblock");
    let replay = ("POST", "/messages/{id}/replay");
    let again = ("POST", "/deliveries/{id}/redeliver");
    let bulk = ("POST", "/replay");
    // A `read` token may do none of it (and nothing is done: the lane it
    // asked to skip is skipped by an operator below).
    let count = json!({"tenant": "acme", "trigger": "CreateCustomerRecord", "dry_run": true});
    for (endpoint, url, body) in [
        (again, redeliver.clone(), None),
        (skip, act(&m.held, "skip"), None),
        (unblock, act(&m.other_lane, "unblock"), None),
        (replay, act(&m.bad, "replay"), None),
        (bulk, "/replay".to_owned(), Some(count)),
    ] {
        let refused = c.want(app, FORBIDDEN, endpoint, &url, r, body).await;
        assert_eq!(refused["errors"][0]["code"], "read_only_token", "{refused}");
    }
    for (status, endpoint, url, token) in [
        (NOT_FOUND, again, redeliver.clone(), a),
        (ACCEPTED, again, redeliver.clone(), g),
        (CONFLICT, skip, act(&m.ok, "skip"), a),
        (OK, skip, act(&m.held, "skip"), a),
        (CONFLICT, unblock, act(&m.held, "unblock"), g),
        (OK, unblock, act(&m.other_lane, "unblock"), g),
        (NOT_FOUND, replay, act(&m.theirs, "replay"), a),
    ] {
        c.want(app, status, endpoint, &url, token, None).await;
    }
    let r = c
        .want(app, ACCEPTED, replay, &act(&m.bad, "replay"), a, None)
        .await;
    app.admin_wait(r["message_id"].as_str().unwrap(), "rejected")
        .await;

    // Bulk replay: count, replay what was counted; nothing to replay; errors.
    let failed = json!({"tenant": "acme", "trigger": "CreateCustomerRecord", "status": "rejected"});
    let with = |k: &str, v: Value| {
        let mut b = failed.clone();
        b[k] = v;
        b
    };
    for (status, body, token) in [
        (OK, with("dry_run", json!(true)), a),
        (CONFLICT, failed.clone(), g),
        (ACCEPTED, with("expect", json!(2)), g),
        (
            OK,
            json!({"tenant": "acme", "trigger": "None", "dry_run": true}),
            g,
        ),
        (OK, with("trigger", json!("no such name!")), g),
        (BAD, json!({"tenant": "acme"}), g),
        (
            NOT_FOUND,
            json!({"tenant": "other", "trigger": "Secret"}),
            a,
        ),
    ] {
        let bulk = ("POST", "/replay");
        c.want(app, status, bulk, "/replay", token, Some(body))
            .await;
    }

    subscriptions::subscriptions(app, &c).await;
    assert_eq!(c.uncalled(), Vec::new(), "endpoints the test never called");
}

/// A tenant whose consumer has every field of the keys page: a key with an
/// id, its expiry, a rate and a quota.
fn with_shop(flows: &std::path::Path) {
    let key = crate::limits::Key::new("partner");
    let tenant = format!(
        "api_keys:\n{}",
        key.entry(
            Some("2099-01-01T00:00:00Z"),
            &["rate: 10/s", "quota: 100/day"]
        )
    );
    crate::helpers::write_flow(flows, "shop/_tenant.yaml", &tenant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_documented_on_sqlite() {
    let app = admin_app_with(with_shop, |_| {}).await;
    every_endpoint_answers_as_documented(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_documented_on_postgres() {
    let Some(pg) = crate::pg::schema("openapi_contract").await else {
        return;
    };
    let app = admin_app_with(with_shop, |s| s.store = pg.url.clone()).await;
    every_endpoint_answers_as_documented(&app).await;
}

/// The check is not a formality: answers unlike the document fail it.
#[tokio::test]
async fn answers_unlike_the_document_fail() {
    let app = admin_app().await;
    let c = Contract::of(&app).await;
    let (_, triggers) = app.admin("GET", "/triggers", GLOBAL_TOKEN, None).await;
    c.check("GET", "/triggers", 200, &triggers).unwrap();

    let undocumented = c.check("GET", "/triggers", 418, &triggers).unwrap_err();
    assert!(undocumented.contains("does not list"), "{undocumented}");
    let unknown = c.check("GET", "/nothing", 200, &json!({})).unwrap_err();
    assert!(unknown.contains("not in the document"), "{unknown}");

    // A field renamed in the answer but not in the document.
    let mut renamed = triggers.clone();
    let rows = renamed["triggers"].as_array_mut().unwrap();
    let first = rows[0].as_object_mut().unwrap();
    let url = first.shift_remove("url").unwrap();
    first.insert("address".into(), url);
    assert!(c.check("GET", "/triggers", 200, &renamed).is_err());
    // A field missing, one of another type, and one more than documented.
    let mut missing = triggers.clone();
    missing["triggers"][0]
        .as_object_mut()
        .unwrap()
        .shift_remove("load_error");
    assert!(c.check("GET", "/triggers", 200, &missing).is_err());
    let mut retyped = triggers.clone();
    retyped["triggers"][0]["timeout_ms"] = json!("30s");
    assert!(c.check("GET", "/triggers", 200, &retyped).is_err());
    let mut extra = triggers.clone();
    extra["total"] = json!(1);
    assert!(c.check("GET", "/triggers", 200, &extra).is_err());
    // A message status the document does not list; it lists every status.
    let (_, bad) = crate::admin::one_good_one_bad(&app).await;
    app.admin_wait(&bad, "rejected").await;
    let (_, page) = app.admin("GET", "/messages", GLOBAL_TOKEN, None).await;
    let mut odd = page.clone();
    odd["messages"] = json!([page["messages"][0].clone()]);
    c.check("GET", "/messages", 200, &odd).unwrap();
    odd["messages"][0]["status"] = json!("exploded");
    assert!(c.check("GET", "/messages", 200, &odd).is_err());
    let statuses =
        &c.doc["components"]["schemas"]["MessageSummary"]["properties"]["status"]["enum"];
    for s in ["rejected", "cancelled", "failed"] {
        assert!(
            statuses.as_array().unwrap().contains(&json!(s)),
            "{statuses}"
        );
    }
    // An error body unlike `{"errors": [...]}`.
    let wrong = json!({"error": "unauthorized"});
    assert!(c.check("GET", "/triggers", 401, &wrong).is_err());
    // Every `{name}` of a path is a declared path parameter.
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        let names = path.split('{').skip(1).filter_map(|p| p.split_once('}'));
        for (name, _) in names {
            for op in item.as_object().unwrap().values() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let declared = params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == name);
                assert!(declared, "{path} declares `{name}`");
            }
        }
    }
    let ids = c.operation_ids();
    let unique: BTreeSet<&String> = ids.iter().filter(|i| !i.is_empty()).collect();
    assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
    // Nothing was called here: every endpoint is missing.
    assert_eq!(c.uncalled().len(), c.endpoints().len());
}
