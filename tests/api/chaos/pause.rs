//! `SIGSTOP` of the node holding an ordered lane, past its lease: the other node
//! takes the lane over and runs on; the paused node, resumed, writes no stale
//! result (each message's result is from a lane epoch no older than the one
//! before it) and no effect out of order or twice.

use std::time::Duration;

use serde_json::json;

use super::{Chaos, LEASE, signal};
use crate::multinode::all_succeed;
use crate::pg::query;

const MESSAGES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_lane_holder_paused_past_its_lease_writes_nothing_stale_or_out_of_order() {
    let Some(c) = Chaos::new("chaos_pause").await else {
        return;
    };
    let a = c.node("a").await;
    let b = c.node("b").await;
    // Acceptance order is posting order: one at a time.
    let client = reqwest::Client::new();
    for n in 0..MESSAGES {
        let base = [&a.base, &b.base][n % 2];
        let res = client
            .post(format!("{base}/t/Lane"))
            .json(&json!({"n": n, "sleep": 0.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    c.until("SELECT count(*) FROM effects", 5).await;
    // The lane's holder (between two of its turns nobody holds it, briefly).
    c.until("SELECT count(*) FROM lanes WHERE holder IS NOT NULL", 1)
        .await;
    let held = query(&c.pg.url, "SELECT holder, epoch FROM lanes").await;
    let holder: String = held[0]
        .get::<_, Option<String>>(0)
        .expect("the lane is held");
    let paused_epoch: i64 = held[0].get(1);
    let (paused, name, other) = if holder.starts_with("a-") {
        (&a, "a", "b")
    } else {
        (&b, "b", "a")
    };
    signal(paused, "STOP");
    // Running there, or run there and not yet committed.
    let unfinished: Vec<String> = c
        .column("SELECT id::text FROM messages WHERE finished_at IS NULL")
        .await;
    let before = c
        .numbers(&format!(
            "SELECT count(*) FROM effects WHERE node = '{other}'"
        ))
        .await[0];
    tokio::time::sleep(LEASE * 2 + Duration::from_secs(1)).await;
    let while_paused = c
        .numbers(&format!(
            "SELECT count(*) FROM effects WHERE node = '{other}'"
        ))
        .await[0]
        - before;
    signal(paused, "CONT");
    all_succeed(&c.pg.url, Duration::from_secs(60)).await;

    // Effects in the order they were made are the lane's order, each once.
    let made: Vec<i32> = c.column("SELECT n FROM effects ORDER BY id").await;
    let out_of_order = made.windows(2).filter(|w| w[0] >= w[1]).count();
    assert_eq!(out_of_order, 0, "effects out of order: {made:?}");
    assert_eq!(made.len(), MESSAGES, "{made:?}");
    // Results in lane order come from epochs that never go back: none is a
    // stale holder's.
    let epochs: Vec<i64> = c
        .column("SELECT (response::jsonb #>> '{body,epoch}')::int8 FROM messages ORDER BY seq")
        .await;
    assert!(
        epochs.windows(2).all(|w| w[0] <= w[1]),
        "a stale result was written: {epochs:?}"
    );
    assert!(
        epochs.iter().any(|e| *e > paused_epoch),
        "the lane was taken over"
    );
    let ids = unfinished
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let stale = c
        .numbers(&format!(
            "SELECT count(*) FROM messages WHERE id IN ({ids})
               AND (response::jsonb #>> '{{body,epoch}}')::int8 <= {paused_epoch}"
        ))
        .await[0];
    assert_eq!(stale, 0, "a result of the paused holder was written");
    assert!(while_paused > 0, "the other node ran the lane meanwhile");
    let log = std::fs::read_to_string(c.dir().join(format!("{name}.log"))).unwrap();
    assert!(
        log.contains("leases lost") || log.contains("lost the lane's lease"),
        "the paused node knew it lost the lane:\n{log}"
    );
    println!(
        "lane held at epoch {paused_epoch} by the paused node, {} messages unfinished; \
         {while_paused} run by the other meanwhile; stale results written: {stale}, effects out \
         of order: {out_of_order}, duplicates: {}",
        unfinished.len(),
        c.effects().await.2
    );
}
