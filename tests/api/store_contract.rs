//! The store contract: what every backend must do. Each test takes a fresh store
//! from `stores()`; the PostgreSQL backend joins the list when it exists.

use serde_json::json;

use flowgate::domain::{
    AttemptRecord, MessageId, MessageStatus, Mode, NewMessage, Outcome, TenantName, TriggerName,
    now_micros,
};
use flowgate::store::{Completion, EnqueueOutcome, Store};

pub struct Fresh {
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub fn stores() -> Vec<(&'static str, Fresh)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    vec![(
        "sqlite",
        Fresh {
            store: Store::open(&url).unwrap(),
            _dir: dir,
        },
    )]
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
    }
}

#[tokio::test]
async fn enqueue_get_and_idempotency() {
    for (name, s) in stores() {
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
            EnqueueOutcome::Duplicate(first) => assert_eq!(first.id, a.id, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(matches!(out[2], EnqueueOutcome::Inserted), "{name}");
        // A repeat in a later batch is a duplicate too.
        let again = store
            .enqueue(&[message(None, Some("k1"), now_micros())])
            .await
            .unwrap();
        assert!(
            matches!(&again[0], EnqueueOutcome::Duplicate(v) if v.id == a.id),
            "{name}"
        );

        let view = store.get(a.id).await.unwrap().unwrap();
        assert_eq!(view.status, MessageStatus::Queued, "{name}");
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

#[tokio::test]
async fn attempts_are_recorded_and_recovery_requeues_running_messages() {
    for (name, s) in stores() {
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
        };
        store.started(m3.id, attempt(1)).await;
        store
            .finished(done(m3.id, 1, MessageStatus::Succeeded, false))
            .await;
        store.started(m1.id, attempt(1)).await;
        // m1 was running when the process stopped.
        let pending = store.recover(now_micros()).await.unwrap();
        let ids: Vec<MessageId> = pending.iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            vec![m1.id, m2.id],
            "{name}: unfinished, in acceptance order"
        );
        assert_eq!(pending[0].status, MessageStatus::Queued, "{name}");
        assert_eq!(pending[0].attempts, 1, "{name}");
        assert_eq!(pending[0].lane.as_deref(), Some("lane"), "{name}");
        let v1 = store.get(m1.id).await.unwrap().unwrap();
        assert_eq!(v1.attempts.len(), 1, "{name}");
        assert_eq!(v1.attempts[0].outcome, Some(Outcome::Interrupted), "{name}");
        assert!(v1.attempts[0].finished_at.is_some(), "{name}");
        let v3 = store.get(m3.id).await.unwrap().unwrap();
        assert_eq!(v3.status, MessageStatus::Succeeded, "{name}");
        assert_eq!(v3.attempts[0].outcome, Some(Outcome::Succeeded), "{name}");
    }
}

#[tokio::test]
async fn a_blocking_message_is_recovered_as_such() {
    for (name, s) in stores() {
        let store = s.store;
        let m1 = message(Some("l"), None, now_micros());
        let m2 = message(Some("l"), None, now_micros());
        store.enqueue(&[m1.clone(), m2.clone()]).await.unwrap();
        store
            .finished(done(m1.id, 3, MessageStatus::Dead, true))
            .await;
        let pending = store.recover(now_micros()).await.unwrap();
        assert_eq!(pending.len(), 2, "{name}");
        assert!(
            pending[0].blocking && pending[0].status == MessageStatus::Dead,
            "{name}"
        );
        assert!(!pending[1].blocking, "{name}");
    }
}

#[tokio::test]
async fn retention_deletes_old_finished_messages_only() {
    for (name, s) in stores() {
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
        store
            .finished(done(old_done.id, 1, MessageStatus::Succeeded, false))
            .await;
        store
            .finished(done(old_blocking.id, 1, MessageStatus::Dead, true))
            .await;
        store
            .finished(done(new_done.id, 1, MessageStatus::Succeeded, false))
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
    for (name, s) in stores() {
        let store = s.store;
        store.close().await.unwrap();
        let err = store
            .enqueue(&[message(None, None, now_micros())])
            .await
            .unwrap_err();
        assert!(
            matches!(err, flowgate::store::StoreError::Unavailable(_)),
            "{name}: {err}"
        );
    }
}
