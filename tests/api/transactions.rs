//! `transaction:` steps against the real PostgreSQL (FLOWGATE_TEST_DATABASE_URL):
//! a failure inside rolls back, concurrent reservations never oversell, an
//! execution stopped at its budget leaves no transaction open; and the flow
//! tests' `--rollback` leaves the database as it was. Each test works in a
//! schema of its own.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_tenant, write_flow};
use crate::sql_steps::Schema;

/// The tenant `db` on `schema`, its sessions named after the schema.
fn tenant_yaml(schema: &Schema, statement_timeout: &str) -> String {
    format!(
        "connections:\n  db: {{ postgres: \"{}&application_name={}\", pool_size: 8, statement_timeout: {statement_timeout} }}\n",
        schema.url, schema.name
    )
}

async fn spawn(schema: &Schema, triggers: &[(&str, &str)]) -> TestApp {
    spawn_tenant("db", tenant_yaml(schema, "10s"), triggers).await
}

const RESERVE: &str = r#"auth: { none: true }
methods: [POST]
steps:
  - transaction:
      connection: db
      steps:
        - name: stock
          sql: { connection: db, query: "select qty from stock where item = $1 for update", params: [.body.item], single: true, into: stock }
        - if: '(.vars.stock.qty // 0) < .body.qty'
          then:
            - fail: { status: 409, message: '"short"' }
        - name: take
          sql: { connection: db, query: "update stock set qty = qty - $2 where item = $1 returning qty", params: [.body.item, .body.qty], single: true, into: left }
  - respond: { status: 201, body: '{left: .vars.left.qty}' }
"#;

async fn qty(schema: &Schema, item: &str) -> i32 {
    schema
        .query_one(&format!("select qty from stock where item = '{item}'"))
        .await
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_after_a_statement_rolls_the_transaction_back() {
    let Some(schema) = Schema::create("fg_tx_fail").await else {
        return;
    };
    schema
        .exec("CREATE TABLE stock (item text primary key, qty int); CREATE TABLE log (item text); INSERT INTO stock VALUES ('A', 5)")
        .await;
    // The statement before the `fail` has run when the flow rejects.
    let flow = r#"auth: { none: true }
methods: [POST]
steps:
  - transaction:
      connection: db
      steps:
        - name: take
          sql: { connection: db, query: "update stock set qty = qty - $2 where item = $1 returning qty", params: [.body.item, .body.qty], single: true, into: left }
        - name: note
          sql: { connection: db, query: "insert into log values ($1)", params: [.body.item] }
        - if: .vars.left.qty < 0
          then:
            - fail: { status: 409, message: '"only \(.vars.left.qty + .body.qty) left"' }
  - respond: { status: 201, body: '{left: .vars.left.qty}' }
"#;
    let app = spawn(&schema, &[("Take", flow)]).await;
    let res = app
        .post_json("/db/Take", None, &json!({"item": "A", "qty": 7}))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "only 5 left", "{body}");
    assert_eq!(qty(&schema, "A").await, 5);
    let logged: i64 = schema.query_one("select count(*) from log").await.get(0);
    assert_eq!(logged, 0);

    let res = app
        .post_json("/db/Take", None, &json!({"item": "A", "qty": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(qty(&schema, "A").await, 3);
    let logged: i64 = schema.query_one("select count(*) from log").await.get(0);
    assert_eq!(logged, 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_in_transactions_never_oversell() {
    let Some(schema) = Schema::create("fg_tx_race").await else {
        return;
    };
    schema
        .exec("CREATE TABLE stock (item text primary key, qty int); INSERT INTO stock VALUES ('C-300', 10)")
        .await;
    // Unordered: nothing but the transaction keeps two reservations apart.
    let app = spawn(&schema, &[("Reserve", RESERVE)]).await;
    let one = json!({"item": "C-300", "qty": 1});
    let calls = (0..20).map(|_| app.post_json("/db/Reserve", None, &one));
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let reserved = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((reserved, refused), (10, 10), "{statuses:?}");
    assert_eq!(qty(&schema, "C-300").await, 0);
    schema.drop().await;
}

/// Sessions of the schema's connection that sit in an open transaction.
async fn open_transactions(schema: &Schema) -> i64 {
    schema
        .query_one(&format!(
            "select count(*) from pg_stat_activity where application_name = '{}' and state like 'idle in transaction%'",
            schema.name
        ))
        .await
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_stopped_at_its_budget_leaves_no_transaction_open() {
    let Some(schema) = Schema::create("fg_tx_budget").await else {
        return;
    };
    schema
        .exec("CREATE TABLE stock (item text primary key, qty int); INSERT INTO stock VALUES ('A', 5)")
        .await;
    // Stopped while a statement of the transaction runs, and while the
    // transaction waits between statements.
    let in_statement = r#"auth: { none: true }
methods: [POST]
limits: { time: 300ms }
steps:
  - transaction:
      connection: db
      steps:
        - name: take
          sql: { connection: db, query: "update stock set qty = qty - 1 where item = 'A'" }
        - name: slow
          sql: { connection: db, query: "select pg_sleep(30)" }
"#;
    let between = r#"auth: { none: true }
methods: [POST]
limits: { time: 300ms }
steps:
  - transaction:
      connection: db
      steps:
        - name: take
          sql: { connection: db, query: "update stock set qty = qty - 1 where item = 'A'" }
        - for_each: '[range(90000)]'
          as: i
          do: [ { set: { x: '[range(1000)] | add' } } ]
"#;
    let app = spawn_tenant(
        "db",
        tenant_yaml(&schema, "60s"),
        &[("InStatement", in_statement), ("Between", between)],
    )
    .await;
    for trigger in ["InStatement", "Between"] {
        let res = app
            .post_json(&format!("/db/{trigger}"), None, &json!({}))
            .await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "budget_exceeded", "{body}");
        // The row's lock is let go and the update undone.
        let released = eventually(Duration::from_secs(20), || async {
            open_transactions(&schema).await == 0
                && schema
                    .query_one(&format!(
                        "select count(*) from pg_stat_activity where application_name = '{}' and state = 'active'",
                        schema.name
                    ))
                    .await
                    .get::<_, i64>(0)
                    == 0
        })
        .await;
        assert!(released, "{trigger}: a transaction stayed open");
        assert_eq!(qty(&schema, "A").await, 5, "{trigger}");
    }
    // The pool still works.
    let flow = "auth: { none: true }\nmethods: [GET]\nsteps:\n  - transaction: { connection: db, steps: [ { name: q, sql: { connection: db, query: \"select qty from stock\", single: true, into: row } } ] }\n  - respond: { body: .vars.row }\n";
    write_flow(&app.flows_dir(), "db/Read.yaml", flow);
    let read = eventually(Duration::from_secs(10), || async {
        let res = app.get("/db/Read", None).await;
        res.status() == StatusCode::OK && res.json::<Value>().await.unwrap() == json!({"qty": 5})
    })
    .await;
    assert!(read);
    schema.drop().await;
}

#[test]
fn flowgate_test_rollback_leaves_the_table_as_it_was() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(schema) = runtime.block_on(Schema::create("fg_tx_cli")) else {
        return;
    };
    runtime.block_on(schema.exec(
        "CREATE TABLE stock (item text primary key, qty int); INSERT INTO stock VALUES ('C-300', 7)",
    ));
    let dir = tempfile::tempdir().unwrap();
    write_flow(dir.path(), "db/_tenant.yaml", &tenant_yaml(&schema, "10s"));
    write_flow(dir.path(), "db/Reserve.yaml", RESERVE);
    // Two cases in a row: each starts from the table as it was.
    write_flow(
        dir.path(),
        "db/Reserve.test.yaml",
        "- name: takes two\n  body: { item: C-300, qty: 2 }\n  expect: { status: 201, body: { left: 5 } }\n- name: takes two again\n  body: { item: C-300, qty: 2 }\n  expect: { status: 201, body: { left: 5 } }\n- name: too many\n  body: { item: C-300, qty: 8 }\n  expect: { status: 409 }\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["test", "--rollback"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    assert_eq!(runtime.block_on(qty(&schema, "C-300")), 7);
    // `flowgate run --rollback` the same.
    let body = dir.path().join("two.json");
    std::fs::write(&body, r#"{"item": "C-300", "qty": 2}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["run", "db/Reserve", "--rollback", "--body"])
        .arg(&body)
        .arg("--flows")
        .arg(dir.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["response"], json!({"status": 201, "body": {"left": 5}}));
    assert_eq!(runtime.block_on(qty(&schema, "C-300")), 7);
    // Without it the statements commit (the second case then sees 5 and is off).
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(runtime.block_on(qty(&schema, "C-300")), 3);
    runtime.block_on(schema.drop());
}

#[test]
fn check_names_each_step_a_transaction_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "t/_tenant.yaml",
        "connections:\n  db: { postgres: \"postgres://u@127.0.0.1:1/x\" }\n  other: { postgres: \"postgres://u@127.0.0.1:1/y\" }\n  api: { http: { base_url: \"http://127.0.0.1:1\" } }\n",
    );
    write_flow(
        dir.path(),
        "t/Tx.yaml",
        r#"auth: { none: true }
steps:
  - transaction:
      connection: db
      steps:
        - http: { url: /x, connection: api }
        - if: true
          then:
            - respond: { body: 1 }
        - transaction: { connection: db, steps: [ { log: '"x"' } ] }
        - sql: { connection: other, query: "select 1" }
        - sql: { connection: db, query: "select 1" }
          retry: [1s]
  - transaction: { connection: api, steps: [] }
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let messages: Vec<&str> = text
        .lines()
        .map(|l| l.splitn(4, ':').nth(3).unwrap_or(l).trim())
        .collect();
    assert_eq!(
        messages,
        [
            "an `http` step cannot run inside a `transaction`: the transaction would stay open, holding its locks, while the call waits; call before or after the transaction",
            "`respond` cannot run inside a `transaction`: the caller would be answered before the transaction commits; respond after it",
            "a `transaction` cannot hold another `transaction`: put the steps in the outer one",
            "this `sql` step uses connection `other` inside a transaction on `db`: only statements on the transaction's connection can run inside it",
            "`retry` does not apply inside a `transaction`: a failed statement ends the transaction; `delivery.retry` runs the message again",
            "connection `api` is an http connection; a `transaction` needs a postgres one (db, other)",
            "the transaction has no `steps`",
        ],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_reservation_takes_stock_and_answers_409_when_short() {
    let Some(schema) = Schema::create("fg_acme_res").await else {
        return;
    };
    let app = crate::sql_steps::spawn_examples(&schema, "http://127.0.0.1:9").await;
    let key = Some(crate::helpers::WEBSHOP_KEY);
    let reserve = async |qty: i64| {
        let body = json!({"item": "C-300", "qty": qty, "customer": "K-1"});
        app.post_json("/acme/StockReservation", key, &body).await
    };
    let res = reserve(5).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (&body["item"], &body["qty"], &body["left"]),
        (&json!("C-300"), &json!(5), &json!(2)),
        "{body}"
    );
    let res = reserve(3).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "only 2 of C-300 in stock");
    assert_eq!(
        schema
            .query_one("select qty from stock_levels where item = 'C-300'")
            .await
            .get::<_, i32>(0),
        2
    );
    let made: i64 = schema
        .query_one("select count(*) from reservations")
        .await
        .get(0);
    assert_eq!(made, 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_step_in_a_transaction_is_recorded_only_when_the_transaction_commits() {
    let Some(schema) = Schema::create("fg_tx_once").await else {
        return;
    };
    schema.exec("CREATE TABLE shipments (msg text)").await;
    // The first run rolls the shipment back, the second commits it and fails
    // after, the third finds it done.
    let flow = r#"auth: { none: true }
delivery: { retry: [50ms, 50ms] }
response: { mode: async }
steps:
  - transaction:
      connection: db
      steps:
        - name: ship
          sql: { connection: db, query: "insert into shipments values ($1) returning msg", params: [.meta.message_id], once: true, single: true, into: shipped }
        - if: .meta.attempt == 1
          then: [ { fail: { status: 500, message: '"inside"' } } ]
  - if: .meta.attempt == 2
    then: [ { fail: { status: 500, message: '"after"' } } ]
  - respond: { body: '{attempt: .meta.attempt, shipped: (.vars.shipped.msg == .meta.message_id)}' }
"#;
    let app = spawn(&schema, &[("Ship", flow)]).await;
    let (id, doc) = app.post_until_final("/db/Ship", &json!({})).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(
        doc["response"]["body"],
        json!({"attempt": 3, "shipped": true})
    );
    let rows: i64 = schema
        .query_one(&format!(
            "select count(*) from shipments where msg = '{id}'"
        ))
        .await
        .get(0);
    assert_eq!(rows, 1);
    schema.drop().await;
}
