//! What operators do to messages: replay one (a new message linked to the
//! original), and let go of an ordered lane held by a failed message (skip it, or
//! unblock the lane with it as it is).

use crate::domain::{MessageId, MessageView, NewMessage, TriggerKey, now_micros};
use crate::store::Release;

use super::dispatcher::Job;
use super::{AcceptError, Queue};

/// Why an operator's action on a lane did nothing.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("message {0} does not hold its lane")]
    NotBlocking(MessageId),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Queue {
    /// Runs `original`'s input again as a new message. When `original` holds its
    /// ordered lane, the replay takes its place at the head of the lane.
    pub async fn replay(&self, original: &MessageView) -> Result<MessageId, AcceptError> {
        let key = TriggerKey {
            tenant: original.tenant.clone(),
            trigger: original.trigger.clone(),
        };
        let id = MessageId::new();
        let mut input = original.input.clone();
        if let Some(obj) = input.as_object_mut() {
            obj.insert("message_id".into(), id.to_string().into());
        }
        let message = NewMessage {
            id,
            tenant: original.tenant.clone(),
            trigger: original.trigger.clone(),
            lane: original.lane.clone(),
            mode: original.mode,
            received_at: now_micros(),
            idempotency_key: None,
            input,
        };
        let dispatcher = self.dispatcher();
        if !dispatcher.reserve(&key) {
            return Err(AcceptError::BacklogFull);
        }
        let stored = async {
            self.store().enqueue(std::slice::from_ref(&message)).await?;
            self.store().link_replay(id, original.id).await?;
            match &original.lane {
                Some(_) => {
                    self.store()
                        .release_lane(original.id, Release::Unblock)
                        .await
                }
                None => Ok(false),
            }
        }
        .await;
        match stored {
            Ok(true) => {
                let lane = original.lane.clone().unwrap_or_default();
                dispatcher.unblock(&key, &lane, Some(Job::new(message)));
                dispatcher.events().lane_unblocked(&key, original.id);
            }
            Ok(false) => dispatcher.push(Job::new(message)),
            Err(e) => {
                dispatcher.release(&key);
                return Err(e.into());
            }
        }
        Ok(id)
    }

    /// Lets go of the lane `message` holds: skipped (status `skipped`) or left as it is.
    pub async fn release_lane(&self, message: &MessageView, how: Release) -> Result<(), LaneError> {
        let lane = message
            .lane
            .clone()
            .ok_or(LaneError::NotBlocking(message.id))?;
        if !self.store().release_lane(message.id, how).await? {
            return Err(LaneError::NotBlocking(message.id));
        }
        let key = TriggerKey {
            tenant: message.tenant.clone(),
            trigger: message.trigger.clone(),
        };
        self.dispatcher().unblock(&key, &lane, None);
        self.dispatcher().events().lane_unblocked(&key, message.id);
        Ok(())
    }
}
