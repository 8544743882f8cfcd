//! Several `flowgate serve` processes on one PostgreSQL database: messages posted
//! round-robin over the nodes run once each, every lane in acceptance order, also
//! when a node is killed (`kill -9`) midway.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::crash::{Server, spawn_server};
use crate::helpers::write_flow;
use crate::pg::{PgSchema, query, schema};
use crate::stub::{Reply, Stub};

const ORDERED: usize = 3000;
const KEYED: usize = 3000;
const KEYS: usize = 50;
/// Posters for the keyed trigger; each owns `KEYS / POSTERS` keys.
const POSTERS: usize = 10;
const ORDERED_POSTERS: usize = 6;

/// A message's posting index and its successful attempt's start and end.
type Run = (i64, i64, i64);

fn flows(dir: &Path) {
    let flows = dir.join("flows");
    write_flow(
        &flows,
        "t/Ordered.yaml",
        "auth: { none: true }\ndelivery: { ordered: true }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.i }\n",
    );
    write_flow(
        &flows,
        "t/Keyed.yaml",
        "auth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.k }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.i }\n",
    );
}

async fn nodes(dir: &Path, pg: &PgSchema) -> Vec<Server> {
    let mut all = Vec::new();
    for n in 0..3 {
        // Small pools: two of these tests may run at once on one database server.
        let env = [
            ("FLOWGATE_LEASE", "2s"),
            ("FLOWGATE_WORKERS", "1"),
            ("FLOWGATE_POOL_SIZE", "4"),
        ];
        all.push(spawn_server(dir, &format!("node{n}.log"), &pg.url, &env).await);
    }
    all
}

/// Posts `bodies` in order, one at a time, each to the next live node (a refused
/// connection moves on to the next node with the same Idempotency-Key). Returns
/// the acknowledged indexes.
async fn post_in_order(
    bases: Arc<Vec<String>>,
    path: &str,
    bodies: Vec<serde_json::Value>,
    acked: Arc<AtomicUsize>,
) -> Vec<u64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut done = Vec::new();
    let mut node = 0usize;
    for body in bodies {
        let i = body["i"].as_u64().unwrap();
        for _ in 0..30 {
            node += 1;
            let url = format!("{}{path}", bases[node % bases.len()]);
            let sent = client
                .post(&url)
                .header("idempotency-key", format!("{path}-{i}"))
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => {
                    done.push(i);
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(r) => panic!("{url}: {}", r.status()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    done
}

/// Waits until every stored message has succeeded, at most `within`.
pub async fn all_succeed(url: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows = query(
            url,
            "SELECT count(*) FROM messages WHERE status <> 'succeeded'",
        )
        .await;
        let left: i64 = rows[0].get(0);
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} messages did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the load; once `kill_at` messages are acknowledged, node 1 is killed.
async fn run(test: &str, kill_at: Option<usize>) {
    let Some(pg) = schema(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    flows(dir.path());
    let mut servers = nodes(dir.path(), &pg).await;
    let bases = Arc::new(servers.iter().map(|s| s.base.clone()).collect::<Vec<_>>());
    let acked = Arc::new(AtomicUsize::new(0));

    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    // The one-lane trigger has several posters: its acceptance order is the
    // store's, which must keep each poster's order.
    for p in 0..ORDERED_POSTERS {
        let bodies: Vec<_> = (0..ORDERED)
            .filter(|i| i % ORDERED_POSTERS == p)
            .map(|i| json!({"i": i, "p": p}))
            .collect();
        tasks.push(tokio::spawn(post_in_order(
            bases.clone(),
            "/t/Ordered",
            bodies,
            acked.clone(),
        )));
    }
    for p in 0..POSTERS {
        let bodies: Vec<_> = (0..KEYED)
            .filter(|i| (i % KEYS) % POSTERS == p)
            .map(|i| json!({"i": i, "p": p, "k": format!("key{}", i % KEYS)}))
            .collect();
        tasks.push(tokio::spawn(post_in_order(
            bases.clone(),
            "/t/Keyed",
            bodies,
            acked.clone(),
        )));
    }
    if let Some(at) = kill_at {
        let acked = acked.clone();
        assert!(
            crate::helpers::eventually(Duration::from_secs(60), || {
                let acked = acked.clone();
                async move { acked.load(Ordering::Relaxed) >= at }
            })
            .await,
            "{at} messages not acknowledged within a minute"
        );
        let killed = &mut servers[1].child;
        killed.kill().unwrap();
        killed.wait().unwrap();
    }
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap().len();
    }
    let posted = started.elapsed();
    assert_eq!(
        acknowledged,
        ORDERED + KEYED,
        "every message was accepted by some node"
    );

    // Everything runs to success (the killed node's lanes after its lease lapses).
    all_succeed(&pg.url, Duration::from_secs(240)).await;
    let finished = started.elapsed();
    println!("posted after {posted:?}, finished after {finished:?}");

    // Per lane, in acceptance order (seq): each poster's order, and each message's
    // successful attempt started after the one before it finished.
    let rows = query(
        &pg.url,
        "SELECT trigger, coalesce(lane, ''), (input::jsonb -> 'body' ->> 'i')::int8,
                (attempt_log -> -1 ->> 'started_at')::int8, (attempt_log -> -1 ->> 'finished_at')::int8,
                (input::jsonb -> 'body' ->> 'p')::int8
         FROM messages ORDER BY seq",
    )
    .await;
    assert_eq!(rows.len(), ORDERED + KEYED, "each message stored once");
    let mut lanes: HashMap<(String, String), Vec<Run>> = HashMap::new();
    let mut posters: HashMap<(String, i64), Vec<i64>> = HashMap::new();
    for r in &rows {
        lanes
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push((r.get(2), r.get(3), r.get(4)));
        posters
            .entry((r.get(0), r.get(5)))
            .or_default()
            .push(r.get(2));
    }
    for (poster, is) in &posters {
        assert!(
            is.windows(2).all(|w| w[0] < w[1]),
            "{poster:?}: accepted out of posting order"
        );
    }
    assert_eq!(lanes.len(), 1 + KEYS);
    for (lane, runs) in &lanes {
        for pair in runs.windows(2) {
            assert!(
                pair[0].2 <= pair[1].1,
                "{lane:?}: message {} started before message {} finished",
                pair[1].0,
                pair[0].0
            );
        }
    }
    let reruns = query(&pg.url, "SELECT count(*) FROM messages WHERE attempts > 1").await;
    println!(
        "{} messages over {} lanes on 3 nodes: posted in {posted:?}, all done after {:?}; {} ran more than once",
        rows.len(),
        lanes.len(),
        started.elapsed(),
        reruns[0].get::<_, i64>(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_every_lane_in_acceptance_order() {
    run("multinode", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_midway_loses_nothing_and_order_holds() {
    run("multinode_kill", Some((ORDERED + KEYED) / 2)).await;
}

/// An unordered trigger whose every message calls `stub` once, one at a time.
fn slow_flow(flows: &Path, stub: &Stub) {
    write_flow(
        flows,
        "t/_tenant.yaml",
        &format!(
            "connections:\n  sink:\n    http:\n      base_url: \"{}\"\n      timeout: 5s\n",
            stub.url()
        ),
    );
    write_flow(
        flows,
        "t/Slow.yaml",
        "auth: { none: true }\ndelivery: { concurrency: 1 }\nresponse: { mode: async }\nsteps:\n  - http: { method: POST, connection: sink, url: /in, body: .body }\n",
    );
}

/// Posts `n` messages to the slow trigger at once; each is accepted.
async fn post_slow(base: &str, n: usize) {
    let client = reqwest::Client::new();
    let posts: Vec<_> = (0..n)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{base}/t/Slow"));
            tokio::spawn(async move { client.post(url).json(&json!({ "i": i })).send().await })
        })
        .collect();
    for p in posts {
        assert_eq!(p.await.unwrap().unwrap().status(), 202);
    }
}

/// Two nodes on a fresh schema (`lease` as given, one worker each) serving the
/// slow trigger, whose every call to the stub takes 50 ms.
struct SlowPair {
    pg: PgSchema,
    stub: Stub,
    first: Server,
    second: Server,
    _dir: tempfile::TempDir,
}

async fn slow_pair(test: &str, lease: &str) -> Option<SlowPair> {
    let pg = schema(test).await?;
    let stub = Stub::start(Reply::json(200, json!({})).delay(Duration::from_millis(50))).await;
    let dir = tempfile::tempdir().unwrap();
    slow_flow(&dir.path().join("flows"), &stub);
    let env = [
        ("FLOWGATE_LEASE", lease),
        ("FLOWGATE_WORKERS", "1"),
        ("FLOWGATE_POOL_SIZE", "4"),
    ];
    let first = spawn_server(dir.path(), "a.log", &pg.url, &env).await;
    let second = spawn_server(dir.path(), "b.log", &pg.url, &env).await;
    Some(SlowPair {
        pg,
        stub,
        first,
        second,
        _dir: dir,
    })
}

/// Unordered messages are stored claimed by the node that accepted them, which
/// runs them without claiming them back; when it dies holding some, their leases
/// lapse and another node runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_claimed_by_a_node_as_it_accepted_them_run_elsewhere_when_it_dies() {
    const MESSAGES: usize = 60;
    // Each call takes 50 ms and the trigger runs one at a time: the accepting
    // node still holds most of the messages when it is killed.
    let Some(SlowPair {
        pg,
        stub,
        first: mut accepting,
        second: other,
        _dir,
    }) = slow_pair("multinode_claimed", "2s").await
    else {
        return;
    };

    post_slow(&accepting.base, MESSAGES).await;
    // Stored claimed: running under one node's lease, none left queued for others.
    let rows = query(
        &pg.url,
        "SELECT count(*) FILTER (WHERE status = 'queued'), count(DISTINCT holder),
                count(*) FILTER (WHERE status = 'succeeded')
         FROM messages",
    )
    .await;
    let (queued, holders, succeeded): (i64, i64, i64) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(queued, 0, "no message waits in the shared queue");
    assert_eq!(holders, 1, "the accepting node holds them all");
    assert!(
        (succeeded as usize) < MESSAGES,
        "all {succeeded} already ran"
    );
    accepting.child.kill().unwrap();
    accepting.child.wait().unwrap();

    all_succeed(&pg.url, Duration::from_secs(60)).await;
    // Those the dead node held were taken over: their first attempt is recorded
    // as interrupted and the second one succeeded.
    let rows = query(
        &pg.url,
        "SELECT count(*) FILTER (WHERE attempts = 2 AND attempt_log -> 0 ->> 'outcome' = 'interrupted'),
                count(*)
         FROM messages",
    )
    .await;
    let (taken_over, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(all as usize, MESSAGES);
    assert!(taken_over > 0, "no message was taken over");
    assert!(stub.requests.lock().unwrap().len() >= MESSAGES);
    drop(other);
}

/// A node stopped by SIGTERM hands the messages it claimed and has not started
/// back at once, and lets its running attempt finish: another node runs the rest
/// long before their leases (30 s here) would lapse, and none runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_hands_back_what_it_has_not_started() {
    const MESSAGES: usize = 40;
    let Some(SlowPair {
        pg,
        stub: _stub,
        first: mut stopping,
        second: other,
        _dir,
    }) = slow_pair("multinode_stop", "30s").await
    else {
        return;
    };
    post_slow(&stopping.base, MESSAGES).await;

    let stopped = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &stopping.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = stopping.child.wait().unwrap();
    assert!(exit.success(), "a stopped node exits cleanly: {exit}");
    all_succeed(&pg.url, Duration::from_secs(15)).await;
    println!("all done {:?} after the stop", stopped.elapsed());
    let rows = query(
        &pg.url,
        "SELECT count(*) FILTER (WHERE attempts = 1), count(*) FROM messages",
    )
    .await;
    let (once, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!(all as usize, MESSAGES);
    assert_eq!(once, all, "every message ran once");
    drop(other);
}
