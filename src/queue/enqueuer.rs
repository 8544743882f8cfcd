//! Group commit: accepted messages from many requests are stored together in one
//! transaction, then handed to the dispatcher in acceptance order, then answered.
//! Message ids (UUIDv7) are assigned here, so their order is the acceptance order.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::domain::{MessageId, NewMessage};
use crate::store::{EnqueueOutcome, Store, StoreError, Submitted};

use super::dispatcher::Dispatcher;
use super::job::Job;
use super::waiters::WaitOutcome;

pub const MAX_BATCH: usize = 1024;

pub struct Submission {
    pub message: NewMessage,
    pub waiter: Option<oneshot::Sender<WaitOutcome>>,
    pub reply: oneshot::Sender<Result<(MessageId, EnqueueOutcome), StoreError>>,
}

/// Runs the enqueuer on a thread of its own. On the runtime that executes flows
/// it would wait behind executions for its turn, and every accepting caller with it.
/// `slots`: how many batches may be handed to the store uncommitted at once
/// (see `Execution::batches_in_flight`).
pub fn start(
    rx: mpsc::Receiver<Submission>,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    slots: usize,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("flowgate-enqueue".into())
        .spawn(move || runtime.block_on(run(rx, store, dispatcher, slots)))?;
    Ok(())
}

/// How long a batch formed while another commits may wait for company.
const COMPANY_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

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

/// Outcomes are taken in submission order, so messages reach the dispatcher in
/// acceptance order.
async fn run(
    mut rx: mpsc::Receiver<Submission>,
    store: Store,
    dispatcher: Arc<Dispatcher>,
    slots: usize,
) {
    let slots = slots.max(1);
    let room = Arc::new(Semaphore::new(slots));
    let (in_flight, stored) = mpsc::channel(slots);
    let completer = tokio::spawn(complete(stored, dispatcher.clone()));
    // The size of the batch handed to the store last.
    let mut in_flight_size = 0;
    while let Some(first) = rx.recv().await {
        let Ok(slot) = room.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        take_waiting(&mut rx, &mut batch);
        let others_in_flight = slots - 1 - room.available_permits();
        if others_in_flight > 0 && batch.len() < in_flight_size {
            wait_for_company(&mut rx, &mut batch, &room, in_flight_size).await;
        }
        in_flight_size = batch.len();
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

/// Moves the submissions already waiting into `batch`.
fn take_waiting(rx: &mut mpsc::Receiver<Submission>, batch: &mut Vec<Submission>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(s) => batch.push(s),
            Err(_) => break,
        }
    }
}

/// A batch formed while the one before is still committing waits for company:
/// until it holds as many messages as that one, that one commits, or
/// `COMPANY_WAIT` passes. Without it the two batches in flight drift apart in
/// size: the callers a large batch answers send their next messages all at
/// once, while the slot the small one frees takes whatever is there, often one
/// message, and PostgreSQL pays a whole statement and commit for it.
async fn wait_for_company(
    rx: &mut mpsc::Receiver<Submission>,
    batch: &mut Vec<Submission>,
    room: &Semaphore,
    target: usize,
) {
    let deadline = tokio::time::Instant::now() + COMPANY_WAIT;
    while batch.len() < target {
        tokio::select! {
            biased;
            s = rx.recv() => match s {
                Some(s) => batch.push(s),
                None => return,
            },
            // The batch in flight committed: nothing to overlap with any more.
            _ = room.acquire() => break,
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    take_waiting(rx, batch);
}

/// Answers each batch once it is durable and hands its messages to the dispatcher.
async fn complete(mut stored: mpsc::Receiver<InFlight>, dispatcher: Arc<Dispatcher>) {
    // A batch's slot is given back once it is answered and dispatched.
    while let Some((messages, mine, replies, submitted, _slot)) = stored.recv().await {
        let is_mine = |i: usize| mine.get(i).copied().unwrap_or(false);
        match submitted.await {
            Ok(outcomes) => {
                // Every caller is answered before the jobs are handed over: a
                // job that will wait is parked (its input written out as text),
                // which no caller's 202 should wait for. Handed over in order.
                let mut jobs = Vec::with_capacity(messages.len());
                for (i, ((message, reply), outcome)) in
                    messages.into_iter().zip(replies).zip(outcomes).enumerate()
                {
                    let id = message.id;
                    match &outcome {
                        EnqueueOutcome::Inserted => jobs.push((is_mine(i), Job::new(message))),
                        EnqueueOutcome::Duplicate(_) => {
                            dispatcher.waiters().forget(id);
                            dispatcher.unclaim(usize::from(is_mine(i)));
                        }
                    }
                    let _ = reply.send(Ok((id, outcome)));
                }
                for (mine, job) in jobs {
                    if mine {
                        dispatcher.push_claimed(job);
                    } else {
                        dispatcher.push(job);
                    }
                }
            }
            Err(e) => {
                dispatcher.unclaim(mine.iter().filter(|m| **m).count());
                for (message, reply) in messages.iter().zip(replies) {
                    dispatcher.waiters().forget(message.id);
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn submission() -> Submission {
        Submission {
            message: NewMessage::example(serde_json::json!({})),
            waiter: None,
            reply: oneshot::channel().0,
        }
    }

    /// Two slots: ours, and the other one taken by the batch in flight.
    fn one_in_flight() -> (Arc<Semaphore>, [OwnedSemaphorePermit; 2]) {
        let room = Arc::new(Semaphore::new(2));
        let ours = room.clone().try_acquire_owned().unwrap();
        let theirs = room.clone().try_acquire_owned().unwrap();
        (room, [ours, theirs])
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_until_it_is_as_large_as_the_one_in_flight() {
        let (tx, mut rx) = mpsc::channel(16);
        let (room, _slots) = one_in_flight();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            for _ in 0..3 {
                let _ = tx.send(submission()).await;
            }
            // Too late: the batch left with the first three.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = tx.send(submission()).await;
        });
        let start = Instant::now();
        let mut batch = vec![submission()];
        wait_for_company(&mut rx, &mut batch, &room, 4).await;
        assert_eq!(batch.len(), 4);
        assert_eq!(start.elapsed(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stops_waiting_when_the_one_in_flight_commits() {
        let (_tx, mut rx) = mpsc::channel(16);
        let (room, [_ours, theirs]) = one_in_flight();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(theirs);
        });
        let start = Instant::now();
        let mut batch = vec![submission()];
        wait_for_company(&mut rx, &mut batch, &room, 8).await;
        assert_eq!(batch.len(), 1);
        assert!(COMPANY_WAIT > Duration::from_millis(1));
        assert_eq!(start.elapsed(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_company_no_longer_than_its_limit() {
        let (_tx, mut rx) = mpsc::channel(16);
        let (room, _slots) = one_in_flight();
        let start = Instant::now();
        let mut batch = vec![submission()];
        wait_for_company(&mut rx, &mut batch, &room, 8).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(start.elapsed(), COMPANY_WAIT);
    }
}
