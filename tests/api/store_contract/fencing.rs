//! The contract's fencing cases: who may write an attempt's end, what recovery
//! frees, how lane epochs grow. Results are fenced by attempt on both stores;
//! leases and epochs are the shared store's alone (those tests take two nodes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flowgate::domain::{AttemptRecord, MessageStatus, Outcome, now_micros};

use super::{ClaimAll, done, end, message, stores, two_nodes};
use crate::pg::query;

fn start(n: u32) -> AttemptRecord {
    AttemptRecord {
        number: n,
        started_at: now_micros(),
        finished_at: None,
        outcome: None,
        error: None,
        error_code: None,
    }
}

/// A counter of calls, and a callback that counts one.
fn calls() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = n.clone();
    (n, move || {
        m.fetch_add(1, Ordering::SeqCst);
    })
}

/// An attempt's end is taken only while that attempt is the message's current
/// one: after a restart interrupted attempt 1, its late end is discarded (before
/// attempt 2 starts and after), and attempt 2's end is taken.
#[tokio::test]
async fn a_late_result_is_discarded_and_the_current_attempts_end_is_taken() {
    for (name, s) in stores("late_result_discarded").await {
        let store = s.store;
        let m = message(None, None, now_micros());
        store.enqueue(std::slice::from_ref(&m)).await.unwrap();
        store.started(m.id, start(1)).await;
        // A restart, once attempt 1's lease (on the shared store) lapsed.
        store.recover(now_micros() + 2_000_000).await.unwrap();
        let late = || done(m.id, 1, MessageStatus::Succeeded, false);
        store.finished(late()).await;
        store.flush().await.unwrap();
        let v = store.get(m.id).await.unwrap().unwrap();
        assert_eq!(v.head.status, MessageStatus::Queued, "{name}: not taken");
        assert_eq!(v.attempts.len(), 1, "{name}");
        assert_eq!(v.attempts[0].outcome, Some(Outcome::Interrupted), "{name}");

        store.started(m.id, start(2)).await;
        store.finished(late()).await;
        store.flush().await.unwrap();
        let v = store.get(m.id).await.unwrap().unwrap();
        assert_eq!(v.head.status, MessageStatus::Running, "{name}: not taken");
        store
            .finished(done(m.id, 2, MessageStatus::Failed, false))
            .await;
        let v = store.get(m.id).await.unwrap().unwrap();
        assert_eq!(v.head.status, MessageStatus::Failed, "{name}");
        assert_eq!(v.attempts.len(), 2, "{name}");
        assert_eq!(v.attempts[0].outcome, Some(Outcome::Interrupted), "{name}");
        assert_eq!(v.attempts[1].outcome, Some(Outcome::Failed), "{name}");
        // A finished message takes no more ends.
        store.finished(late()).await;
        let v = store.get(m.id).await.unwrap().unwrap();
        assert_eq!(v.head.status, MessageStatus::Failed, "{name}");
    }
}

/// An end is taken only while its holder's lease is live: a node whose lease
/// lapsed has its result discarded even when no other node took the message
/// over yet, and is told so.
#[tokio::test]
async fn pg_a_result_is_taken_only_under_a_live_lease() {
    let Some((a, b, _pg)) = two_nodes("pg_result_live_lease").await else {
        return;
    };
    let m = message(None, None, now_micros());
    a.enqueue(std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(a.claim_messages(1, a.now()).await.unwrap().len(), 1);
    // The node's clock moves a little over a lease on, without waiting for it.
    a.skew_local_clock(1_100_000);
    let written = a
        .end_attempt(end(m.id, 1, MessageStatus::Succeeded, a.now()), None)
        .await;
    assert!(!written.await.unwrap(), "told it was discarded");
    assert_eq!(a.stats().results_discarded, 1);
    let v = a.get(m.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Running);
    let again = b.claim_messages(1, a.now()).await.unwrap();
    assert_eq!(again[0].attempt, 2, "the message runs again");
}

/// Leases are renewed per (message, attempt): the end of attempt 1 (written, or
/// arriving late again) never stops the renewal of attempt 2 on the same node.
#[tokio::test]
async fn pg_leases_are_renewed_per_attempt() {
    let Some((a, _b, pg)) = two_nodes("pg_renewed_per_attempt").await else {
        return;
    };
    let m = message(None, None, now_micros());
    a.enqueue(std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(a.claim_messages(1, a.now()).await.unwrap()[0].attempt, 1);
    let retry = end(m.id, 1, MessageStatus::Retrying, a.now());
    assert!(a.end_attempt(retry.clone(), None).await.await.unwrap());
    assert_eq!(a.claim_messages(1, a.now()).await.unwrap()[0].attempt, 2);
    a.finished(retry).await;
    a.flush().await.unwrap();
    assert_eq!(a.stats().messages_held, 1, "attempt 2 is still held");

    let lease = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
    let sql = "SELECT lease_until FROM messages";
    let before = lease(query(&pg.url, sql).await);
    // Renewed a little later (time passed in).
    assert_eq!(
        a.heartbeat(a.now() + 50_000).await.unwrap(),
        0,
        "nothing lost"
    );
    assert!(lease(query(&pg.url, sql).await) > before, "renewed");
    let v = a.get(m.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Running);
    assert_eq!(v.attempts.len(), 2);
}

/// A lease is lost when a renewal finds the work taken over, or when no renewal
/// kept it live: whoever runs under it is told, and nothing starts under it.
#[tokio::test]
async fn pg_a_lost_lease_is_reported_and_nothing_starts_under_it() {
    let Some((a, b, _pg)) = two_nodes("pg_lost_lease").await else {
        return;
    };
    let t0 = now_micros();
    let (m1, m2) = (message(None, None, t0), message(None, None, t0 + 1));
    a.enqueue(&[m1.clone(), m2.clone(), message(Some("l"), None, t0)])
        .await
        .unwrap();
    assert_eq!(a.claim_messages(2, a.now()).await.unwrap().len(), 2);
    let lane = a.claim_lanes(1, a.now()).await.unwrap().remove(0);
    let (m1_lost, on_m1) = calls();
    let (lane_lost, on_lane) = calls();
    assert!(a.guard_message(m1.id, 1, on_m1));
    assert!(a.guard_lane(&lane, on_lane));
    assert!(a.lane_live(&lane) && a.message_live(m1.id, 1));

    // b takes m1 and the lane over (as it would once the leases lapsed by its
    // clock); a's next renewal finds them gone.
    let later = b.now() + 2_000_000;
    let taken = b.claim_messages(2, later).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(b.claim_lanes(1, later).await.unwrap()[0].epoch > lane.epoch);
    let lost = a.heartbeat(a.now()).await.unwrap();
    assert_eq!(lost, 3, "two messages and a lane");
    assert_eq!(a.stats().leases_lost, 3);
    assert_eq!(m1_lost.load(Ordering::SeqCst), 1);
    assert_eq!(lane_lost.load(Ordering::SeqCst), 1);
    assert!(!a.lane_live(&lane) && !a.message_live(m1.id, 1));
    let (_, never) = calls();
    assert!(!a.guard_message(m1.id, 1, never), "nothing starts under it");

    // No renewal at all: b's leases end by its own clock, without the database.
    let (m2_lost, on_m2) = calls();
    assert!(b.guard_message(m2.id, 2, on_m2));
    assert_eq!(b.expire(b.now()), 0);
    assert_eq!(b.expire(later + 1_000_000), 3);
    assert_eq!(m2_lost.load(Ordering::SeqCst), 1);
}

/// A lane's results are committed only while its holder's lease is live.
#[tokio::test]
async fn pg_a_lane_commits_only_under_a_live_lease() {
    let Some((a, _b, _pg)) = two_nodes("pg_lane_live_lease").await else {
        return;
    };
    let m = message(Some("l"), None, now_micros());
    a.enqueue(std::slice::from_ref(&m)).await.unwrap();
    let lane = a.claim_lanes(1, a.now()).await.unwrap().remove(0);
    let late = a.now() + 2_000_000;
    let result = vec![(end(m.id, 1, MessageStatus::Succeeded, late), None)];
    assert!(!a.commit_lane(&lane, result, None, late).await.unwrap());
    assert!(!a.lane_live(&lane));
    let v = a.get(m.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Queued);
}

/// Recovery at start frees what lapsed leases held and nothing else: a live
/// claim (another node's, or the recovering process's own) is left alone. A lane
/// it frees gets a higher epoch, so its old holder can write nothing more.
#[tokio::test]
async fn pg_recovery_frees_only_lapsed_leases_and_moves_lane_epochs_on() {
    let Some((a, b, pg)) = two_nodes("pg_recovery_lapsed").await else {
        return;
    };
    let t0 = now_micros();
    a.enqueue(&[message(Some("l"), None, t0), message(None, None, t0)])
        .await
        .unwrap();
    let lane = a.claim_lanes(1, a.now()).await.unwrap().remove(0);
    let m = a.claim_messages(1, a.now()).await.unwrap().remove(0);

    for node in [&a, &b] {
        assert_eq!(node.reclaim(node.now()).await.unwrap(), 0);
    }
    let held = query(&pg.url, "SELECT holder, epoch FROM lanes").await;
    assert_eq!(held[0].get::<_, Option<&str>>(0), Some(a.node()));
    assert_eq!(held[0].get::<_, i64>(1), lane.epoch);
    let view = a.get(m.id).await.unwrap().unwrap();
    assert_eq!(
        view.head.status,
        MessageStatus::Running,
        "a live claim is kept"
    );

    // As a node starting after a's leases lapsed.
    let later = b.now() + 2_000_000;
    assert_eq!(b.reclaim(later).await.unwrap(), 1);
    let freed = query(&pg.url, "SELECT holder, epoch FROM lanes").await;
    assert_eq!(freed[0].get::<_, Option<&str>>(0), None);
    let freed_epoch: i64 = freed[0].get(1);
    assert!(
        freed_epoch > lane.epoch,
        "reclaiming a lane moves its epoch on"
    );
    assert!(
        !a.commit_lane(&lane, Vec::new(), None, a.now())
            .await
            .unwrap(),
        "the old holder can write nothing more"
    );
    let next = b.claim_lanes(1, later).await.unwrap().remove(0);
    assert!(next.epoch > freed_epoch);
    assert_eq!(
        b.get(m.id).await.unwrap().unwrap().head.status,
        MessageStatus::Queued
    );
}

/// A lane's epoch never goes back: retention deletes an idle lane's row, and a
/// new message for that lane makes it again, with an epoch above all before.
#[tokio::test]
async fn pg_a_lanes_epoch_grows_after_retention_deleted_its_row() {
    let Some((a, _b, pg)) = two_nodes("pg_epoch_after_purge").await else {
        return;
    };
    let first = message(Some("l"), None, now_micros() - 1_000_000);
    a.enqueue(std::slice::from_ref(&first)).await.unwrap();
    let lane = a.claim_lanes(1, a.now()).await.unwrap().remove(0);
    let finished = end(first.id, 1, MessageStatus::Succeeded, a.now());
    assert!(
        a.commit_lane(&lane, vec![(finished, None)], Some(0), a.now())
            .await
            .unwrap()
    );
    assert_eq!(a.purge(now_micros()).await.unwrap(), 1);
    let left = query(&pg.url, "SELECT count(*) FROM lanes").await;
    assert_eq!(left[0].get::<_, i64>(0), 0, "the idle lane's row is gone");

    a.enqueue(&[message(Some("l"), None, now_micros())])
        .await
        .unwrap();
    let again = a.claim_lanes(1, a.now()).await.unwrap().remove(0);
    assert!(
        again.epoch > lane.epoch,
        "{} after {}",
        again.epoch,
        lane.epoch
    );
}

/// The store's sessions give up waiting for a lock after `lock_timeout` and
/// are ended by the server when idle inside a transaction: a node paused inside
/// a lane's commit (holding the lane's row) stalls others' enqueues to that lane
/// only that long.
#[tokio::test]
async fn pg_store_sessions_bound_lock_waits_and_idle_transactions() {
    let Some(pg) = crate::pg::schema("pg_session_timeouts").await else {
        return;
    };
    let options = flowgate::store::PgOptions {
        pool_size: 4,
        lease: std::time::Duration::from_secs(2),
        lock_timeout: std::time::Duration::from_millis(300),
        idle_in_transaction_timeout: std::time::Duration::from_millis(400),
        ..Default::default()
    };
    let store = flowgate::store::PgStore::connect(&pg.url, options)
        .await
        .unwrap();
    let (lock, idle) = store.session_timeouts().await.unwrap();
    assert_eq!((lock.as_str(), idle.as_str()), ("300ms", "400ms"));

    store
        .enqueue(&[message(Some("l"), None, now_micros())])
        .await
        .unwrap();
    let (paused, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    paused
        .batch_execute("BEGIN; SELECT * FROM lanes FOR UPDATE")
        .await
        .unwrap();
    // Without a lock timeout the enqueue would wait as long as the session.
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.enqueue(&[message(Some("l"), None, now_micros())]),
    )
    .await
    .expect("the enqueue gave up waiting for the lane's lock");
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("55P03"), "{err}");
    paused.batch_execute("ROLLBACK").await.unwrap();
    store
        .enqueue(&[message(Some("l"), None, now_micros())])
        .await
        .unwrap();
}
