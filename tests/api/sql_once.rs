//! `once: true` on `sql` steps: a message run again (retries here) has each
//! effect once, also inside `for_each`; two runs of one message at once make it
//! once as well; the record lives in `flowgate_effects` of the target database.

use serde_json::json;

use flowgate::domain::{MessageId, RunMeta};
use flowgate::engine::Stop;
use flowgate::flow::Loader;

use crate::helpers::write_flow;
use crate::sql_steps::{Schema, spawn};

const RERUN: &str = r#"auth: { none: true }
delivery: { retry: [50ms, 50ms] }
response: { mode: async }
steps:
  - name: ship
    sql: { connection: db, query: "insert into shipments (msg, item) values ($1, 0)", params: [.meta.message_id], once: true, into: shipped }
  - name: lines
    for_each: '[1, 2]'
    as: item
    do:
      - name: line
        sql: { connection: db, query: "insert into shipments (msg, item) values ($1, $2) returning item", params: [.meta.message_id, .vars.item], once: true, single: true }
  - if: .meta.attempt < 3
    then: [ { fail: { status: 500, message: '"again"' } } ]
  - respond: { body: '{shipped: .vars.shipped, attempt: .meta.attempt}' }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_step_has_its_effect_once_however_often_the_message_runs() {
    let Some(schema) = Schema::create("once_rerun").await else {
        return;
    };
    schema
        .exec("CREATE TABLE shipments (msg text, item int)")
        .await;
    let app = spawn(&schema, &[("Ship", RERUN)]).await;
    let (id, doc) = app.post_until_final("/db/Ship", &json!({})).await;
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 3);
    // The third run got the first run's result back.
    assert_eq!(
        doc["response"]["body"],
        json!({"shipped": {"rows_affected": 1}, "attempt": 3})
    );
    let rows = schema
        .query_one(&format!(
            "SELECT count(*), count(DISTINCT item) FROM shipments WHERE msg = '{id}'"
        ))
        .await;
    assert_eq!(rows.get::<_, i64>(0), 3, "one row per effect, not per run");
    assert_eq!(rows.get::<_, i64>(1), 3);
    let effects = schema
        .query_one(&format!(
            "SELECT string_agg(step, ',' ORDER BY step), count(*) FILTER (WHERE result IS NULL)
             FROM flowgate_effects WHERE message_id = '{id}'"
        ))
        .await;
    assert_eq!(effects.get::<_, &str>(0), "line[0],line[1],ship");
    assert_eq!(effects.get::<_, i64>(1), 0, "every result stored");
    let view = app
        .queue
        .message(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let skipped = view.trace[0]["detail"].as_str().unwrap();
    assert!(
        skipped.starts_with("done before by this message (once)"),
        "{skipped}"
    );
    schema.drop().await;
}

/// Two runs of one message at the same time (a node that lost its lease and the
/// one that took the message over): the second waits for the first's
/// transaction and gets its result; the effect is made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_a_message_at_once_make_its_effect_once() {
    let Some(schema) = Schema::create("once_race").await else {
        return;
    };
    schema
        .exec("CREATE TABLE shipments (msg text, item int)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        dir.path(),
        "db/_tenant.yaml",
        &format!("connections:\n  db: {{ postgres: \"{}\" }}\n", schema.url),
    );
    write_flow(
        dir.path(),
        "db/Slow.yaml",
        r#"auth: { none: true }
steps:
  - name: ship
    sql: { connection: db, query: "insert into shipments (msg, item) select $1, 1 from (select pg_sleep(0.3)) s", params: [.meta.message_id], once: true, into: r }
"#,
    );
    let report = Loader::new(dir.path()).load();
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let trigger = report.catalog.trigger("db", "Slow").unwrap().clone();
    let meta = RunMeta {
        message_id: MessageId::new(),
        attempt: 1,
        lane: None,
    };
    let doc = json!({"message_id": meta.message_id.to_string()});
    let (stop_a, stop_b) = (Stop::new(), Stop::new());
    let executor = crate::helpers::executor();
    let (a, b) = tokio::join!(
        executor.execute(&trigger, &doc, Some(&meta), None, &stop_a, None),
        executor.execute(&trigger, &doc, Some(&meta), None, &stop_b, None),
    );
    assert!(a.result.is_ok() && b.result.is_ok(), "{a:?} {b:?}");
    assert_eq!(a.vars()["r"], json!({"rows_affected": 1}));
    assert_eq!(b.vars()["r"], json!({"rows_affected": 1}));
    let rows = schema.query_one("SELECT count(*) FROM shipments").await;
    assert_eq!(rows.get::<_, i64>(0), 1);
    let details: Vec<String> = [&a, &b]
        .iter()
        .map(|ex| ex.trace_json()[0]["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        details
            .iter()
            .filter(|d| d.starts_with("done before"))
            .count(),
        1,
        "{details:?}"
    );
    schema.drop().await;
}

/// The first `once: true` steps of several nodes (or connections) at once all
/// create `flowgate_effects`: each must take the others' creation for its own,
/// however PostgreSQL reports the race (it once failed a run as "type
/// flowgate_effects already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_creating_the_effects_table_at_once_all_succeed() {
    let Some(schema) = Schema::create("once_create").await else {
        return;
    };
    let config: tokio_postgres::Config = schema.url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(8)
        .build()
        .unwrap();
    for round in 0..300 {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(pool.get().await.unwrap());
        }
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
        let creating: Vec<_> = clients
            .into_iter()
            .map(|c| {
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    flowgate::connect::effects::create_table(&c).await
                })
            })
            .collect();
        for c in creating {
            if let Err(e) = c.await.unwrap() {
                panic!("round {round}: {e:?}");
            }
        }
        schema.exec("DROP TABLE flowgate_effects").await;
    }
}
