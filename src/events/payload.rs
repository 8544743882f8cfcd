//! The body of a delivery: the exact JSON text that is signed and sent.
//!
//! Every body names the event and what it is about:
//! `{id, subscription, event, created_at, data: {message_id, tenant, trigger}}`.
//! A subscription with `include: full` also gets the event's data inside
//! `data`: an emitted event's `data`; a message event's `input` (the input
//! document as stored, secrets redacted) and `response`. A body that would be
//! larger than [`MAX_BODY`] is sent with the ids only and `truncated: true`.

use serde_json::{Map, Value, json};

use crate::domain::{MessageId, format_rfc3339};
use crate::store::OutboxEvent;

/// The largest body sent with the event's data; past it, the ids only.
pub const MAX_BODY: usize = 256 * 1024;

/// What `include: full` adds to a body's `data`, fetched once per event.
pub type Full = Map<String, Value>;

/// The body for delivery `id` of event `e` to `subscription`, with `full`'s
/// members in `data` when given.
pub fn body(id: MessageId, subscription: &str, e: &OutboxEvent, full: Option<&Full>) -> String {
    let mut data = json!({
        "message_id": e.message_id.map(|m| m.to_string()),
        "tenant": e.tenant.as_str(),
        "trigger": e.trigger,
    });
    // flowgate's own events about something other than a message (a key
    // expiring) carry what they are about in every body.
    if let Some(detail) = own_detail(e)
        && let Some(obj) = data.as_object_mut()
    {
        obj.extend(detail);
    }
    let mut doc = json!({
        "id": id.to_string(),
        "subscription": subscription,
        "event": e.event,
        "created_at": format_rfc3339(e.created_at),
    });
    let Some(full) = full else {
        doc["data"] = data;
        return doc.to_string();
    };
    if let Some(obj) = data.as_object_mut() {
        obj.extend(full.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    doc["data"] = data;
    let text = doc.to_string();
    if text.len() <= MAX_BODY {
        return text;
    }
    doc["data"] = json!({
        "message_id": e.message_id.map(|m| m.to_string()),
        "tenant": e.tenant.as_str(),
        "trigger": e.trigger,
    });
    doc["truncated"] = Value::Bool(true);
    doc.to_string()
}

/// The members an own (not business) event's stored data adds to `data`.
pub fn own_detail(e: &OutboxEvent) -> Option<Map<String, Value>> {
    if crate::domain::business_event_name(&e.event).is_ok() {
        return None;
    }
    match serde_json::from_str(e.data.as_deref()?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantName;

    fn event() -> OutboxEvent {
        OutboxEvent {
            id: MessageId::new(),
            tenant: TenantName::parse("acme").unwrap(),
            trigger: Some("Orders".into()),
            event: "order.created".into(),
            message_id: Some(MessageId::new()),
            created_at: 1_700_000_000_000_000,
            data: Some("{\"n\":1}".into()),
        }
    }

    #[test]
    fn ids_only_full_data_and_the_fallback_past_the_limit() {
        let e = event();
        let id = MessageId::new();
        let ids: Value = serde_json::from_str(&body(id, "s", &e, None)).unwrap();
        assert_eq!(ids["event"], "order.created");
        assert_eq!(ids["data"]["trigger"], "Orders");
        assert!(ids["data"].get("data").is_none());
        assert!(ids.get("truncated").is_none());

        let mut full = Full::new();
        full.insert("data".into(), json!({"n": 1}));
        let with: Value = serde_json::from_str(&body(id, "s", &e, Some(&full))).unwrap();
        assert_eq!(with["data"]["data"], json!({"n": 1}));
        assert_eq!(with["data"]["tenant"], "acme");

        full.insert("data".into(), Value::String("x".repeat(MAX_BODY)));
        let text = body(id, "s", &e, Some(&full));
        assert!(text.len() < 1024, "{}", text.len());
        let cut: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(cut["truncated"], true);
        assert!(cut["data"].get("data").is_none());
        assert_eq!(cut["data"]["message_id"], ids["data"]["message_id"]);
    }
}
