//! A node cut off from the store (a TCP proxy between it and PostgreSQL is cut;
//! its flows still reach their own database): it cannot renew its leases, so it
//! stops executing what it held within one lease, and starts nothing more; the
//! other node takes the work over, and every effect is made once.

use std::time::Duration;

use serde_json::json;

use super::{Chaos, LEASE};
use crate::multinode::all_succeed;
use crate::pg_outage::{Proxy, database_host};

const MESSAGES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_node_cut_off_from_the_store_stops_executing_within_one_lease() {
    let Some(c) = Chaos::new("chaos_cut").await else {
        return;
    };
    let host = database_host();
    let proxy = Proxy::start(host.clone(), "127.0.0.1:0").await;
    let through_proxy = c
        .store("a")
        .replace(&host, &format!("127.0.0.1:{}", proxy.port));
    let a = c.node_on("a", "a", &through_proxy).await;
    let b = c.node("b").await;
    // Accepted by a, so held by a (stored claimed by it).
    let client = reqwest::Client::new();
    for n in 0..MESSAGES {
        let res = client
            .post(format!("{}/t/Work", a.base))
            .json(&json!({"n": n, "sleep": 0.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    c.until("SELECT count(*) FROM starts WHERE node = 'a'", 8)
        .await;
    let cut_at = c
        .numbers("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")
        .await[0];
    proxy.cut();
    all_succeed(&c.pg.url, Duration::from_secs(60)).await;

    let last_start = c.last("starts", "a").await;
    let last_effect = c.last("effects", "a").await;
    let lease = LEASE.as_micros() as i64;
    assert!(
        last_start - cut_at < lease,
        "a started a run {} ms after it was cut off",
        (last_start - cut_at) / 1000
    );
    assert!(
        last_effect - cut_at < lease,
        "a made an effect {} ms after it was cut off",
        (last_effect - cut_at) / 1000
    );
    let n = c
        .numbers(
            "SELECT count(*) FILTER (WHERE node = 'a'), count(*) FILTER (WHERE node = 'b') FROM starts",
        )
        .await;
    assert!(n[1] > 0, "b took the work over");
    let metrics = reqwest::get(format!("{}/_metrics", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lost: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flowgate_leases_lost_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(lost > 0.0, "a counted the leases it lost:\n{metrics}");
    let (effects, messages, duplicates) = c.effects().await;
    assert_eq!(messages as usize, MESSAGES);
    assert_eq!(duplicates, 0, "{effects} effects for {messages} messages");
    println!(
        "cut off after {} runs started there: last run started {} ms and last effect made {} ms \
         after the cut (lease {} ms), {lost} leases lost; b ran {}; duplicate effects: {duplicates}",
        n[0],
        (last_start - cut_at) / 1000,
        (last_effect - cut_at) / 1000,
        lease / 1000,
        n[1]
    );
    drop((a, b));
}
