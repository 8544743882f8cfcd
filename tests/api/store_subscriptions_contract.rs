//! Stored event subscriptions (`store::subscriptions`), the same on every
//! backend of `store_contract::stores`: a name once per tenant, every field read
//! back as written, the version moving on each change and only then, and a sent
//! test delivery stored with its attempt.

use std::time::Duration;

use flowgate::domain::{
    EventPattern, Include, MessageId, Subscription, SubscriptionSource, TenantName, now_micros,
};
use flowgate::store::{DeliveryAttempt, DeliveryStatus, NewDelivery};

use crate::store_contract::stores;

fn subscription(tenant: &str, name: &str) -> Subscription {
    let now = now_micros();
    Subscription {
        id: MessageId::new().as_uuid(),
        tenant: TenantName::parse(tenant).unwrap(),
        name: name.into(),
        description: Some("the CRM".into()),
        url: "https://crm.example.com/hook".into(),
        events: vec![
            EventPattern::parse("message.failed").unwrap(),
            EventPattern::parse("order.*").unwrap(),
        ],
        triggers: Some(vec!["Orders".into()]),
        basic_auth: Some(("u".into(), "pw".into())),
        secret: Some("whsec_x".into()),
        include: Include::Full,
        retry: Some(vec![Duration::from_secs(5), Duration::from_millis(1500)]),
        enabled: true,
        source: SubscriptionSource::Api,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn subscriptions_are_stored_changed_and_deleted_with_a_version() {
    for (name, s) in stores("subscriptions").await {
        let store = s.store;
        let v0 = store.subscriptions_version().await.unwrap();
        let crm = subscription("t", "crm");
        assert!(store.add_subscription(&crm).await.unwrap(), "{name}");
        let v1 = store.subscriptions_version().await.unwrap();
        assert!(v1 > v0, "{name}: the version moves");

        // The name is the tenant's once; another tenant may use it.
        assert!(
            !store
                .add_subscription(&subscription("t", "crm"))
                .await
                .unwrap(),
            "{name}"
        );
        assert_eq!(
            store.subscriptions_version().await.unwrap(),
            v1,
            "{name}: no change"
        );
        assert!(
            store
                .add_subscription(&subscription("u", "crm"))
                .await
                .unwrap(),
            "{name}"
        );

        let all = store.list_subscriptions().await.unwrap();
        assert_eq!(all.len(), 2, "{name}");
        assert_eq!(all[0], crm, "{name}: read back as written");

        let mut changed = crm.clone();
        changed.name = "crm2".into();
        changed.enabled = false;
        changed.retry = None;
        changed.basic_auth = None;
        assert!(store.update_subscription(&changed).await.unwrap(), "{name}");
        let all = store.list_subscriptions().await.unwrap();
        assert_eq!(all[0], changed, "{name}");
        let mut ghost = subscription("t", "ghost");
        assert!(!store.update_subscription(&ghost).await.unwrap(), "{name}");
        ghost.id = crm.id;
        ghost.name = "crm2".into();
        assert!(store.update_subscription(&ghost).await.unwrap(), "{name}");

        let before = store.subscriptions_version().await.unwrap();
        let id = MessageId::from_uuid(crm.id);
        assert!(store.delete_subscription(id).await.unwrap(), "{name}");
        assert!(!store.delete_subscription(id).await.unwrap(), "{name}");
        assert!(
            store.subscriptions_version().await.unwrap() > before,
            "{name}"
        );
        assert_eq!(store.list_subscriptions().await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_sent_test_delivery_is_stored_with_its_attempt_and_not_claimed() {
    for (name, s) in stores("sent_delivery").await {
        let store = s.store;
        let now = now_micros();
        let d = NewDelivery {
            id: MessageId::new(),
            tenant: TenantName::parse("t").unwrap(),
            subscription: "crm".into(),
            event: "ping".into(),
            message_id: None,
            created_at: now,
            payload: "{}".into(),
        };
        let attempt = DeliveryAttempt {
            number: 1,
            at: now,
            url: "https://crm.example.com/hook".into(),
            duration_us: 42,
            kind: Some("connect".into()),
            status: None,
            headers: Vec::new(),
            body: String::new(),
            error: Some("refused".into()),
        };
        store
            .add_sent_delivery(d.clone(), attempt.clone(), DeliveryStatus::Failed)
            .await
            .unwrap();
        let got = store.get_delivery(d.id).await.unwrap().unwrap();
        assert_eq!(got.status, DeliveryStatus::Failed, "{name}");
        assert_eq!(got.attempts, vec![attempt], "{name}");
        let due = store.claim_deliveries(now + 1, now + 60_000_000, 10).await;
        assert!(due.unwrap().is_empty(), "{name}: no sender takes it");
    }
}

/// Until the stored subscriptions are read once (at a start, or while the
/// store cannot be read), every event may be wanted by one of them: it is
/// written, and the fan-out waits, rather than dropped.
#[tokio::test]
async fn events_are_kept_until_the_stored_subscriptions_are_read() {
    use flowgate::domain::EventKind;
    use flowgate::events::Subscribers;
    use flowgate::flow::{Catalog, SharedCatalog};

    for (name, s) in stores("subscribers").await {
        let store = s.store;
        let subs = Subscribers::new(SharedCatalog::new(Catalog::default()), store.clone());
        assert!(!subs.loaded(), "{name}");
        let failed = EventKind::MessageFailed;
        assert!(
            subs.wants("t", failed, Some("Orders")),
            "{name}: not read yet"
        );
        assert!(subs.wants_business("t", "order.created", None), "{name}");
        subs.refresh().await.unwrap();
        assert!(subs.loaded(), "{name}");
        assert!(
            !subs.wants("t", failed, Some("Orders")),
            "{name}: nobody listens"
        );
        assert!(!subs.wants_business("t", "order.created", None), "{name}");
        store
            .add_subscription(&subscription("t", "crm"))
            .await
            .unwrap();
        subs.refresh().await.unwrap();
        assert!(subs.wants("t", failed, Some("Orders")), "{name}");
        assert!(
            !subs.wants("t", failed, Some("Other")),
            "{name}: its triggers filter"
        );
        assert!(
            subs.wants_business("t", "order.created", Some("Orders")),
            "{name}"
        );
        assert!(
            !subs.wants("u", failed, Some("Orders")),
            "{name}: another tenant"
        );
    }
}
