//! Turns the outbox's events into deliveries: one per subscription that wants
//! the event, its body made now (with the event's data for `include: full`).
//! Each round stores a batch's deliveries and deletes its events in one
//! transaction (`Store::fan_out`): after a crash the events still there are
//! fanned out again, and none twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::domain::Include;
use crate::domain::{EventKind, MessageId};
use crate::store::{FanOut, NewDelivery, OutboxEvent, Store};

use super::Subscribers;
use super::payload::{Full, body};

/// Events read from the outbox at a time.
const BATCH: u32 = 200;
/// How often the outbox is read when nothing wakes the task: events another
/// node wrote, or left by a crash.
const POLL: Duration = Duration::from_secs(1);

/// Starts the fan-out task. `wake`: something with events was sent to the
/// store; `sender`: wakes the sender once deliveries are stored.
pub fn start(store: Store, subscribers: Subscribers, wake: Arc<Notify>, sender: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            let woken = tokio::time::timeout(POLL, wake.notified()).await.is_ok();
            if woken {
                // Events are written behind with the executions' ends: wait
                // for what was sent before the wake to be committed.
                let _ = store.flush().await;
            }
            loop {
                match round(&store, &subscribers).await {
                    Ok((read, stored)) => {
                        if stored > 0 {
                            sender.notify_one();
                        }
                        if read < BATCH as usize {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fan events out to their subscriptions");
                        tokio::time::sleep(POLL).await;
                        break;
                    }
                }
            }
        }
    });
}

/// One batch of the outbox: (events read, deliveries stored).
async fn round(
    store: &Store,
    subscribers: &Subscribers,
) -> Result<(usize, usize), crate::store::StoreError> {
    if !subscribers.loaded() {
        // Not knowing the stored subscriptions yet, an event would go to the
        // file's only: it waits for the first reading.
        return Ok((0, 0));
    }
    let events = store.outbox(BATCH).await?;
    if events.is_empty() {
        return Ok((0, 0));
    }
    let mut messages: HashMap<MessageId, Option<Full>> = HashMap::new();
    let mut batch = Vec::with_capacity(events.len());
    for e in &events {
        let subs = subscribers.matching(e.tenant.as_str(), &e.event, e.trigger.as_deref());
        let mut deliveries = Vec::with_capacity(subs.len());
        for s in subs {
            let full = match s.include {
                Include::Ids => None,
                Include::Full => match full_data(store, e, &mut messages).await {
                    Ok(full) => full,
                    // A store that is away fails the round (tried again); a
                    // message that cannot be read back sends the ids only
                    // rather than holding up every event behind it.
                    Err(err) if err.is_unavailable() => return Err(err),
                    Err(err) => {
                        tracing::warn!(error = %crate::domain::chain::describe(&err), event = %e.id, "event data unreadable: sending the ids only");
                        if let Some(m) = e.message_id {
                            messages.insert(m, None);
                        }
                        None
                    }
                },
            };
            let id = MessageId::new();
            deliveries.push(NewDelivery {
                id,
                tenant: e.tenant.clone(),
                subscription: s.name.clone(),
                event: e.event.clone(),
                message_id: e.message_id,
                created_at: e.created_at,
                payload: body(id, &s.name, e, full.as_ref()),
            });
        }
        batch.push(FanOut {
            event: e.id,
            deliveries,
        });
    }
    let read = events.len();
    let stored = store.fan_out(batch).await?;
    Ok((read, stored))
}

/// What `include: full` adds for `e`: an emitted event's data, or a message
/// event's input document and response (read once per message and batch).
async fn full_data(
    store: &Store,
    e: &OutboxEvent,
    messages: &mut HashMap<MessageId, Option<Full>>,
) -> Result<Option<Full>, crate::store::StoreError> {
    if let Some(text) = e
        .data
        .as_ref()
        .filter(|_| crate::domain::business_event_name(&e.event).is_ok())
    {
        let data: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut full = Full::new();
        full.insert("data".into(), data);
        return Ok(Some(full));
    }
    let is_message_event =
        EventKind::parse(&e.event).is_some_and(|k| k.as_str().starts_with("message."));
    let (true, Some(id)) = (is_message_event, e.message_id) else {
        return Ok(None);
    };
    if let Some(known) = messages.get(&id) {
        return Ok(known.clone());
    }
    // The input as stored is the one the admin API shows: secrets redacted.
    let full = store.get(id).await?.map(|view| {
        let mut full = Full::new();
        full.insert("input".into(), view.input);
        full.insert(
            "response".into(),
            view.response
                .and_then(|r| serde_json::to_value(r).ok())
                .unwrap_or(Value::Null),
        );
        full
    });
    messages.insert(id, full.clone());
    Ok(full)
}
