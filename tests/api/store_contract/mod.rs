//! The store contract: what every backend must do. Each test takes a fresh store
//! of each kind from `stores()` (PostgreSQL in a schema of its own, when the test
//! database is there). Claiming (leases, lanes, fencing) is the shared store's
//! alone: those tests are at the end.

use serde_json::json;

use flowgate::domain::{
    AttemptRecord, MessageId, MessageStatus, Mode, NewMessage, Outcome, TenantName, TriggerName,
    now_micros,
};
use flowgate::store::{
    ClaimedMessage, Completion, EnqueueOutcome, LaneClaim, PgOptions, PgStore, Store, StoreError,
    TenantShares,
};

use crate::pg::{PgSchema, schema};

mod fencing;
mod outbox;
mod upgrade;

/// Claims that leave no tenant out, as most tests here want them.
pub(crate) trait ClaimAll {
    async fn claim_messages(
        &self,
        limit: usize,
        now: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    async fn claim_lanes(&self, limit: usize, now: i64) -> Result<Vec<LaneClaim>, StoreError>;
}

impl ClaimAll for PgStore {
    async fn claim_messages(
        &self,
        limit: usize,
        now: i64,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        self.claim(limit, now, &TenantShares::default()).await
    }

    async fn claim_lanes(&self, limit: usize, now: i64) -> Result<Vec<LaneClaim>, StoreError> {
        self.claim(limit, now, &TenantShares::default()).await
    }
}

pub struct Fresh {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgSchema>,
}

fn options() -> PgOptions {
    PgOptions {
        lease: std::time::Duration::from_secs(1),
        pool_size: 4,
        ..PgOptions::default()
    }
}

pub async fn stores(test: &str) -> Vec<(&'static str, Fresh)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let mut all = vec![(
        "sqlite",
        Fresh {
            store: Store::open(&url).unwrap(),
            _dir: Some(dir),
            _pg: None,
        },
    )];
    if let Some(pg) = schema(test).await {
        let store = Store::connect(&pg.url, options()).await.unwrap();
        all.push((
            "postgres",
            Fresh {
                store,
                _dir: None,
                _pg: Some(pg),
            },
        ));
    }
    all
}

pub fn message(lane: Option<&str>, key: Option<&str>, received_at: i64) -> NewMessage {
    NewMessage {
        id: MessageId::at(received_at),
        tenant: TenantName::parse("t").unwrap(),
        trigger: TriggerName::parse("x").unwrap(),
        lane: lane.map(str::to_owned),
        mode: Mode::Async,
        received_at,
        idempotency_key: key.map(str::to_owned),
        input: json!({"body": {"n": 1}}),
        body_json: None,
    }
}

pub fn done(id: MessageId, attempt: u32, status: MessageStatus, blocking: bool) -> Completion {
    let now = now_micros();
    Completion {
        id,
        attempt,
        started_at: now - 10,
        finished_at: now,
        outcome: if status == MessageStatus::Succeeded {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        status,
        run_at: now,
        blocking,
        response: None,
        trace: "[]".into(),
        error: (status != MessageStatus::Succeeded).then(|| "boom".to_owned()),
        error_code: (status != MessageStatus::Succeeded).then_some("flow_failed"),
        events: Vec::new(),
    }
}

/// Records an attempt as a node runs it: its start, then its end.
pub async fn ran(store: &Store, c: Completion) {
    let start = AttemptRecord {
        number: c.attempt,
        started_at: c.started_at,
        finished_at: None,
        outcome: None,
        error: None,
        error_code: None,
    };
    store.started(c.id, start).await;
    store.finished(c).await;
}

#[tokio::test]
async fn enqueue_get_and_idempotency() {
    for (name, s) in stores("enqueue_get_and_idempotency").await {
        let store = s.store;
        let a = message(None, Some("k1"), now_micros());
        let b = message(None, Some("k1"), now_micros());
        let c = message(None, None, now_micros());
        let out = store
            .enqueue(&[a.clone(), b.clone(), c.clone()])
            .await
            .unwrap();
        assert!(matches!(out[0], EnqueueOutcome::Inserted), "{name}");
        match &out[1] {
            EnqueueOutcome::Duplicate(first) => assert_eq!(first.head.id, a.id, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(matches!(out[2], EnqueueOutcome::Inserted), "{name}");
        // A repeat in a later batch is a duplicate too.
        let again = store
            .enqueue(&[message(None, Some("k1"), now_micros())])
            .await
            .unwrap();
        assert!(
            matches!(&again[0], EnqueueOutcome::Duplicate(v) if v.head.id == a.id),
            "{name}"
        );

        let view = store.get(a.id).await.unwrap().unwrap();
        assert_eq!(view.head.status, MessageStatus::Queued, "{name}");
        assert_eq!(view.input, a.input, "{name}");
        assert!(
            store.get(b.id).await.unwrap().is_none(),
            "{name}: the duplicate was not stored"
        );
        assert!(
            store.get(MessageId::new()).await.unwrap().is_none(),
            "{name}"
        );
    }
}

/// Batches without Idempotency-Keys take the shared store's plain insert: every
/// message is stored, ordered or not; a message id already stored fails the whole
/// batch rather than passing for stored.
#[tokio::test]
async fn batches_without_keys_store_every_message_and_refuse_a_repeated_id() {
    for (name, s) in stores("batches_without_keys_store_every_message").await {
        let store = s.store;
        let now = now_micros();
        let batch = [
            message(None, None, now),
            message(Some("a"), None, now + 1),
            message(None, None, now + 2),
            message(Some("a"), None, now + 3),
        ];
        let out = store.enqueue(&batch).await.unwrap();
        assert_eq!(out.len(), 4, "{name}");
        assert!(
            out.iter().all(|o| matches!(o, EnqueueOutcome::Inserted)),
            "{name}: {out:?}"
        );
        for m in &batch {
            let view = store.get(m.id).await.unwrap();
            assert_eq!(view.map(|v| v.input), Some(m.input.clone()), "{name}");
        }
        let unordered = store.enqueue(&[message(None, None, now + 4)]).await;
        assert!(unordered.is_ok(), "{name}: {unordered:?}");

        for lane in [None, Some("a")] {
            let fresh = message(lane, None, now + 5);
            let repeated = batch[if lane.is_some() { 1 } else { 0 }].clone();
            let refused = store.enqueue(&[fresh.clone(), repeated]).await;
            assert!(refused.is_err(), "{name} {lane:?}: {refused:?}");
            assert!(
                store.get(fresh.id).await.unwrap().is_none(),
                "{name} {lane:?}: nothing of a refused batch is kept"
            );
        }
    }
}

#[tokio::test]
async fn attempts_are_recorded_and_recovery_requeues_running_messages() {
    for (name, s) in stores("attempts_are_recorded_and_recovery_requeues_running_messages").await {
        let store = s.store;
        let m1 = message(Some("lane"), None, now_micros());
        let m2 = message(Some("lane"), None, now_micros());
        let m3 = message(None, None, now_micros());
        store
            .enqueue(&[m1.clone(), m2.clone(), m3.clone()])
            .await
            .unwrap();
        let attempt = |n| AttemptRecord {
            number: n,
            started_at: now_micros(),
            finished_at: None,
            outcome: None,
            error: None,
            error_code: None,
        };
        ran(&store, done(m3.id, 1, MessageStatus::Succeeded, false)).await;
        store.started(m1.id, attempt(1)).await;
        // m1 was running when the process stopped; recovery at the next start
        // (on the shared store, once its lease has lapsed).
        let pending = store.recover(now_micros() + 2_000_000).await.unwrap();
        let ids: Vec<MessageId> = pending.iter().map(|p| p.head.id).collect();
        assert_eq!(
            ids,
            vec![m1.id, m2.id],
            "{name}: unfinished, in acceptance order"
        );
        assert_eq!(pending[0].head.status, MessageStatus::Queued, "{name}");
        assert_eq!(pending[0].attempts, 1, "{name}");
        assert_eq!(pending[0].head.lane.as_deref(), Some("lane"), "{name}");
        let v1 = store.get(m1.id).await.unwrap().unwrap();
        assert_eq!(v1.attempts.len(), 1, "{name}");
        assert_eq!(v1.attempts[0].outcome, Some(Outcome::Interrupted), "{name}");
        assert!(v1.attempts[0].finished_at.is_some(), "{name}");
        let v3 = store.get(m3.id).await.unwrap().unwrap();
        assert_eq!(v3.head.status, MessageStatus::Succeeded, "{name}");
        assert_eq!(v3.attempts[0].outcome, Some(Outcome::Succeeded), "{name}");
    }
}

#[tokio::test]
async fn a_blocking_message_is_recovered_as_such() {
    for (name, s) in stores("a_blocking_message_is_recovered_as_such").await {
        let store = s.store;
        let m1 = message(Some("l"), None, now_micros());
        let m2 = message(Some("l"), None, now_micros());
        store.enqueue(&[m1.clone(), m2.clone()]).await.unwrap();
        ran(&store, done(m1.id, 3, MessageStatus::Dead, true)).await;
        let pending = store.recover(now_micros()).await.unwrap();
        assert_eq!(pending.len(), 2, "{name}");
        assert!(
            pending[0].blocking && pending[0].head.status == MessageStatus::Dead,
            "{name}"
        );
        assert!(!pending[1].blocking, "{name}");
        // The attempt keeps its error and the error's code.
        store.flush().await.unwrap();
        let view = store.get(m1.id).await.unwrap().unwrap();
        let last = view.attempts.last().unwrap();
        assert_eq!(last.error.as_deref(), Some("boom"), "{name}");
        assert_eq!(last.error_code.as_deref(), Some("flow_failed"), "{name}");
    }
}

#[tokio::test]
async fn retention_deletes_old_finished_messages_only() {
    for (name, s) in stores("retention_deletes_old_finished_messages_only").await {
        let store = s.store;
        let day = 86_400_000_000i64;
        let old_done = message(None, Some("old"), now_micros() - 10 * day);
        let old_pending = message(None, None, now_micros() - 10 * day);
        let old_blocking = message(Some("l"), None, now_micros() - 10 * day);
        let new_done = message(None, None, now_micros());
        store
            .enqueue(&[
                old_done.clone(),
                old_pending.clone(),
                old_blocking.clone(),
                new_done.clone(),
            ])
            .await
            .unwrap();
        ran(
            &store,
            done(old_done.id, 1, MessageStatus::Succeeded, false),
        )
        .await;
        ran(&store, done(old_blocking.id, 1, MessageStatus::Dead, true)).await;
        ran(
            &store,
            done(new_done.id, 1, MessageStatus::Succeeded, false),
        )
        .await;
        let purged = store.purge(now_micros() - 7 * day).await.unwrap();
        assert_eq!(purged, 1, "{name}");
        assert!(store.get(old_done.id).await.unwrap().is_none(), "{name}");
        for kept in [&old_pending, &old_blocking, &new_done] {
            assert!(store.get(kept.id).await.unwrap().is_some(), "{name}");
        }
        // Its Idempotency-Key is free again.
        let out = store
            .enqueue(&[message(None, Some("old"), now_micros())])
            .await
            .unwrap();
        assert!(matches!(out[0], EnqueueOutcome::Inserted), "{name}");
    }
}

#[tokio::test]
async fn a_closed_store_reports_unavailable() {
    for (name, s) in stores("a_closed_store_reports_unavailable").await {
        let store = s.store;
        store.close().await.unwrap();
        let err = store
            .enqueue(&[message(None, None, now_micros())])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{name}: {err}");
    }
}

// ---- Claiming from the shared store ----------------------------------------

/// Two nodes on one fresh schema, or `None` when PostgreSQL is not here.
pub async fn two_nodes(test: &str) -> Option<(PgStore, PgStore, PgSchema)> {
    let pg = schema(test).await?;
    let a = PgStore::connect(&pg.url, options()).await.unwrap();
    let b = PgStore::connect(&pg.url, options()).await.unwrap();
    Some((a, b, pg))
}

fn end(id: MessageId, attempt: u32, status: MessageStatus, run_at: i64) -> Completion {
    Completion {
        run_at,
        ..done(id, attempt, status, false)
    }
}

#[tokio::test]
async fn pg_lanes_run_in_acceptance_order_and_late_results_are_fenced() {
    let Some((a, b, _pg)) = two_nodes("pg_lanes_fenced").await else {
        return;
    };
    let t0 = now_micros();
    let lane_a: Vec<NewMessage> = (0..5).map(|i| message(Some("a"), None, t0 + i)).collect();
    let lane_b: Vec<NewMessage> = (0..2).map(|i| message(Some("b"), None, t0 + i)).collect();
    // Group commit: one batch, interleaved, answered per message.
    let mut batch = lane_a.clone();
    batch.extend(lane_b.clone());
    batch.push(message(None, None, t0));
    let out = a.enqueue(&batch).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, EnqueueOutcome::Inserted)));

    let now = now_micros();
    let claimed = a.claim_lanes(10, now).await.unwrap();
    assert_eq!(claimed.len(), 2, "each lane once");
    assert!(
        b.claim_lanes(10, now).await.unwrap().is_empty(),
        "a held lane is not claimed"
    );
    let la = claimed.iter().find(|l| l.lane == "a").unwrap().clone();
    let msgs = a.lane_messages(&la, 0, 100).await.unwrap();
    let ids: Vec<MessageId> = msgs.iter().map(|m| m.id).collect();
    assert_eq!(ids, lane_a.iter().map(|m| m.id).collect::<Vec<_>>());
    // A run of two results in one commit.
    let ok = a
        .commit_lane(
            &la,
            vec![
                (end(ids[0], 1, MessageStatus::Succeeded, now), None),
                (end(ids[1], 1, MessageStatus::Succeeded, now), None),
            ],
            None,
            now_micros(),
        )
        .await
        .unwrap();
    assert!(ok);

    // Node a stops renewing; its lease lapses and b takes the lane over (time
    // passed in: a little over a lease from now).
    let lapsed = now_micros() + 1_200_000;
    let taken = b.claim_lanes(10, lapsed).await.unwrap();
    let lb = taken.iter().find(|l| l.lane == "a").expect("lapsed lane");
    assert!(lb.epoch > la.epoch);
    let head = b.lane_messages(lb, 0, 100).await.unwrap();
    assert_eq!(head[0].id, ids[2], "the lowest unfinished message");
    // a's late result for the head is discarded.
    let late = a
        .commit_lane(
            &la,
            vec![(end(ids[2], 1, MessageStatus::Succeeded, now), None)],
            None,
            now_micros(),
        )
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(
        a.get(ids[2]).await.unwrap().unwrap().head.status,
        MessageStatus::Queued
    );
}

/// Leases are written by one node and judged by another, so they are measured on
/// the database's clock: a node whose own clock runs a minute ahead must not take
/// a lane or a message whose holder's lease is still running.
#[tokio::test]
async fn pg_a_node_whose_clock_runs_ahead_takes_no_running_work() {
    let Some((a, b, _pg)) = two_nodes("pg_clock").await else {
        return;
    };
    let t0 = now_micros();
    let out = a
        .enqueue(&[message(Some("a"), None, t0), message(None, None, t0)])
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(a.claim_lanes(10, a.now()).await.unwrap().len(), 1);
    assert_eq!(a.claim_messages(10, a.now()).await.unwrap().len(), 1);

    // A few milliseconds of difference (or of measuring noise) are not followed.
    b.skew_local_clock(100_000);
    b.sync_clock().await.unwrap();
    assert!((b.now() - a.now() - 100_000).abs() < 50_000);

    let minute = 60_000_000;
    b.skew_local_clock(minute);
    b.sync_clock().await.unwrap();
    assert!(
        (b.now() - a.now()).abs() < 1_000_000,
        "both nodes read the database's time"
    );
    assert!((b.stats().clock_offset + minute).abs() < 1_000_000);
    assert!(b.claim_lanes(10, b.now()).await.unwrap().is_empty());
    assert!(b.claim_messages(10, b.now()).await.unwrap().is_empty());
    // By its own clock, a's leases would have run out long ago.
    assert_eq!(
        b.claim_lanes(10, now_micros() + minute)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn pg_unordered_claims_lapse_and_are_fenced() {
    let Some((a, b, _pg)) = two_nodes("pg_unordered").await else {
        return;
    };
    let m = message(None, None, now_micros());
    a.enqueue(std::slice::from_ref(&m)).await.unwrap();
    let got = a.claim_messages(10, now_micros()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attempt, 1);
    assert!(b.claim_messages(10, now_micros()).await.unwrap().is_empty());
    // A little over a lease later (time passed in).
    let lapsed = now_micros() + 1_200_000;
    let again = b.claim_messages(10, lapsed).await.unwrap();
    assert_eq!(again.len(), 1, "a lapsed lease is claimed again");
    assert_eq!(again[0].attempt, 2);
    // a's late result is dropped; b's is taken.
    a.finished(end(m.id, 1, MessageStatus::Succeeded, now_micros()))
        .await;
    a.flush().await.unwrap();
    let v = b.get(m.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Running);
    assert_eq!(v.attempts[0].outcome, Some(Outcome::Interrupted));
    b.finished(end(m.id, 2, MessageStatus::Succeeded, now_micros()))
        .await;
    let v = b.get(m.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Succeeded);
    assert_eq!(v.attempts.len(), 2);
}

#[tokio::test]
async fn pg_retry_holds_the_lane_until_due_and_exhaustion_blocks_it() {
    let Some((a, _b, _pg)) = two_nodes("pg_retry_block").await else {
        return;
    };
    let m1 = message(Some("k"), None, now_micros());
    let m2 = message(Some("k"), None, now_micros() + 1);
    a.enqueue(&[m1.clone(), m2.clone()]).await.unwrap();
    let lane = a.claim_lanes(1, now_micros()).await.unwrap().remove(0);
    let due = now_micros() + 400_000;
    let retry = end(m1.id, 1, MessageStatus::Retrying, due);
    assert!(
        a.commit_lane(&lane, vec![(retry, None)], Some(due), now_micros())
            .await
            .unwrap()
    );
    assert!(
        a.claim_lanes(1, now_micros()).await.unwrap().is_empty(),
        "not before the retry is due"
    );
    // Once the retry is due (time passed in).
    let later = due + 50_000;
    let lane = a.claim_lanes(1, later).await.unwrap().remove(0);
    let head = a.lane_messages(&lane, 0, 10).await.unwrap();
    assert_eq!(head[0].id, m1.id, "the failed message holds its lane");
    assert_eq!(head[0].attempts, 1);
    let dead = Completion {
        blocking: true,
        ..end(m1.id, 2, MessageStatus::Dead, now_micros())
    };
    assert!(
        a.commit_lane(&lane, vec![(dead, None)], Some(0), now_micros())
            .await
            .unwrap()
    );
    assert!(
        a.claim_lanes(1, later).await.unwrap().is_empty(),
        "a blocked lane is not claimed"
    );
    let v = a.get(m2.id).await.unwrap().unwrap();
    assert_eq!(v.head.status, MessageStatus::Queued);
}

/// A message of `tenant` (unordered, or in `lane`).
fn of_tenant(tenant: &str, lane: Option<&str>, received_at: i64) -> NewMessage {
    NewMessage {
        tenant: TenantName::parse(tenant).unwrap(),
        ..message(lane, None, received_at)
    }
}

#[tokio::test]
async fn pg_claims_leave_room_for_other_tenants() {
    let Some((a, _b, _pg)) = two_nodes("pg_claims_share").await else {
        return;
    };
    let t0 = now_micros();
    // One tenant's backlog is older than anything the other has.
    let mut batch: Vec<NewMessage> = (0..20).map(|i| of_tenant("big", None, t0 + i)).collect();
    batch.extend((0..4).map(|i| of_tenant("big", Some(&format!("l{i}")), t0 + i)));
    batch.push(of_tenant("small", None, t0 + 100));
    batch.push(of_tenant("small", Some("l"), t0 + 100));
    a.enqueue(&batch).await.unwrap();
    let now = now_micros();
    let tenants = |claimed: &[String]| {
        let big = claimed.iter().filter(|t| *t == "big").count();
        (big, claimed.len() - big)
    };

    // Unshared, the oldest come first: the backlog takes the whole claim.
    let whole = TenantShares::default();
    let shares = TenantShares {
        full: vec![],
        each: 3,
    };
    let claimed = a.claim::<ClaimedMessage>(3, now, &whole).await.unwrap();
    let names: Vec<String> = claimed.iter().map(|m| m.tenant.to_string()).collect();
    assert_eq!(tenants(&names), (3, 0));
    // At most three a tenant: the other tenant's message comes with them.
    let claimed = a.claim::<ClaimedMessage>(8, now, &shares).await.unwrap();
    let names: Vec<String> = claimed.iter().map(|m| m.tenant.to_string()).collect();
    assert_eq!(tenants(&names), (3, 1));
    let lanes = a.claim::<LaneClaim>(8, now, &shares).await.unwrap();
    let names: Vec<String> = lanes.iter().map(|l| l.tenant.to_string()).collect();
    assert_eq!(tenants(&names), (3, 1));
    // A tenant this node runs enough of is left out altogether.
    let full = TenantShares {
        full: vec!["big".into()],
        each: 3,
    };
    assert!(
        a.claim::<ClaimedMessage>(8, now, &full)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        a.claim::<LaneClaim>(8, now, &full)
            .await
            .unwrap()
            .is_empty()
    );
    let rest = a.claim::<ClaimedMessage>(8, now, &shares).await.unwrap();
    assert_eq!(rest.len(), 3);
}
