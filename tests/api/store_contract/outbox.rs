//! The contract's outbox cases: events are written with the end that causes
//! them and only if it is taken, and fanning an event out stores its
//! deliveries once, however often it is tried.

use flowgate::domain::{MessageId, MessageStatus, Micros, TenantName, now_micros};
use flowgate::store::{DeliveryQuery, FanOut, NewDelivery, OutboxEvent};

use super::{done, message, stores};

fn event(message: MessageId, name: &str, at: Micros) -> OutboxEvent {
    OutboxEvent {
        id: MessageId::new(),
        tenant: TenantName::parse("t").unwrap(),
        trigger: Some("x".into()),
        event: name.into(),
        message_id: Some(message),
        created_at: at,
        data: Some("{\"n\":1}".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_with_the_end_taken_and_fanned_out_once() {
    for (name, s) in stores("outbox").await {
        let store = &s.store;
        let now = now_micros();
        let m = message(None, None, now);
        let mut c = done(m.id, 1, MessageStatus::Succeeded, false);
        let first = event(m.id, "order.created", now);
        c.events = vec![first.clone()];
        store.record_executed(m.clone(), c).await;
        // The same end again is no end taken: its events are not written.
        let mut again = done(m.id, 1, MessageStatus::Succeeded, false);
        again.events = vec![event(m.id, "order.created", now)];
        store.record_executed(m.clone(), again.clone()).await;
        store.finished(again).await;
        store.flush().await.unwrap();

        let outbox = store.outbox(10).await.unwrap();
        assert_eq!(outbox, vec![first.clone()], "{name}");

        let delivery = NewDelivery {
            id: MessageId::new(),
            tenant: first.tenant.clone(),
            subscription: "s".into(),
            event: first.event.clone(),
            message_id: first.message_id,
            created_at: first.created_at,
            payload: "{}".into(),
        };
        let batch = vec![FanOut {
            event: first.id,
            deliveries: vec![delivery.clone()],
        }];
        assert_eq!(store.fan_out(batch.clone()).await.unwrap(), 1, "{name}");
        // A second try (a crash before it learned the first committed, or
        // another node) adds nothing.
        let mut retry = batch;
        retry[0].deliveries[0].id = MessageId::new();
        assert_eq!(store.fan_out(retry).await.unwrap(), 0, "{name}");
        assert!(store.outbox(10).await.unwrap().is_empty(), "{name}");
        let stored = store
            .list_deliveries(DeliveryQuery {
                tenant: first.tenant.clone(),
                subscription: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{name}");
        assert_eq!(stored[0].delivery.id, delivery.id, "{name}");

        // Written on its own (flow.load_failed).
        let alone = OutboxEvent {
            message_id: None,
            data: None,
            ..event(m.id, "flow.load_failed", now)
        };
        store.add_events(vec![alone.clone()]).await.unwrap();
        assert_eq!(store.outbox(10).await.unwrap(), vec![alone], "{name}");
    }
}
