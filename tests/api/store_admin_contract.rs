//! The operators' part of the store contract (`store::admin`): every backend must
//! answer these the same way. Runs against each store of `store_contract::stores`.

use flowgate::domain::{MessageId, MessageStatus, TenantName, TriggerKey, TriggerName, now_micros};
use flowgate::store::{
    DeliveryAttempt, DeliveryQuery, DeliveryStatus, MessageQuery, NewDelivery, Release,
};

use crate::store_contract::{ClaimAll, done, message, ran, stores};

fn key() -> TriggerKey {
    TriggerKey {
        tenant: TenantName::parse("t").unwrap(),
        trigger: TriggerName::parse("x").unwrap(),
    }
}

#[tokio::test]
async fn log_history_pages_filters_counts_and_lanes() {
    for (name, s) in stores("admin_log_history").await {
        let store = s.store;
        let t0 = now_micros() - 10_000_000;
        let ms: Vec<_> = (0..5)
            .map(|i| message((i % 2 == 0).then_some("a"), None, t0 + i * 1_000_000))
            .collect();
        store.enqueue(&ms).await.unwrap();
        ran(&store, done(ms[0].id, 1, MessageStatus::Dead, true)).await;
        ran(&store, done(ms[1].id, 1, MessageStatus::Succeeded, false)).await;
        let q = MessageQuery {
            triggers: vec![key()],
            limit: 2,
            ..Default::default()
        };

        let page = store.list_messages(q.clone()).await.unwrap();
        let ids: Vec<MessageId> = page.iter().map(|m| m.head.id).collect();
        assert_eq!(ids, vec![ms[4].id, ms[3].id], "{name}: newest first");
        let next = MessageQuery {
            before: Some(ms[3].id),
            ..q.clone()
        };
        let ids: Vec<MessageId> = store
            .list_messages(next)
            .await
            .unwrap()
            .iter()
            .map(|m| m.head.id)
            .collect();
        assert_eq!(ids, vec![ms[2].id, ms[1].id], "{name}: the next page");

        let dead = MessageQuery {
            status: Some(MessageStatus::Dead),
            ..q.clone()
        };
        let rows = store.list_messages(dead.clone()).await.unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert!(rows[0].blocking, "{name}");
        assert_eq!(rows[0].attempts, 1, "{name}");
        let lane = MessageQuery {
            lane: Some("a".into()),
            limit: 10,
            ..q.clone()
        };
        assert_eq!(store.count_messages(lane).await.unwrap(), 3, "{name}");
        let range = MessageQuery {
            from: Some(t0 + 1_000_000),
            to: Some(t0 + 3_000_000),
            limit: 10,
            ..q.clone()
        };
        let ids: Vec<MessageId> = store
            .list_messages(range)
            .await
            .unwrap()
            .iter()
            .map(|m| m.head.id)
            .collect();
        assert_eq!(
            ids,
            vec![ms[2].id, ms[1].id],
            "{name}: from inclusive, to exclusive"
        );
        let other = MessageQuery {
            triggers: vec![TriggerKey {
                tenant: TenantName::parse("u").unwrap(),
                trigger: key().trigger,
            }],
            ..q.clone()
        };
        assert!(
            store.list_messages(other).await.unwrap().is_empty(),
            "{name}"
        );

        let counts = store.status_counts(None).await.unwrap();
        let n = |st| {
            counts
                .iter()
                .find(|c| c.status == st)
                .map_or(0, |c| c.count)
        };
        assert_eq!(
            (
                n(MessageStatus::Queued),
                n(MessageStatus::Dead),
                n(MessageStatus::Succeeded)
            ),
            (3, 1, 1),
            "{name}"
        );
        let none = store
            .status_counts(Some(vec![TenantName::parse("u").unwrap()]))
            .await
            .unwrap();
        assert!(none.is_empty(), "{name}");

        let lanes = store.blocked_lanes(None).await.unwrap();
        assert_eq!(lanes.len(), 1, "{name}");
        assert_eq!(
            (lanes[0].message_id, lanes[0].lane.as_str()),
            (ms[0].id, "a"),
            "{name}"
        );
        assert!(
            store
                .blocked_lanes(Some(vec![TenantName::parse("u").unwrap()]))
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(
            !store.release_lane(ms[1].id, Release::Skip).await.unwrap(),
            "{name}: holds no lane"
        );
        assert!(
            store.release_lane(ms[0].id, Release::Skip).await.unwrap(),
            "{name}"
        );
        assert!(
            !store
                .release_lane(ms[0].id, Release::Unblock)
                .await
                .unwrap(),
            "{name}: once"
        );
        assert_eq!(
            store.get(ms[0].id).await.unwrap().unwrap().head.status,
            MessageStatus::Skipped,
            "{name}"
        );
        assert!(
            store.blocked_lanes(None).await.unwrap().is_empty(),
            "{name}"
        );

        store
            .link_replays(vec![(ms[4].id, ms[0].id)])
            .await
            .unwrap();
        let (_, replay_of) = store.message_detail(ms[4].id).await.unwrap().unwrap();
        assert_eq!(replay_of, Some(ms[0].id), "{name}");
        assert!(
            store
                .message_detail(MessageId::new())
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn deliveries_are_claimed_retried_listed_and_redelivered() {
    for (name, s) in stores("admin_deliveries").await {
        let store = s.store;
        let now = now_micros();
        let d = NewDelivery {
            id: MessageId::new(),
            tenant: TenantName::parse("t").unwrap(),
            subscription: "ops".into(),
            event: "message.failed".into(),
            message_id: Some(MessageId::new()),
            created_at: now,
            payload: "{\"exact\": \"bytes\"}".into(),
        };
        store.add_deliveries(vec![d.clone()]).await.unwrap();
        let claimed = store
            .claim_deliveries(now, now + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{name}");
        assert_eq!(claimed[0].delivery.payload, d.payload, "{name}");
        assert!(
            store
                .claim_deliveries(now, now + 60_000_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: leased"
        );

        let attempt = DeliveryAttempt {
            number: 1,
            at: now,
            url: "https://hooks.example/".into(),
            duration_us: 1234,
            kind: Some("status".into()),
            status: Some(500),
            headers: vec![("x-why".into(), "busy".into())],
            body: "later".into(),
            error: None,
        };
        store
            .record_delivery_attempt(d.id, attempt.clone(), DeliveryStatus::Pending, now + 5)
            .await
            .unwrap();
        let again = store
            .claim_deliveries(now + 5, now + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(again[0].attempts, vec![attempt.clone()], "{name}");
        let ok = DeliveryAttempt {
            number: 2,
            status: Some(200),
            ..attempt
        };
        store
            .record_delivery_attempt(d.id, ok, DeliveryStatus::Succeeded, now)
            .await
            .unwrap();
        let got = store.get_delivery(d.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.attempts.len()),
            (DeliveryStatus::Succeeded, 2),
            "{name}"
        );

        let list = store
            .list_deliveries(DeliveryQuery {
                tenant: d.tenant.clone(),
                subscription: Some("ops".into()),
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(list.len(), 1, "{name}");
        let none = store
            .list_deliveries(DeliveryQuery {
                tenant: TenantName::parse("u").unwrap(),
                subscription: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(none.is_empty(), "{name}");

        assert!(store.redeliver(d.id, now).await.unwrap(), "{name}");
        assert!(
            !store.redeliver(MessageId::new(), now).await.unwrap(),
            "{name}"
        );
        assert_eq!(
            store
                .claim_deliveries(now, now + 1, 10)
                .await
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        assert_eq!(
            store.purge_deliveries(now + 1_000_000).await.unwrap(),
            0,
            "{name}: pending is kept"
        );
        store
            .record_delivery_attempt(d.id, got.attempts[1].clone(), DeliveryStatus::Failed, now)
            .await
            .unwrap();
        assert_eq!(
            store.purge_deliveries(now + 1_000_000).await.unwrap(),
            1,
            "{name}"
        );
    }
}

/// On the shared store a lane is let go through the rows every node's claimer
/// reads: a replay of the blocking message, linked and released on one node, is
/// the head of the lane when another node claims it.
#[tokio::test]
async fn pg_a_replay_released_on_one_node_heads_the_lane_on_another() {
    let Some((a, b, _pg)) = crate::store_contract::two_nodes("admin_pg_replay_head").await else {
        return;
    };
    let t0 = now_micros();
    let (m1, m2) = (
        message(Some("k"), None, t0),
        message(Some("k"), None, t0 + 1),
    );
    a.enqueue(&[m1.clone(), m2.clone()]).await.unwrap();
    let lane = a.claim_lanes(1, now_micros()).await.unwrap().remove(0);
    let dead = done(m1.id, 1, MessageStatus::Dead, true);
    assert!(
        a.commit_lane(&lane, vec![(dead, None)], Some(0), now_micros())
            .await
            .unwrap()
    );

    let replay = message(Some("k"), None, now_micros() + 10);
    b.enqueue(std::slice::from_ref(&replay)).await.unwrap();
    b.link_replays(vec![(replay.id, m1.id)]).await.unwrap();
    assert!(
        a.claim_lanes(1, now_micros()).await.unwrap().is_empty(),
        "still blocked until released"
    );
    assert!(b.release_lane(m1.id, Release::Unblock).await.unwrap());
    let lane = a.claim_lanes(1, now_micros()).await.unwrap().remove(0);
    let ids: Vec<MessageId> = a
        .lane_messages(&lane, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        ids,
        vec![replay.id, m2.id],
        "the replay first, then the lane"
    );
    let (view, _) = a.message_detail(m1.id).await.unwrap().unwrap();
    assert_eq!(view.head.status, MessageStatus::Dead, "unblocked as it was");
    assert!(a.blocked_lanes(None).await.unwrap().is_empty());
}
