//! Crash recovery: a `flowgate serve` process is killed with SIGKILL under load and
//! started again on the same database. Every message that got a 202 must run to
//! success, ordered lanes must keep acceptance order, and messages that were
//! running when the process died must run again.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::write_flow;

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(dir: &Path, log: &str) -> Server {
    let store = format!("sqlite://{}", dir.join("flowgate.db").display());
    spawn_server(dir, log, &store, &[]).await
}

/// `flowgate serve` on `dir/flows` and `store`, with extra environment; returns once ready.
pub async fn spawn_server(dir: &Path, log: &str, store: &str, env: &[(&str, &str)]) -> Server {
    let listen = format!("127.0.0.1:{}", free_port());
    spawn_server_in(None, &listen, dir, log, store, env).await
}

/// The same, listening on `listen`, inside network namespace `netns` when given.
pub async fn spawn_server_in(
    netns: Option<&str>,
    listen: &str,
    dir: &Path,
    log: &str,
    store: &str,
    env: &[(&str, &str)],
) -> Server {
    let stderr = std::fs::File::create(dir.join(log)).unwrap();
    let bin = env!("CARGO_BIN_EXE_flowgate");
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, bin]);
            c
        }
        None => Command::new(bin),
    };
    let child = command
        .arg("serve")
        .args(["--listen", listen])
        .arg("--flows")
        .arg(dir.join("flows"))
        .arg("--store")
        .arg(store)
        .env("FLOWGATE_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://{listen}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{}/_ready", server.base)).send().await
            && r.status() == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "server did not become ready; log:\n{}",
        std::fs::read_to_string(dir.join(log)).unwrap_or_default()
    );
}

/// Posts `bodies` from 16 tasks; once `kill_after` were acknowledged the server is
/// killed. Returns the acknowledged (id, body) pairs.
pub async fn load_then_kill(
    server: &mut Server,
    path: &str,
    bodies: Vec<Value>,
    kill_after: usize,
) -> Vec<(String, Value)> {
    let client = reqwest::Client::new();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (client, acked, count, queue) =
                (client.clone(), acked.clone(), count.clone(), queue.clone());
            let url = format!("{}{path}", server.base);
            tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let Ok(res) = client.post(&url).json(&body).send().await else {
                        return;
                    };
                    if res.status() != 202 {
                        return;
                    }
                    let Ok(doc) = res.json::<Value>().await else {
                        return;
                    };
                    let id = doc["message_id"].as_str().unwrap().to_owned();
                    acked.lock().unwrap().push((id, body));
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let counted = count.clone();
    assert!(
        crate::helpers::eventually(Duration::from_secs(60), || {
            let counted = counted.clone();
            async move { counted.load(Ordering::SeqCst) >= kill_after }
        })
        .await,
        "{kill_after} messages not acknowledged within a minute"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap();
    acked.clone()
}

pub async fn final_doc(base: &str, path: &str, id: &str) -> Value {
    let client = reqwest::Client::new();
    for _ in 0..1200 {
        let res = client
            .get(format!("{base}{path}/messages/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "acknowledged message {id} is unknown after the restart"
        );
        let doc: Value = res.json().await.unwrap();
        if doc["status"] == "succeeded" {
            return doc;
        }
        assert!(
            ["queued", "running", "retrying"].contains(&doc["status"].as_str().unwrap()),
            "{doc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {id} did not finish");
}

fn successful(doc: &Value) -> (String, String) {
    let a = doc["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|a| a["outcome"] == "succeeded")
        .unwrap();
    (
        a["started_at"].as_str().unwrap().to_owned(),
        a["finished_at"].as_str().unwrap().to_owned(),
    )
}

/// A message id and the (start, end) of its successful attempt.
type Run = (String, (String, String));

const WORK: &str = "'[range(20000)] | length'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        &dir.path().join("flows"),
        "t/Work.yaml",
        &format!(
            "auth: {{ none: true }}\ndelivery: {{ concurrency: 2, retry: [100ms] }}\nresponse: {{ mode: async }}\nsteps:\n  - set: {{ w: {WORK} }}\n  - respond: {{ body: '{{n: .body.n}}' }}\n"
        ),
    );
    let mut server = start(dir.path(), "first.log").await;
    let bodies = (0..600).map(|n| json!({"n": n})).collect();
    let acked = load_then_kill(&mut server, "/t/Work", bodies, 200).await;
    drop(server);
    assert!(acked.len() >= 200);

    let server = start(dir.path(), "second.log").await;
    let mut interrupted = 0;
    for (id, body) in &acked {
        let doc = final_doc(&server.base, "/t/Work", id).await;
        assert_eq!(doc["response"]["body"]["n"], body["n"]);
        interrupted += doc["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["outcome"] == "interrupted")
            .count();
    }
    println!(
        "acknowledged {}, attempts interrupted by the kill {interrupted}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_lane_order() {
    let dir = tempfile::tempdir().unwrap();
    write_flow(
        &dir.path().join("flows"),
        "t/Lanes.yaml",
        &format!(
            "auth: {{ none: true }}\ndelivery: {{ ordered: true, ordering_key: .body.lane }}\nresponse: {{ mode: async }}\nsteps:\n  - set: {{ w: {WORK} }}\n"
        ),
    );
    let mut server = start(dir.path(), "first.log").await;
    let bodies = (0..300)
        .map(|n| {
            let lane = ["a", "b", "c"][n % 3];
            json!({"lane": lane, "n": n})
        })
        .collect();
    let acked = load_then_kill(&mut server, "/t/Lanes", bodies, 100).await;
    drop(server);

    let server = start(dir.path(), "second.log").await;
    let mut lanes: HashMap<String, Vec<Run>> = HashMap::new();
    for (id, body) in &acked {
        let doc = final_doc(&server.base, "/t/Lanes", id).await;
        lanes
            .entry(body["lane"].as_str().unwrap().to_owned())
            .or_default()
            .push((id.clone(), successful(&doc)));
    }
    for (lane, runs) in &mut lanes {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[0].1.1 <= pair[1].1.0,
                "lane {lane}: {} ran at {:?}, before {} finished at {}",
                pair[1].0,
                pair[1].1,
                pair[0].0,
                pair[0].1.1
            );
        }
    }
    println!("acknowledged {} over {} lanes", acked.len(), lanes.len());
}
