//! Group commit: accepted messages from many requests are stored together in one
//! transaction, then handed to the dispatcher in acceptance order, then answered.
//! Message ids (UUIDv7) are assigned here, so their order is the acceptance order.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::domain::{MessageId, NewMessage};
use crate::store::{EnqueueOutcome, Store, StoreError, Submitted};

use super::dispatcher::{Dispatcher, Job};
use super::waiters::WaitOutcome;

pub const MAX_BATCH: usize = 1024;

pub struct Submission {
    pub message: NewMessage,
    pub waiter: Option<oneshot::Sender<WaitOutcome>>,
    pub reply: oneshot::Sender<Result<(MessageId, EnqueueOutcome), StoreError>>,
}

/// Runs the enqueuer on a thread of its own. On the runtime that executes flows
/// it would wait behind executions for its turn, and every accepting caller with it.
pub fn start(
    rx: mpsc::Receiver<Submission>,
    store: Store,
    dispatcher: Arc<Dispatcher>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("flowgate-enqueue".into())
        .spawn(move || runtime.block_on(run(rx, store, dispatcher)))?;
    Ok(())
}

/// Batches handed to the shared store and not yet committed: each is a transaction
/// on a connection of its own, so while one waits for its commit the next is
/// written. Outcomes are taken in submission order, so messages reach the
/// dispatcher in acceptance order. Two, not more: with eight in flight most
/// batches held one to three messages, and PostgreSQL spent ~100 µs per message
/// on them against ~30 µs in a batch of twenty. The embedded store takes one
/// batch at a time: everything that arrives while a batch commits goes into the
/// next, and its single writer would otherwise commit (and fsync) smaller
/// batches more often, which measured slower.
const IN_FLIGHT_SHARED: usize = 2;

type Replies = Vec<oneshot::Sender<Result<(MessageId, EnqueueOutcome), StoreError>>>;

/// A batch handed to the store: its messages, which of them this node claimed,
/// its callers, its outcome to come and its place among the batches in flight.
type InFlight = (
    Vec<NewMessage>,
    Vec<bool>,
    Replies,
    Submitted,
    OwnedSemaphorePermit,
);

async fn run(mut rx: mpsc::Receiver<Submission>, store: Store, dispatcher: Arc<Dispatcher>) {
    let room = Arc::new(Semaphore::new(if store.shared().is_some() {
        IN_FLIGHT_SHARED
    } else {
        1
    }));
    let (in_flight, stored) = mpsc::channel(IN_FLIGHT_SHARED);
    let completer = tokio::spawn(complete(stored, dispatcher.clone()));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = room.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        for s in &mut batch {
            let id = MessageId::new();
            s.message.id = id;
            if let Some(obj) = s.message.input.as_object_mut() {
                obj.insert(
                    "message_id".into(),
                    serde_json::Value::String(id.to_string()),
                );
            }
        }
        // A waiting caller is known before its message can run anywhere: a run
        // that finds no one waiting keeps its response to the store alone.
        let waiters = dispatcher.waiters();
        let (messages, replies): (Vec<NewMessage>, Replies) = batch
            .into_iter()
            .map(|s| {
                if let Some(w) = s.waiter {
                    waiters.register(s.message.id, w);
                }
                (s.message, s.reply)
            })
            .unzip();
        let mine = dispatcher.claims(&messages);
        let submitted = store.submit(&messages, &mine).await;
        if in_flight
            .send((messages, mine, replies, submitted, slot))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(in_flight);
    let _ = completer.await;
}

/// Answers each batch once it is durable and hands its messages to the dispatcher.
async fn complete(mut stored: mpsc::Receiver<InFlight>, dispatcher: Arc<Dispatcher>) {
    // A batch's slot is given back once it is answered and dispatched.
    while let Some((messages, mine, replies, submitted, _slot)) = stored.recv().await {
        let is_mine = |i: usize| mine.get(i).copied().unwrap_or(false);
        match submitted.await {
            Ok(outcomes) => {
                for (i, ((message, reply), outcome)) in
                    messages.into_iter().zip(replies).zip(outcomes).enumerate()
                {
                    let id = message.id;
                    match &outcome {
                        EnqueueOutcome::Inserted => {
                            if is_mine(i) {
                                dispatcher.push_claimed(Job::new(message));
                            } else {
                                dispatcher.push(Job::new(message));
                            }
                        }
                        EnqueueOutcome::Duplicate(_) => {
                            dispatcher.waiters().forget(id);
                            dispatcher.unclaim(usize::from(is_mine(i)));
                        }
                    }
                    let _ = reply.send(Ok((id, outcome)));
                }
            }
            Err(e) => {
                dispatcher.unclaim(mine.iter().filter(|m| **m).count());
                let why = e.to_string();
                for (message, reply) in messages.iter().zip(replies) {
                    dispatcher.waiters().forget(message.id);
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}
