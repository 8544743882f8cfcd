//! `kill -9` of a node under load, started again at once: what it held runs
//! elsewhere once its leases lapse (a second attempt), nothing else runs twice,
//! no message goes beyond two attempts, and every effect is made once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{Chaos, post_all};
use crate::multinode::all_succeed;

const MESSAGES: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_kill_9_and_restart_under_load_runs_nothing_beyond_two_attempts() {
    let Some(c) = Chaos::new("chaos_kill").await else {
        return;
    };
    let mut a = c.node("a").await;
    let b = c.node("b").await;
    let bases = Arc::new(Mutex::new(vec![a.base.clone(), b.base.clone()]));
    let acked = Arc::new(AtomicUsize::new(0));
    let bodies = (0..MESSAGES)
        .map(|n| json!({"n": n, "sleep": 0.05}))
        .collect();
    let posting = tokio::spawn(post_all(bases.clone(), "/t/Work", bodies, 8, acked.clone()));
    let half = acked.clone();
    assert!(
        crate::helpers::eventually(Duration::from_secs(60), || {
            let half = half.clone();
            async move { half.load(Ordering::SeqCst) >= MESSAGES / 2 }
        })
        .await,
        "half the messages not acknowledged within a minute"
    );
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // What the killed node held: running, or stored claimed and waiting for a slot.
    let in_flight: HashSet<String> = c
        .column("SELECT id::text FROM messages WHERE status = 'running' AND holder LIKE 'a-%'")
        .await
        .into_iter()
        .collect();
    let again = c.node_on("a", "a-again", &c.store("a")).await;
    bases.lock().unwrap()[0] = again.base.clone();
    assert_eq!(
        posting.await.unwrap(),
        MESSAGES,
        "every message acknowledged"
    );
    all_succeed(&c.pg.url, Duration::from_secs(60)).await;

    let attempts = c.attempts().await;
    let rerun: Vec<&String> = attempts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    // On failure, each offending message's attempts as the store recorded them.
    let c = &c;
    let why = |ids: Vec<&String>| {
        let ids: Vec<String> = ids
            .into_iter()
            .take(5)
            .map(|id| format!("'{id}'"))
            .collect();
        let sql = format!(
            "SELECT id::text || ': ' || attempt_log::text FROM messages WHERE id::text IN ({})",
            ids.join(",")
        );
        async move { c.column::<String>(&sql).await.join("\n") }
    };
    let beyond: Vec<&String> = attempts
        .iter()
        .filter(|(_, n)| **n > 2)
        .map(|(id, _)| id)
        .collect();
    if !beyond.is_empty() {
        panic!("a message went beyond 2 attempts:\n{}", why(beyond).await);
    }
    let strays: Vec<&String> = rerun
        .iter()
        .copied()
        .filter(|id| !in_flight.contains(*id))
        .collect();
    if !strays.is_empty() {
        panic!(
            "only what the killed node held runs again; {} others did:\n{}",
            strays.len(),
            why(strays).await
        );
    }
    let started_twice: Vec<String> = c
        .column("SELECT msg FROM starts GROUP BY msg HAVING count(*) > 1")
        .await;
    assert!(started_twice.iter().all(|id| in_flight.contains(id)));
    let (effects, messages, duplicates) = c.effects().await;
    assert_eq!(
        messages as usize,
        attempts.len(),
        "an effect for each message"
    );
    assert_eq!(duplicates, 0, "{effects} effects for {messages} messages");
    println!(
        "{} messages ({MESSAGES} acknowledged); {} held by the killed node, {} of them taken over \
         (attempt 2), {} of which had started there (run twice); duplicate effects: {duplicates}",
        attempts.len(),
        in_flight.len(),
        rerun.len(),
        started_twice.len(),
    );
    drop((b, again));
}
