//! What an execution knows of its own run, given to flows as `.meta`: the
//! fencing tokens a flow hands downstream so that a stale or repeated run of a
//! message can be told apart from the current one.

use serde_json::{Map, Value};

use super::message::MessageId;

/// `.meta` of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    pub message_id: MessageId,
    /// 1 for the first run of the message, one more for each run after it.
    pub attempt: u32,
    /// Ordered triggers: the lane (the ordering key's value, or `""` for the
    /// trigger's one lane) and its epoch, which grows each time the lane changes
    /// hands and never goes back.
    pub lane: Option<(String, i64)>,
}

impl RunMeta {
    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(4);
        m.insert(
            "message_id".into(),
            Value::String(self.message_id.to_string()),
        );
        m.insert("attempt".into(), Value::from(self.attempt));
        if let Some((lane, epoch)) = &self.lane {
            m.insert("lane".into(), Value::String(lane.clone()));
            m.insert("lane_epoch".into(), Value::from(*epoch));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_fields_only_for_ordered_triggers() {
        let id = MessageId::new();
        let unordered = RunMeta {
            message_id: id,
            attempt: 2,
            lane: None,
        };
        assert_eq!(
            unordered.to_json(),
            serde_json::json!({"message_id": id.to_string(), "attempt": 2})
        );
        let ordered = RunMeta {
            lane: Some(("c-7".into(), 41)),
            ..unordered
        };
        assert_eq!(ordered.to_json()["lane"], "c-7");
        assert_eq!(ordered.to_json()["lane_epoch"], 41);
    }
}
