//! No event lost across a crash: a `flowgate serve` process is killed with
//! SIGKILL while messages succeed, each causing `message.succeeded` (wanted
//! by a subscription) and a business event its flow emits. After a restart on
//! the same database, every succeeded message's events reach the receiver.
//! Delivery is at least once: a delivery that was being sent when the process
//! died is sent again, so a receiver may see an event twice (the test counts
//! those), never miss one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::crash::{final_doc, load_then_kill, spawn_server};
use crate::helpers::{eventually, write_flow};

/// (event, message id) -> times received.
type Seen = Arc<Mutex<HashMap<(String, String), usize>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).default_service(web::to(
            |body: String, seen: web::Data<Seen>| async move {
                if let Ok(doc) = serde_json::from_str::<Value>(&body) {
                    let key = (
                        doc["event"].as_str().unwrap_or_default().to_owned(),
                        doc["data"]["message_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    *seen.lock().unwrap().entry(key).or_default() += 1;
                }
                HttpResponse::Ok().finish()
            },
        ))
    })
    .workers(2)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_events_are_produced_loses_none() {
    kill_9_while_events_are_produced(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_events_are_produced_loses_none_on_postgres() {
    let Some(pg) = crate::pg::schema("emit_crash").await else {
        return;
    };
    kill_9_while_events_are_produced(Some(pg.url.clone())).await;
}

/// On `store` (PostgreSQL), else on a SQLite file of the test's own.
async fn kill_9_while_events_are_produced(store: Option<String>) {
    let (base, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    write_flow(
        &flows,
        "t/_tenant.yaml",
        &format!(
            "subscriptions:\n  - name: all\n    url: {base}/hook\n    events: [message.succeeded, work.done]\n    enabled: true\n"
        ),
    );
    write_flow(
        &flows,
        "t/Work.yaml",
        "auth: { none: true }\ndelivery: { concurrency: 4, retry: [100ms] }\nresponse: { mode: async }\nsteps:\n  - set: { w: '[range(5000)] | length' }\n  - emit: { event: work.done, data: '{n: .body.n}' }\n",
    );
    let store =
        store.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("flowgate.db").display()));
    let env = [
        ("FLOWGATE_SUBSCRIPTIONS_ALLOW_HTTP", "true"),
        ("FLOWGATE_SUBSCRIPTIONS_DENY_PRIVATE", "false"),
        (
            "FLOWGATE_SUBSCRIPTIONS_RETRY",
            "100ms,100ms,100ms,100ms,100ms",
        ),
    ];
    let mut server = spawn_server(dir.path(), "first.log", &store, &env).await;
    let bodies = (0..400).map(|n| json!({"n": n})).collect();
    let acked = load_then_kill(&mut server, "/t/Work", bodies, 150).await;
    drop(server);
    let before = seen.lock().unwrap().len();

    let server = spawn_server(dir.path(), "second.log", &store, &env).await;
    for (id, _) in &acked {
        let doc = final_doc(&server.base, "/t/Work", id).await;
        assert_eq!(doc["status"], "succeeded");
    }
    let want: Vec<(String, String)> = acked
        .iter()
        .flat_map(|(id, _)| ["message.succeeded", "work.done"].map(|e| (e.to_owned(), id.clone())))
        .collect();
    let all_there = eventually(Duration::from_secs(60), || {
        let (seen, want) = (seen.clone(), want.clone());
        async move {
            let seen = seen.lock().unwrap();
            want.iter().all(|k| seen.contains_key(k))
        }
    })
    .await;
    let seen = seen.lock().unwrap();
    let missing: Vec<&(String, String)> = want.iter().filter(|k| !seen.contains_key(k)).collect();
    assert!(
        all_there,
        "{} of {} events missing after the restart, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.first()
    );
    let twice = seen.values().filter(|n| **n > 1).count();
    println!(
        "acknowledged {}, events received before the kill {before}, events {} (received more than once: {twice})",
        acked.len(),
        want.len()
    );
}
