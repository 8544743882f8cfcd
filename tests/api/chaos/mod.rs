//! Chaos on PostgreSQL: real `flowgate serve` processes on loopback under load,
//! killed (`kill -9`) and started again, paused past their lease (`SIGSTOP`)
//! while holding a lane, or cut off from the store by a TCP proxy the test cuts.
//! Flows write their effects through `sql` steps with `once: true` into a table
//! of the test's schema (`effects`, with the node and the time), each run's
//! start into `starts`; a lane's effects also pass the epoch fence of
//! docs/flows.md. Leases are 3 s; each test takes a few hundred messages and
//! some 10-25 s.

mod cut;
mod kill;
mod pause;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::crash::{Server, spawn_server};
use crate::helpers::write_flow;
use crate::pg::{PgSchema, query, schema};

/// The nodes' lease.
pub const LEASE: Duration = Duration::from_secs(3);

const TABLES: &str = "
    CREATE TABLE effects (id bigserial PRIMARY KEY, msg text NOT NULL, n int NOT NULL,
                          node text NOT NULL, epoch bigint,
                          at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE starts (msg text NOT NULL, node text NOT NULL,
                         at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE lane_fence (trigger text NOT NULL, lane text NOT NULL,
                             epoch bigint NOT NULL CONSTRAINT stale_lane_epoch CHECK (epoch >= 0),
                             PRIMARY KEY (trigger, lane));";

/// Unordered: records its start, works `.body.sleep` seconds, makes its effect once.
const WORK: &str = r#"auth: { none: true }
delivery: { concurrency: 4, retry: [200ms, 200ms, 200ms] }
response: { mode: async }
steps:
  - name: start
    sql: { connection: db, query: "insert into starts (msg, node) values ($1, current_setting('application_name'))", params: [.meta.message_id] }
  - name: work
    sql: { connection: db, query: "select pg_sleep($1)::text", params: [.body.sleep] }
  - name: effect
    sql: { connection: db, query: "insert into effects (msg, n, node) values ($1, $2, current_setting('application_name'))", params: [.meta.message_id, .body.n], once: true }
"#;

/// One ordered lane: works, then makes its effect once, fenced by the lane's epoch.
const LANE: &str = r#"auth: { none: true }
delivery: { ordered: true, retry: [200ms, 200ms, 200ms, 200ms] }
response: { mode: async }
steps:
  - name: work
    sql: { connection: db, query: "select pg_sleep($1)::text", params: [.body.sleep] }
  - name: effect
    sql:
      connection: db
      query: "with fence as (insert into lane_fence as f (trigger, lane, epoch) values ($1, $2, $3) on conflict (trigger, lane) do update set epoch = case when f.epoch <= excluded.epoch then excluded.epoch else -1 end returning epoch) insert into effects (msg, n, node, epoch) select $4, $5, current_setting('application_name'), epoch from fence"
      params: [.trigger, .meta.lane, .meta.lane_epoch, .meta.message_id, .body.n]
      once: true
  - respond: { body: '{epoch: .meta.lane_epoch}' }
"#;

/// A schema with the effect tables and a flows folder whose `db` connection
/// names each node by its `CHAOS_NODE`.
pub struct Chaos {
    pub pg: PgSchema,
    dir: tempfile::TempDir,
}

impl Chaos {
    pub async fn new(test: &str) -> Option<Self> {
        let pg = schema(test).await?;
        crate::pg::run(&pg.url, TABLES).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        write_flow(
            &flows,
            "t/_tenant.yaml",
            &format!(
                "connections:\n  db: {{ postgres: \"{}&application_name=${{CHAOS_NODE}}\", pool_size: 8 }}\n",
                pg.url
            ),
        );
        write_flow(&flows, "t/Work.yaml", WORK);
        write_flow(&flows, "t/Lane.yaml", LANE);
        Some(Self { pg, dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The store URL of node `name` (its leases' holder starts with `name-`).
    pub fn store(&self, name: &str) -> String {
        format!("{}&application_name={name}", self.pg.url)
    }

    /// Starts node `name` on `store`; its log is `<log>.log` in the test's folder.
    pub async fn node_on(&self, name: &str, log: &str, store: &str) -> Server {
        let lease = format!("{}s", LEASE.as_secs());
        let env = [
            ("FLOWGATE_LEASE", lease.as_str()),
            ("FLOWGATE_WORKERS", "1"),
            ("FLOWGATE_POOL_SIZE", "4"),
            ("CHAOS_NODE", name),
        ];
        spawn_server(self.dir(), &format!("{log}.log"), store, &env).await
    }

    pub async fn node(&self, name: &str) -> Server {
        self.node_on(name, name, &self.store(name)).await
    }

    /// One row of numbers from `sql`.
    pub async fn numbers(&self, sql: &str) -> Vec<i64> {
        let rows = query(&self.pg.url, sql).await;
        (0..rows[0].len()).map(|i| rows[0].get(i)).collect()
    }

    /// The first column of `sql`'s rows.
    pub async fn column<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        query(&self.pg.url, sql)
            .await
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Effects made, messages they were made for, and duplicates.
    pub async fn effects(&self) -> (i64, i64, i64) {
        let n = self
            .numbers("SELECT count(*), count(DISTINCT msg) FROM effects")
            .await;
        (n[0], n[1], n[0] - n[1])
    }

    /// When node `node` last wrote a row of `table` (`starts`, `effects`), in
    /// microseconds since the epoch by the database's clock; 0 if never.
    pub async fn last(&self, table: &str, node: &str) -> i64 {
        self.numbers(&format!(
            "SELECT COALESCE((extract(epoch FROM max(at)) * 1000000)::int8, 0) FROM {table}
             WHERE node = '{node}'"
        ))
        .await[0]
    }

    /// Each message's attempts, by id.
    pub async fn attempts(&self) -> HashMap<String, i32> {
        query(&self.pg.url, "SELECT id::text, attempts FROM messages")
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Waits until `sql`'s one number reaches `at_least` (at most 30 s).
    pub async fn until(&self, sql: &str, at_least: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.numbers(sql).await[0] < at_least {
            assert!(tokio::time::Instant::now() < deadline, "{sql} < {at_least}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends a signal to a node's process.
pub fn signal(server: &Server, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Posts `bodies` from `posters` tasks, each to the next of `bases` (a refused
/// connection moves on to the next node); counts acknowledgements in `acked`.
/// Returns how many were acknowledged.
pub async fn post_all(
    bases: Arc<Mutex<Vec<String>>>,
    path: &'static str,
    bodies: Vec<Value>,
    posters: usize,
    acked: Arc<AtomicUsize>,
) -> usize {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let queue = Arc::new(Mutex::new(bodies));
    let tasks: Vec<_> = (0..posters)
        .map(|p| {
            let (client, queue, bases, acked) =
                (client.clone(), queue.clone(), bases.clone(), acked.clone());
            tokio::spawn(async move {
                let mut next = p;
                loop {
                    let body = queue.lock().unwrap().pop();
                    let Some(body) = body else {
                        return;
                    };
                    for _ in 0..100 {
                        next += 1;
                        let base = {
                            let b = bases.lock().unwrap();
                            b[next % b.len()].clone()
                        };
                        match client
                            .post(format!("{base}{path}"))
                            .json(&body)
                            .send()
                            .await
                        {
                            Ok(r) if r.status() == 202 => {
                                acked.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Ok(r) => panic!("{base}{path}: {}", r.status()),
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    acked.load(Ordering::SeqCst)
}
