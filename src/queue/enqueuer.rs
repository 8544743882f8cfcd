//! Group commit: accepted messages from many requests are stored together in one
//! transaction, then handed to the dispatcher in acceptance order, then answered.
//! Message ids (UUIDv7) are assigned here, so their order is the acceptance order.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{MessageId, NewMessage};
use crate::store::{EnqueueOutcome, Store, StoreError};

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

async fn run(mut rx: mpsc::Receiver<Submission>, store: Store, dispatcher: Arc<Dispatcher>) {
    while let Some(first) = rx.recv().await {
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
        let (messages, rest): (Vec<NewMessage>, Vec<_>) = batch
            .into_iter()
            .map(|s| (s.message, (s.waiter, s.reply)))
            .unzip();
        match store.enqueue(&messages).await {
            Ok(outcomes) => {
                for ((message, (waiter, reply)), outcome) in
                    messages.into_iter().zip(rest).zip(outcomes)
                {
                    let id = message.id;
                    if let EnqueueOutcome::Inserted = &outcome {
                        if let Some(w) = waiter {
                            dispatcher.waiters().register(id, w);
                        }
                        dispatcher.push(Job::new(message));
                    }
                    let _ = reply.send(Ok((id, outcome)));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (_, reply) in rest {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
        }
    }
}
