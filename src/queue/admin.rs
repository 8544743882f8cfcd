//! What operators do to messages: replay (new messages linked to the originals),
//! and let go of an ordered lane held by a failed message (skip it, or unblock the
//! lane with it as it is).

use crate::domain::{MessageId, MessageView, NewMessage, TriggerKey, now_micros};
use crate::store::Release;

use super::job::Job;
use super::{AcceptError, Queue};

/// Why an operator's action on a lane did nothing.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("message {0} does not hold its lane")]
    NotBlocking(MessageId),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn key_of(m: &MessageView) -> TriggerKey {
    TriggerKey {
        tenant: m.head.tenant.clone(),
        trigger: m.head.trigger.clone(),
    }
}

/// A new message with `original`'s input.
fn replay_of(original: &MessageView) -> NewMessage {
    let id = MessageId::new();
    let mut input = original.input.clone();
    if let Some(obj) = input.as_object_mut() {
        obj.insert("message_id".into(), id.to_string().into());
    }
    NewMessage {
        id,
        tenant: original.head.tenant.clone(),
        trigger: original.head.trigger.clone(),
        lane: original.head.lane.clone(),
        mode: original.head.mode,
        received_at: now_micros(),
        idempotency_key: None,
        input,
        body_json: None,
    }
}

impl Queue {
    /// Runs `original`'s input again as a new message. When `original` holds its
    /// ordered lane, the replay takes its place at the head of the lane.
    pub async fn replay(&self, original: &MessageView) -> Result<MessageId, AcceptError> {
        Ok(self.replay_many(std::slice::from_ref(original)).await?[0])
    }

    /// Replays `originals` in their order: stored in one batch, linked in one
    /// transaction, then queued. Each takes a backlog place; none is stored when
    /// the backlog cannot take them all.
    pub async fn replay_many(
        &self,
        originals: &[MessageView],
    ) -> Result<Vec<MessageId>, AcceptError> {
        let dispatcher = self.dispatcher();
        let mut reserved = Vec::with_capacity(originals.len());
        for o in originals {
            let key = key_of(o);
            if !dispatcher.reserve(&key) {
                for k in &reserved {
                    dispatcher.release(k);
                }
                return Err(AcceptError::BacklogFull);
            }
            reserved.push(key);
        }
        let messages: Vec<NewMessage> = originals.iter().map(replay_of).collect();
        let links = messages
            .iter()
            .zip(originals)
            .map(|(m, o)| (m.id, o.head.id))
            .collect();
        let stored = async {
            self.store().enqueue(&messages).await?;
            self.store().link_replays(links).await
        }
        .await;
        if let Err(e) = stored {
            for k in &reserved {
                dispatcher.release(k);
            }
            return Err(e.into());
        }
        let mut ids = Vec::with_capacity(messages.len());
        for ((message, original), key) in messages.into_iter().zip(originals).zip(reserved) {
            ids.push(message.id);
            // A replay of the message holding its lane goes to the head of the lane.
            let held = match &original.head.lane {
                Some(_) => self
                    .store()
                    .release_lane_with(
                        original.head.id,
                        Release::Unblock,
                        dispatcher.events().of_unblock(&key, original.head.id),
                    )
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, message = %original.head.id, "cannot release the lane for a replay");
                        false
                    }),
                None => false,
            };
            if held {
                let lane = original.head.lane.clone().unwrap_or_default();
                dispatcher.unblock(&key, &lane, Some(Job::new(message)));
                dispatcher.events().sent();
            } else {
                dispatcher.push(Job::new(message));
            }
        }
        Ok(ids)
    }

    /// Lets go of the lane `message` holds: skipped (status `skipped`) or left as it is.
    pub async fn release_lane(&self, message: &MessageView, how: Release) -> Result<(), LaneError> {
        let lane = message
            .head
            .lane
            .clone()
            .ok_or(LaneError::NotBlocking(message.head.id))?;
        let key = key_of(message);
        let events = self.dispatcher().events().of_unblock(&key, message.head.id);
        if !self
            .store()
            .release_lane_with(message.head.id, how, events)
            .await?
        {
            return Err(LaneError::NotBlocking(message.head.id));
        }
        self.dispatcher().unblock(&key, &lane, None);
        self.dispatcher().events().sent();
        Ok(())
    }
}
