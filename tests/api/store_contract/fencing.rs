//! The contract's fencing cases: who may write an attempt's end, what recovery
//! frees, how lane epochs grow. Results are fenced by attempt on both stores;
//! leases and epochs are the shared store's alone (those tests take two nodes).

use flowgate::domain::{MessageStatus, now_micros};

use super::{end, message, two_nodes};
use crate::pg::query;

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
    assert_eq!(view.status, MessageStatus::Running, "a live claim is kept");

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
        b.get(m.id).await.unwrap().unwrap().status,
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
