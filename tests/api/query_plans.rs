//! The log history at 100,000 messages: every query the UI and the API run reads
//! an index (no table scan, no sort of the whole result), on both stores.

use serde_json::json;

use flowgate::domain::{
    MessageId, MessageStatus, Mode, NewMessage, Outcome, TenantName, TriggerKey, TriggerName,
};
use flowgate::store::{Completion, MessageQuery, Store};

const MESSAGES: i64 = 100_000;

fn key(trigger: &str) -> TriggerKey {
    TriggerKey {
        tenant: TenantName::parse("acme").unwrap(),
        trigger: TriggerName::parse(trigger).unwrap(),
    }
}

async fn seed(store: &Store) {
    let start = 1_790_000_000_000_000i64;
    let statuses = [
        MessageStatus::Succeeded,
        MessageStatus::Failed,
        MessageStatus::Dead,
    ];
    for i in 0..MESSAGES {
        let at = start + i * 1000;
        let trigger = ["Orders", "Prices", "Stock", "Lanes"][(i % 4) as usize];
        let status = statuses[(i % 7 % 3) as usize];
        let m = NewMessage {
            id: MessageId::at(at),
            tenant: TenantName::parse(if i % 10 == 0 { "other" } else { "acme" }).unwrap(),
            trigger: TriggerName::parse(trigger).unwrap(),
            lane: (trigger == "Lanes").then(|| format!("customer-{}", i % 50)),
            mode: Mode::Async,
            received_at: at,
            idempotency_key: None,
            // A consumer that sends few of the messages, one that sends most,
            // and open calls.
            input: match i % 97 {
                0 => {
                    json!({"body": {"n": i}, "auth": {"method": "api_key", "label": "partner", "key_id": "k3q7x2ab"}})
                }
                n if n % 3 == 0 => json!({"body": {"n": i}, "auth": {"method": "none"}}),
                _ => json!({"body": {"n": i}, "auth": {"method": "api_key", "label": "webshop"}}),
            },
            body_json: None,
        };
        let c = Completion {
            id: m.id,
            attempt: 1,
            started_at: at,
            finished_at: at + 500,
            outcome: if status == MessageStatus::Succeeded {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
            status,
            run_at: at,
            blocking: false,
            response: None,
            trace: "[]".into(),
            error: None,
            error_code: None,
            events: Vec::new(),
        };
        store.record_executed(m, c).await;
    }
    store.flush().await.unwrap();
}

fn assert_indexed(plan: &str, what: &str) {
    assert!(
        plan.contains("USING INDEX")
            || plan.contains("USING COVERING INDEX")
            || plan.contains("USING PRIMARY KEY"),
        "{what} reads no index:\n{plan}"
    );
    assert!(
        !plan.contains("TEMP B-TREE"),
        "{what} sorts its rows:\n{plan}"
    );
    for line in plan.lines() {
        assert!(
            !line.starts_with("SCAN messages") || line.contains("INDEX"),
            "{what} scans the table:\n{plan}"
        );
    }
}

/// PostgreSQL plans: an index (or index-only) scan on messages, never a
/// sequential scan of it, and no sort of the whole result.
fn assert_pg_indexed(plan: &str, what: &str) {
    assert!(
        plan.contains("Index Scan") || plan.contains("Index Only Scan"),
        "{what} reads no index:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on messages"),
        "{what} scans the table:\n{plan}"
    );
    assert!(
        !plan.contains("Sort  ") || sorts_only_in_flight(plan),
        "{what} sorts its rows:\n{plan}"
    );
}

/// Whether every sort in `plan` sorts what a scan of `messages_lane` found: the
/// running messages of a trigger, read from the index of unfinished ones (the
/// index by status leaves them out), never its history.
fn sorts_only_in_flight(plan: &str) -> bool {
    let lines: Vec<&str> = plan.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("Sort  "))
        .all(|(i, _)| {
            lines[i + 1..]
                .iter()
                .find(|l| l.contains("->"))
                .is_some_and(|l| l.contains("using messages_lane"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_history_queries_use_indexes_at_100k_messages() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = Store::open(&url).unwrap();
    seed(&store).await;
    check(&store, assert_indexed).await;
    let by_consumer = MessageQuery {
        triggers: vec![key("Orders")],
        consumer: Some("partner".into()),
        limit: 50,
        ..Default::default()
    };
    for plan in store.explain_list(by_consumer).await.unwrap() {
        assert!(plan.contains("messages_trigger_consumer"), "{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_history_queries_use_indexes_at_100k_messages_on_postgres() {
    let Some(pg) = crate::pg::schema("query_plans").await else {
        return;
    };
    let options = flowgate::store::PgOptions {
        pool_size: 4,
        ..Default::default()
    };
    let store = Store::connect(&pg.url, options).await.unwrap();
    seed(&store).await;
    // Executions stored after the fact are sync ones, which run outside lanes;
    // the Lanes rows get the lanes the queue would have stored with them.
    let lanes =
        "UPDATE messages SET lane = 'customer-' || ((input::jsonb #>> '{body,n}')::int % 50)
                 WHERE trigger = 'Lanes'";
    crate::pg::run(&pg.url, lanes).await.unwrap();
    // Fresh statistics, as autovacuum would gather them after such a load: the
    // planner then knows the table is large and each trigger a fraction of it.
    crate::pg::run(&pg.url, "ANALYZE messages").await.unwrap();
    check(&store, assert_pg_indexed).await;
    queue_statements_read_by_id(&store, &pg.url).await;
    running_messages_are_read_from_the_unfinished(&store, &pg.url).await;
}

/// Running messages are left out of the index by status: the log history reads
/// them (filtered, merged into a trigger's page, counted) from `messages_lane`.
async fn running_messages_are_read_from_the_unfinished(store: &Store, url: &str) {
    let running = "UPDATE messages SET status = 'running', finished_at = NULL
                   WHERE id IN (SELECT id FROM messages WHERE tenant = 'acme' AND trigger = 'Orders'
                                ORDER BY id DESC OFFSET 20 LIMIT 120)";
    crate::pg::run(url, running).await.unwrap();
    crate::pg::run(url, "ANALYZE messages").await.unwrap();
    let only = MessageQuery {
        triggers: vec![key("Orders")],
        status: Some(MessageStatus::Running),
        limit: 50,
        ..Default::default()
    };
    let all = MessageQuery {
        status: None,
        ..only.clone()
    };
    for q in [&only, &all] {
        for plan in store.explain_list(q.clone()).await.unwrap() {
            assert_pg_indexed(&plan, "running messages");
            assert!(plan.contains("using messages_lane"), "{plan}");
        }
    }
    let page = store.list_messages(only.clone()).await.unwrap();
    assert_eq!(page.len(), 50);
    assert!(page.iter().all(|m| m.head.status == MessageStatus::Running));
    assert!(
        page.windows(2).all(|w| w[0].head.id > w[1].head.id),
        "newest first"
    );
    let page = store.list_messages(all.clone()).await.unwrap();
    let statuses: Vec<bool> = page
        .iter()
        .map(|m| m.head.status == MessageStatus::Running)
        .collect();
    assert_eq!(statuses[..20], [false; 20], "the 20 newest ended");
    assert_eq!(statuses[20..], [true; 30], "then the running ones");
    assert!(
        page.windows(2).all(|w| w[0].head.id > w[1].head.id),
        "newest first"
    );
    assert_eq!(store.count_messages(only).await.unwrap(), 120);
    // One consumer's messages: its running ones too (left out of the index by
    // consumer as from the index by status).
    let theirs = MessageQuery {
        consumer: Some("webshop".into()),
        ..all.clone()
    };
    for plan in store.explain_list(theirs.clone()).await.unwrap() {
        assert_pg_indexed(&plan, "one consumer's messages");
        assert!(plan.contains("using messages_lane"), "{plan}");
    }
    let page = store.list_messages(theirs.clone()).await.unwrap();
    assert_eq!(page.len(), 50);
    assert!(
        page.iter()
            .all(|m| m.consumer.label.as_deref() == Some("webshop"))
    );
    assert!(page.windows(2).all(|w| w[0].head.id > w[1].head.id));
    assert!(
        page.iter().any(|m| m.head.status == MessageStatus::Running),
        "running messages are found"
    );
    let running_theirs = store
        .count_messages(MessageQuery {
            status: Some(MessageStatus::Running),
            ..theirs
        })
        .await
        .unwrap();
    assert!(running_theirs > 0 && running_theirs < 120);
    let counts = store.status_counts(None).await.unwrap();
    let orders_running = counts
        .iter()
        .find(|c| c.key == key("Orders") && c.status == MessageStatus::Running)
        .map(|c| c.count);
    assert_eq!(orders_running, Some(120));
}

/// The queue's frequent statements on a table whose statistics say that a few
/// per cent of the messages are unfinished, as under load: the partial indexes of
/// unfinished messages then look cheap to the planner, though until the next
/// vacuum they hold an entry for every message that finished since. Ends, lease
/// renewals and retention's purge must go by id; nothing may be a bitmap scan
/// (which visits every such entry's row, each time) or a scan of the table, not
/// even recovery, which reads every open message at start.
async fn queue_statements_read_by_id(store: &Store, url: &str) {
    let queued: Vec<NewMessage> = (0..3_000)
        .map(|i| NewMessage {
            id: MessageId::new(),
            tenant: TenantName::parse("acme").unwrap(),
            trigger: TriggerName::parse("Queued").unwrap(),
            lane: None,
            mode: Mode::Async,
            received_at: flowgate::domain::now_micros(),
            idempotency_key: None,
            input: json!({"body": {"n": i}}),
            body_json: None,
        })
        .collect();
    let pg = store.shared().unwrap();
    for chunk in queued.chunks(500) {
        pg.enqueue(chunk).await.unwrap();
    }
    crate::pg::run(url, "ANALYZE messages").await.unwrap();
    let page = store
        .list_messages(MessageQuery {
            triggers: vec![key("Orders")],
            limit: 32,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<MessageId> = page.iter().map(|m| m.head.id).collect();
    assert_eq!(ids.len(), 32);
    let plans = pg.explain_queue(ids).await.unwrap();
    assert_eq!(plans.len(), 6);
    for (what, plan) in plans {
        assert!(!plan.contains("Bitmap"), "{what} is a bitmap scan:\n{plan}");
        assert!(
            !plan.contains("Seq Scan on messages"),
            "{what} scans the table:\n{plan}"
        );
        if what == "recovery" {
            // Only open messages' entries: a scan of a whole index would read
            // every message the retention period keeps.
            assert!(
                plan.contains("using messages_unordered")
                    && plan.contains("using messages_lane")
                    && plan.contains("using messages_blocking")
                    && !plan.contains("messages_id_key"),
                "recovery does not read the open messages' indexes alone:\n{plan}"
            );
        }
        if ["end of attempts", "lease renewal", "retention"].contains(&what) {
            assert!(
                plan.contains("using messages_id_key on messages"),
                "{what} does not look its messages up by id:\n{plan}"
            );
        }
    }
}

/// Runs each log history query shape: its plans pass `assert`, and it answers
/// a full page, newest first.
async fn check(store: &Store, assert: fn(&str, &str)) {
    let page = |q: MessageQuery| MessageQuery { limit: 50, ..q };
    let cursor = MessageId::at(1_790_000_000_000_000 + 60_000 * 1000);
    let cases = [
        (
            "one trigger",
            page(MessageQuery {
                triggers: vec![key("Orders")],
                ..Default::default()
            }),
        ),
        (
            "one trigger, next page",
            page(MessageQuery {
                triggers: vec![key("Orders")],
                before: Some(cursor),
                ..Default::default()
            }),
        ),
        (
            "by status",
            page(MessageQuery {
                triggers: vec![key("Orders")],
                status: Some(MessageStatus::Dead),
                ..Default::default()
            }),
        ),
        (
            "by lane",
            page(MessageQuery {
                triggers: vec![key("Lanes")],
                lane: Some("customer-3".into()),
                ..Default::default()
            }),
        ),
        (
            "time range",
            page(MessageQuery {
                triggers: vec![key("Prices")],
                from: Some(1_790_000_010_000_000),
                to: Some(1_790_000_020_000_000),
                ..Default::default()
            }),
        ),
        (
            "a tenant's triggers",
            page(MessageQuery {
                triggers: vec![key("Orders"), key("Prices"), key("Stock")],
                status: Some(MessageStatus::Failed),
                ..Default::default()
            }),
        ),
        (
            "by consumer",
            page(MessageQuery {
                triggers: vec![key("Orders")],
                consumer: Some("partner".into()),
                ..Default::default()
            }),
        ),
        (
            "by consumer and status",
            page(MessageQuery {
                triggers: vec![key("Stock")],
                consumer: Some("webshop".into()),
                status: Some(MessageStatus::Succeeded),
                ..Default::default()
            }),
        ),
        ("everything", page(MessageQuery::default())),
    ];
    for (what, q) in cases {
        for plan in store.explain_list(q.clone()).await.unwrap() {
            assert(&plan, what);
        }
        let rows = store.list_messages(q.clone()).await.unwrap();
        assert_eq!(rows.len(), 50, "{what}");
        assert!(
            rows.windows(2).all(|w| w[0].head.id > w[1].head.id),
            "{what}: newest first"
        );
        if let Some(b) = q.before {
            assert!(rows[0].head.id < b);
        }
    }
    let n = store
        .count_messages(MessageQuery {
            triggers: vec![key("Orders")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        n, 20_000,
        "Orders of acme: every 4th message, less every 20th (tenant other)"
    );
}
