//! The `sql` step against the real PostgreSQL (FLOWGATE_TEST_DATABASE_URL): every
//! type mapping, bound parameters, DML, statement timeouts. Each test works in a
//! schema of its own, dropped at the end.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::http_steps::trace_of;

/// A schema of its own on the test database; `None` (with a notice) when no
/// database is configured outside CI.
pub struct Schema {
    pub name: String,
    pub url: String,
    client: tokio_postgres::Client,
}

impl Schema {
    pub async fn create(prefix: &str) -> Option<Self> {
        let base = crate::pg::database_url()?;
        let (client, conn) = match tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
            Ok(c) => c,
            Err(e) if !crate::skips::ci() => {
                crate::skips::skipped(
                    "PostgreSQL",
                    format!(
                        "{base} is unreachable: {}",
                        flowgate::domain::chain::describe(&e)
                    ),
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL unreachable: {e}"),
        };
        tokio::spawn(conn);
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Some(Self { name, url, client })
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(&format!("SET search_path = {}; {sql}", self.name))
            .await
            .unwrap();
    }

    pub async fn query_one(&self, sql: &str) -> tokio_postgres::Row {
        self.client
            .batch_execute(&format!("SET search_path = {}", self.name))
            .await
            .unwrap();
        self.client.query_one(sql, &[]).await.unwrap()
    }

    pub async fn drop(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}

pub async fn spawn(schema: &Schema, triggers: &[(&str, &str)]) -> TestApp {
    let tenant = format!(
        "connections:\n  db: {{ postgres: \"{}\", pool_size: 4, statement_timeout: 10s }}\n",
        schema.url
    );
    crate::helpers::spawn_tenant("db", tenant, triggers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_maps_to_json() {
    let Some(schema) = Schema::create("fg_types").await else {
        return;
    };
    schema
        .exec(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE TABLE t (
               i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(40,10), n2 numeric,
               tx text, vc varchar(10), ch char(3), b bool, j json, jb jsonb,
               tz timestamptz, ts timestamp, d date, tm time, u uuid, by bytea, m mood,
               ai int4[], at text[], an numeric[], nul text);
             INSERT INTO t VALUES (
               -7, 2147483647, 9007199254740993, 1.5, 0.1, 123456789012345678901234567890.0123456789, -0.5,
               'héllo', 'v', 'ab', true, '{\"a\": [1, null]}', '{\"b\": {\"c\": 1.5}}',
               '2024-05-01 12:30:00.5+02', '2024-05-01 12:30:00', '2024-02-29', '23:59:58', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
               '\\x00ff', 'sad', '{1,NULL,3}', '{x,\"y z\"}', '{1.10,2}', NULL);",
        )
        .await;
    let flow = "auth: { none: true }\nmethods: [GET]\nsteps:\n  - sql: { connection: db, query: \"select * from t\", single: true, into: row }\n  - respond: { body: .vars.row }\n";
    let app = spawn(&schema, &[("Types", flow)]).await;
    let res = app.get("/db/Types", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let row: Value = res.json().await.unwrap();
    assert_eq!(
        row,
        json!({
            "i2": -7, "i4": 2147483647, "i8": 9007199254740993i64, "f4": 1.5, "f8": 0.1,
            "n": "123456789012345678901234567890.0123456789", "n2": "-0.5",
            "tx": "héllo", "vc": "v", "ch": "ab ", "b": true,
            "j": {"a": [1, null]}, "jb": {"b": {"c": 1.5}},
            "tz": "2024-05-01T10:30:00.5Z", "ts": "2024-05-01T12:30:00", "d": "2024-02-29",
            "tm": "23:59:58", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "by": {"base64": "AP8="}, "m": "sad",
            "ai": [1, null, 3], "at": ["x", "y z"], "an": ["1.10", "2"], "nul": null
        })
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_bound_and_an_injection_is_stored_as_data() {
    let Some(schema) = Schema::create("fg_params").await else {
        return;
    };
    schema
        .exec(
            "CREATE TABLE items (id text primary key, name text, price numeric(12,2), seen timestamptz,
                                 attrs jsonb, tags text[], qty int4, day date, ref uuid)",
        )
        .await;
    let upsert = r#"auth: { none: true }
methods: [POST]
steps:
  - name: upsert
    sql:
      connection: db
      query: |
        insert into items (id, name, price, seen, attrs, tags, qty, day, ref)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        on conflict (id) do update set name = excluded.name
      params: [.body.id, .body.name, .body.price, .body.seen, .body.attrs, .body.tags, .body.qty, .body.day, .body.ref]
      into: w
  - sql: { connection: db, query: "select name, price, attrs, tags from items where id = $1", params: [.body.id], single: true, into: row }
  - sql: { connection: db, query: "select * from items where id = $1", params: ['"nope"'], single: true, into: none }
  - respond: { body: '{w: .vars.w, row: .vars.row, none: .vars.none}' }
"#;
    let app = spawn(&schema, &[("Upsert", upsert)]).await;
    let evil = "x'); DROP TABLE items; --";
    let res = app
        .post_json(
            "/db/Upsert",
            None,
            &json!({"id": "A-1", "name": evil, "price": "12.50", "seen": "2024-05-01T10:00:00Z",
                    "attrs": {"k": [1, 2]}, "tags": ["a", "b"], "qty": 3, "day": "2024-05-01",
                    "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["w"], json!({"rows_affected": 1}));
    assert_eq!(
        body["row"],
        json!({"name": evil, "price": "12.50", "attrs": {"k": [1, 2]}, "tags": ["a", "b"]})
    );
    assert_eq!(body["none"], Value::Null);
    // The table is still there and holds the text as it was sent.
    let row = schema
        .query_one("select count(*) as n, max(name) as name from items")
        .await;
    assert_eq!(row.get::<_, i64>("n"), 1);
    assert_eq!(row.get::<_, String>("name"), evil);

    // A value of the wrong type fails the step with the parameter's problem.
    let res = app
        .post_json("/db/Upsert", None, &json!({"id": "B", "qty": "many"}))
        .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let trace = trace_of(&app, res, "Upsert").await;
    let err = trace[0]["error"].as_str().unwrap();
    assert!(err.contains("expected an integer"), "{err}");
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_fails_the_step() {
    let Some(schema) = Schema::create("fg_timeout").await else {
        return;
    };
    let flow = "auth: { none: true }\nmethods: [GET]\nsteps:\n  - name: slow\n    sql: { connection: db, query: \"select pg_sleep(5)\", timeout: 300ms }\n";
    let app = spawn(&schema, &[("Slow", flow)]).await;
    let res = app.get("/db/Slow", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let trace = trace_of(&app, res, "Slow").await;
    let err = trace[0]["error"].as_str().unwrap();
    assert!(err.contains("did not finish within 300ms"), "{err}");
    schema.drop().await;
}

/// The shipped flows with their connections pointed at a test schema and a stub.
pub async fn spawn_examples(schema: &Schema, duro: &str) -> TestApp {
    let sql = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sql/acme.sql"),
    )
    .unwrap();
    schema.exec(&sql).await;
    let (url, duro) = (schema.url.clone(), duro.to_owned());
    TestApp::spawn_with(
        move |flows| {
            let path = flows.join("acme/_tenant.yaml");
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("postgres://postgres@127.0.0.1:5432/postgres", &url)
                .replace("http://127.0.0.1:9090", &duro);
            std::fs::write(path, text).unwrap();
        },
        |_| {},
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_lookups_read_postgresql() {
    let Some(schema) = Schema::create("fg_acme").await else {
        return;
    };
    let app = spawn_examples(&schema, "http://127.0.0.1:9").await;
    let key = Some(crate::helpers::WEBSHOP_KEY);
    let res = app
        .get("/acme/ItemPriceDb?itemId=A-100&currency=SEK&qty=3", key)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"item": "A-100", "currency": "SEK", "qty": 3, "unit_price": 139.0, "total": 417.0})
    );
    let res = app.get("/acme/ItemPriceDb?itemId=Z-1", key).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get("/acme/StockAtHandDb?itemId=A-100&warehouse=NORTH", key)
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"item": "A-100", "warehouse": "NORTH", "on_hand": 15, "available": true})
    );
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duro_item_sync_pings_then_pulls_then_upserts() {
    let Some(schema) = Schema::create("fg_duro").await else {
        return;
    };
    let stub = crate::stub::Stub::start(crate::stub::Reply::json(
        200,
        json!({"id": "A-100", "name": "Apple crate", "attributes": {"weight_kg": 12.5},
               "updated_at": "2024-05-01T10:00:00Z"}),
    ))
    .await;
    let app = spawn_examples(&schema, &stub.url()).await;
    let body = r#"{"event":"ITEM_UPDATE","id":"A-100"}"#;
    let sig = flowgate::auth::signature::hex(&flowgate::auth::signature::compute(
        flowgate::domain::HmacAlgorithm::Sha256,
        b"example-duro-secret",
        &[body.as_bytes()],
    ));
    let res = app
        .client
        .post(app.url("/acme/DuroItemSync"))
        .header("x-duro-signature", format!("sha256={sig}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut done = None;
    for _ in 0..250 {
        let view = app
            .queue
            .message(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        if view.head.status.is_final() {
            done = Some(view);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let view = done.expect("the message finishes");
    assert_eq!(view.head.status.as_str(), "succeeded", "{}", view.trace);
    let reqs = stub.recorded();
    assert_eq!(reqs[0].path, "/api/items/A-100");
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Bearer example-duro-token")
    );
    let row = schema
        .query_one("select name, attributes::text as a from items where id = 'A-100'")
        .await;
    assert_eq!(row.get::<_, String>("name"), "Apple crate");
    assert_eq!(row.get::<_, String>("a"), r#"{"weight_kg": 12.5}"#);
    // A tampered ping is refused before anything runs.
    let res = app
        .client
        .post(app.url("/acme/DuroItemSync"))
        .header("x-duro-signature", format!("sha256={sig}"))
        .body(r#"{"event":"ITEM_UPDATE","id":"B-200"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    schema.drop().await;
}
