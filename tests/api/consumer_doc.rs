//! The consumer document and page: `/<tenant>/_openapi.json` for two keys
//! with different triggers, read by an OpenAPI 3.1 parser (oas3) with every
//! reference resolved and every schema compiled; real answers of each kind
//! (the flow's own, `200` without `respond`, `202`, the status URL's, errors)
//! checked against the schema the document gives for their path, method and
//! status. The page `/<tenant>/_docs` is driven in `consumer_docs_page.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ERP_KEY, TestApp, WEBSHOP_KEY, write_flow};

/// Open to anyone, by GET and POST.
const OPEN: &str = "description: Open to anyone\nmethods: [GET, POST]\nauth: { none: true }\nsteps:\n  - respond: { body: '{open: true}' }\n";
/// Disabled: listed for no one.
const OFF: &str =
    "enabled: false\nmethods: [GET]\nauth: { api_keys: [webshop, erp] }\nsteps:\n  - log: '1'\n";
/// Sync, without `respond`: answers `200 {"message_id", "status"}`.
const QUIET: &str = "methods: [POST]\nauth: { api_keys: [webshop] }\nsteps:\n  - log: .body\n";

/// The shipped flows, and the three triggers above in `acme`.
pub(crate) async fn app() -> TestApp {
    TestApp::spawn_with(
        |flows| {
            write_flow(flows, "acme/Open.yaml", OPEN);
            write_flow(flows, "acme/Off.yaml", OFF);
            write_flow(flows, "acme/Quiet.yaml", QUIET);
        },
        |_| {},
    )
    .await
}

async fn document(app: &TestApp, key: &str) -> Value {
    let res = app.get("/acme/_openapi.json", Some(key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["cache-control"], "private, no-cache");
    res.json().await.unwrap()
}

/// The trigger paths of a document (not the status URLs).
fn triggers(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| !p.ends_with("/messages/{message_id}"))
        .cloned()
        .collect()
}

/// `schema` with the document's components beside it, compiled as 2020-12
/// (what an OpenAPI 3.1 schema is), formats checked.
fn compile(doc: &Value, schema: &Value) -> Result<jsonschema::Validator, String> {
    let root = match schema {
        Value::Object(m) => {
            let mut m = m.clone();
            m.insert("components".into(), doc["components"].clone());
            Value::Object(m)
        }
        other => other.clone(),
    };
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("{e}: {schema}"))
}

/// What an OpenAPI 3.1 reader needs of the document: oas3's typed model reads
/// it and resolves every reference of every operation; every schema in it
/// compiles; each operation id is unique; each path template's `{name}` is a
/// declared path parameter.
fn assert_valid(doc: &Value) {
    let spec = oas3::from_json(doc.to_string()).expect("an OpenAPI 3.1 document");
    let version = spec.validate_version().expect("OpenAPI 3.1");
    assert_eq!((version.major, version.minor), (3, 1));
    let mut ids = BTreeSet::new();
    for (path, method, op) in spec.operations() {
        let at = format!("{method} {path}");
        let id = op.operation_id.clone().expect("an operation id");
        assert!(ids.insert(id.clone()), "{at}: operation id {id} twice");
        let params = op.parameters(&spec).unwrap_or_else(|e| panic!("{at}: {e}"));
        for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = name.trim_end_matches('}');
            assert!(
                params.iter().any(|p| p.name == name),
                "{at}: no parameter `{name}`"
            );
        }
        if let Some(body) = op
            .request_body(&spec)
            .unwrap_or_else(|e| panic!("{at}: {e}"))
        {
            for (ty, media) in &body.content {
                media
                    .schema(&spec)
                    .unwrap_or_else(|e| panic!("{at} body {ty}: {e}"));
            }
        }
        let declared = op.responses.as_ref().map_or(0, |r| r.len());
        let responses = op.responses(&spec);
        assert_eq!(
            responses.len(),
            declared,
            "{at}: a response did not resolve"
        );
        assert!(responses.keys().any(|s| s.starts_with('2')), "{at}");
        for (status, r) in &responses {
            for (ty, media) in &r.content {
                media
                    .schema(&spec)
                    .unwrap_or_else(|e| panic!("{at} {status} {ty}: {e}"));
            }
        }
    }
    // Every schema, where it stands, compiles against the document.
    fn walk(doc: &Value, v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    if k == "schema" {
                        compile(doc, child).unwrap_or_else(|e| panic!("{at}/schema: {e}"));
                    } else {
                        walk(doc, child, &format!("{at}/{k}"));
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(doc, i, at)),
            _ => {}
        }
    }
    walk(doc, &doc["paths"], "paths");
    for (name, _) in doc["components"]["schemas"].as_object().unwrap() {
        let r = json!({ "$ref": format!("#/components/schemas/{name}") });
        compile(doc, &r).unwrap_or_else(|e| panic!("component {name}: {e}"));
    }
}

/// Whether `body` is what the document allows `method path` to answer with `status`.
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) -> Result<(), String> {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return Err(format!(
            "{method} {path}: no JSON answer {status} in the document"
        ));
    };
    let validator = compile(doc, schema)?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {path} {status}: {}: {body}",
            errors.join("; ")
        ))
    }
}

async fn answer(res: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap())
}

#[tokio::test]
async fn each_key_gets_a_valid_document_of_the_triggers_it_may_call() {
    let app = app().await;
    let shop = document(&app, WEBSHOP_KEY).await;
    let erp = document(&app, ERP_KEY).await;
    assert_valid(&shop);
    assert_valid(&erp);
    assert_eq!(shop["openapi"], "3.1.0");
    let paths = |names: &[&str]| -> BTreeSet<String> {
        names.iter().map(|n| format!("/acme/{n}")).collect()
    };
    // Labels decide; open triggers are everyone's; disabled and signed ones no one's.
    let common = [
        "ItemPrice",
        "ItemPriceDb",
        "Open",
        "StockAtHand",
        "StockAtHandDb",
    ];
    let mut want = common.to_vec();
    want.extend(["Quiet", "StockReservation"]);
    assert_eq!(triggers(&shop), paths(&want));
    let mut want = common.to_vec();
    want.extend(["CreateCustomerRecord", "WorkOrder"]);
    assert_eq!(triggers(&erp), paths(&want));
    for t in triggers(&shop) {
        assert!(shop["paths"][format!("{t}/messages/{{message_id}}")]["get"].is_object());
    }
    assert!(shop["info"]["title"].as_str().unwrap().contains("webshop"));
    assert_ne!(shop["info"]["version"], erp["info"]["version"]);

    // What the trigger file says: description, each parameter's type, default,
    // enum, bounds and description; the answer's schema.
    let price = &shop["paths"]["/acme/ItemPrice"]["get"];
    assert_eq!(
        price["description"],
        "Item price for the web shop, answered from a price table held in the flow"
    );
    let param = |name: &str| {
        price["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .clone()
    };
    let item = param("itemId");
    assert_eq!(
        (&item["in"], &item["required"]),
        (&json!("query"), &json!(true))
    );
    assert!(item["description"].as_str().unwrap().contains("catalogue"));
    assert_eq!(
        param("currency")["schema"],
        json!({"type": "string", "default": "EUR", "enum": ["EUR", "SEK", "USD"]})
    );
    let qty = param("qty")["schema"].clone();
    assert_eq!(
        (
            &qty["type"],
            &qty["minimum"],
            &qty["maximum"],
            &qty["default"]
        ),
        (&json!("integer"), &json!(1), &json!(100000), &json!(1))
    );
    assert_eq!(
        price["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ItemPrice.response"
    );
    assert_eq!(price["x-flowgate-mode"], "sync");
    // The key in a header, except where no key is needed.
    let schemes = &shop["components"]["securitySchemes"];
    assert_eq!(
        schemes["apiKey"],
        json!({"type": "apiKey", "name": "X-Api-Key", "in": "header",
               "description": schemes["apiKey"]["description"]})
    );
    assert!(price.get("security").is_none());
    assert_eq!(shop["paths"]["/acme/Open"]["post"]["security"], json!([]));
    assert_eq!(
        shop["paths"]["/acme/Open"]["get"]["operationId"],
        "Open_get"
    );
    // A POST trigger: its body's content types and schema.
    let body = &shop["paths"]["/acme/StockReservation"]["post"]["requestBody"];
    assert_eq!(body["required"], true);
    assert_eq!(
        body["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/StockReservation.body"
    );
    let codes_409 = &shop["paths"]["/acme/StockReservation"]["post"]["responses"]["409"];
    assert!(
        codes_409["description"]
            .as_str()
            .unwrap()
            .contains("lane_blocked")
    );
}

#[tokio::test]
async fn the_document_is_refused_as_a_trigger_call_would_be() {
    let app = app().await;
    let (status, headers, body) = answer(app.get("/acme/_openapi.json", None).await).await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"flowgate\"");
    let (status, _, body) = answer(app.get("/acme/_openapi.json", Some("fg_nope")).await).await;
    assert_eq!(
        (status, body["errors"][0]["message"].as_str()),
        (401, Some("invalid API key"))
    );
    // An unknown tenant is the 404 a trigger call of it gets.
    let (status, _, body) = answer(app.get("/nosuch/_openapi.json", Some(ERP_KEY)).await).await;
    let (_, _, call) = answer(app.get("/nosuch/ItemPrice", Some(ERP_KEY)).await).await;
    assert_eq!((status, &body), (404, &call));
    let (status, headers, _) = answer(
        app.post_json("/acme/_openapi.json", Some(ERP_KEY), &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET");
    let res = app.get("/acme/_nothing", Some(ERP_KEY)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // The page and its files need no key; the page allows only its own files.
    let res = app.get("/acme/_docs", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let page = res.text().await.unwrap();
    assert!(page.contains("_docs/docs.js") && page.contains("_docs/docs.css"));
    for (file, ty) in [("docs.js", "text/javascript"), ("docs.css", "text/css")] {
        let res = app.get(&format!("/acme/_docs/{file}"), None).await;
        assert_eq!(res.status(), StatusCode::OK, "{file}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
    }
    assert_eq!(app.get("/nosuch/_docs", None).await.status(), 404);
    assert_eq!(app.get("/acme/_docs/other.js", None).await.status(), 404);
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let app = app().await;
    let shop = document(&app, WEBSHOP_KEY).await;
    let erp = document(&app, ERP_KEY).await;
    let price = "/acme/ItemPrice";
    let get = |path: &str, key: &str| {
        let url = path.to_owned();
        let key = key.to_owned();
        let app = &app;
        async move { answer(app.get(&url, Some(&key)).await).await }
    };

    // The flow's answer, against the trigger's `response_schema`.
    let (status, headers, body) = get("/acme/ItemPrice?itemId=A-100&qty=2", WEBSHOP_KEY).await;
    assert_eq!(status, 200, "{body}");
    check(&shop, "get", price, 200, &body).unwrap();
    assert!(headers.contains_key("x-message-id"));
    // (The check can fail.)
    assert!(check(&shop, "get", price, 200, &json!({"item": 1})).is_err());
    // Errors, each against its status's codes.
    let (status, _, body) = get("/acme/ItemPrice?currency=GBP&qty=0", WEBSHOP_KEY).await;
    assert_eq!(status, 400);
    check(&shop, "get", price, 400, &body).unwrap();
    let blocked = json!({"errors": [{"code": "lane_blocked", "message": "x"}]});
    assert!(check(&shop, "get", price, 400, &blocked).is_err());
    let (status, _, body) = get("/acme/ItemPrice?itemId=Z-999", WEBSHOP_KEY).await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (404, Some("rejected"))
    );
    check(&shop, "get", price, 404, &body).unwrap();
    let (status, _, body) = get("/acme/ItemPrice?itemId=A-100", "fg_wrong").await;
    assert_eq!(status, 401);
    check(&shop, "get", price, 401, &body).unwrap();
    // A sync flow without `respond`, and an open trigger.
    let res = app
        .post_json("/acme/Quiet", Some(WEBSHOP_KEY), &json!({"a": 1}))
        .await;
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 200);
    check(&shop, "post", "/acme/Quiet", 200, &body).unwrap();
    let (status, _, body) = get("/acme/Open", "").await;
    assert_eq!(status, 200);
    check(&shop, "get", "/acme/Open", 200, &body).unwrap();

    // Async: 202 with the status URL the document names, then that URL's answer.
    let create = "/acme/CreateCustomerRecord";
    let res = app
        .post_json(create, Some(ERP_KEY), &json!({"id": "c-1", "name": "Ada"}))
        .await;
    let (status, headers, body) = answer(res).await;
    assert_eq!(status, 202, "{body}");
    check(&erp, "post", create, 202, &body).unwrap();
    let id = body["message_id"].as_str().unwrap();
    let location = headers["location"].to_str().unwrap();
    let status_path = format!("{create}/messages/{{message_id}}");
    assert_eq!(location, status_path.replace("{message_id}", id));
    assert!(erp["paths"][&status_path]["get"].is_object());
    let done = app
        .wait_final(
            "acme/CreateCustomerRecord",
            id,
            ERP_KEY,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    check(&erp, "get", &status_path, 200, &done).unwrap();
    let (status, _, body) = get(&format!("{create}/messages/{}", uuid_like()), ERP_KEY).await;
    assert_eq!(status, 404);
    check(&erp, "get", &status_path, 404, &body).unwrap();
    // A body against the trigger's schema: one error per violation, with pointers.
    let res = app
        .post_json(create, Some(ERP_KEY), &json!({"name": ["Ada"], "email": 7}))
        .await;
    let (status, _, body) = answer(res).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["pointer"].is_string(), "{body}");
    check(&erp, "post", create, 400, &body).unwrap();
}

/// An id no message has.
fn uuid_like() -> &'static str {
    "0193f8a0-5c4e-7b21-9a3d-2f1e0c4b5a69"
}

#[tokio::test]
async fn a_reload_changes_the_document() {
    let app = app().await;
    let before = document(&app, WEBSHOP_KEY).await;
    assert!(before["paths"]["/acme/Later"].is_null());
    // (A document built before is served again, until the files change.)
    assert_eq!(document(&app, WEBSHOP_KEY).await, before);
    write_flow(
        &app.flows_dir(),
        "acme/Later.yaml",
        "description: Added while serving\nauth: { api_keys: [webshop] }\nsteps:\n  - log: .body\n",
    );
    let listed = crate::helpers::eventually(Duration::from_secs(10), || async {
        document(&app, WEBSHOP_KEY).await["paths"]["/acme/Later"]["post"]["description"]
            == "Added while serving"
    })
    .await;
    assert!(listed, "the new trigger is listed after the reload");
    assert_ne!(
        document(&app, WEBSHOP_KEY).await["info"]["version"],
        before["info"]["version"]
    );
}

#[tokio::test]
async fn keys_with_ids_and_expired_ones_are_answered_as_calls_are() {
    let keys: Vec<(String, String)> = (0..2).map(|_| flowgate::auth::keys::generate()).collect();
    let entry = |(id, key): &(String, String), expires: &str| {
        let hash = flowgate::auth::keys::hash(key).unwrap();
        format!("      - id: {id}\n        hash: \"{hash}\"\n        expires: {expires}\n")
    };
    let tenant = format!(
        "api_keys:\n  webshop:\n    keys:\n{}{}",
        entry(&keys[0], "2999-01-01T00:00:00Z"),
        entry(&keys[1], "2001-01-01T00:00:00Z")
    );
    let echo = "methods: [GET]\nauth: { api_keys: [webshop] }\nsteps:\n  - respond: { body: '{auth: .auth}' }\n";
    let app = crate::helpers::spawn_tenant("shop", tenant, &[("Echo", echo)]).await;
    let (valid, expired) = (&keys[0].1, &keys[1].1);
    let res = app.get("/shop/_openapi.json", Some(valid)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(triggers(&doc), BTreeSet::from(["/shop/Echo".to_owned()]));
    assert_valid(&doc);
    let (status, _, body) = answer(app.get("/shop/_openapi.json", Some(expired)).await).await;
    let (_, _, call) = answer(app.get("/shop/Echo", Some(expired)).await).await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (401, Some("key_expired"))
    );
    assert_eq!(body, call);
    check(&doc, "get", "/shop/Echo", 401, &call).unwrap();
}
