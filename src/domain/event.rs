//! The events a tenant can subscribe to (outbound webhooks).

/// What happened. The names are those of `_tenant.yaml` and of the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    MessageSucceeded,
    MessageFailed,
    MessageDead,
    MessageRejected,
    MessageCancelled,
    LaneBlocked,
    LaneUnblocked,
    FlowLoadFailed,
    /// A key with an id expires within seven days (sent once per key).
    KeyExpiring,
}

impl EventKind {
    pub const ALL: [Self; 9] = [
        Self::MessageSucceeded,
        Self::MessageFailed,
        Self::MessageDead,
        Self::MessageRejected,
        Self::MessageCancelled,
        Self::LaneBlocked,
        Self::LaneUnblocked,
        Self::FlowLoadFailed,
        Self::KeyExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageSucceeded => "message.succeeded",
            Self::MessageFailed => "message.failed",
            Self::MessageDead => "message.dead",
            Self::MessageRejected => "message.rejected",
            Self::MessageCancelled => "message.cancelled",
            Self::LaneBlocked => "lane.blocked",
            Self::LaneUnblocked => "lane.unblocked",
            Self::FlowLoadFailed => "flow.load_failed",
            Self::KeyExpiring => "key.expiring",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// One bit per kind: a tenant's subscriptions are summed up in a mask, so
    /// deciding that nobody listens costs one AND.
    pub fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A business event a flow emitted (`emit` step): delivered to the tenant's
/// subscribers only when its execution succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event: String,
    pub data: serde_json::Value,
}

/// At most this many `emit`s in one execution: a `for_each` over a large
/// list must not fan out into a flood of deliveries.
pub const MAX_EMITS: usize = 100;
/// At most this much emitted data (as JSON text) in one execution.
pub const MAX_EMITTED_BYTES: usize = 1 << 20;

/// Prefixes of flowgate's own events: a flow's `emit` may not use them, so a
/// subscriber can tell a business event from flowgate's by its name alone.
pub const RESERVED_PREFIXES: [&str; 4] = ["message", "lane", "flow", "key"];

/// Why a name is not one a flow may emit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    #[error(
        "`{0}` is not an event name: lower-case words of letters, digits and `_` joined by dots, at least two (`order.created`)"
    )]
    Shape(String),
    #[error(
        "`{0}` is flowgate's own: names starting with message., lane., flow. or key. are reserved"
    )]
    Reserved(String),
}

/// Checks a business event's name: `[a-z0-9_]+(\.[a-z0-9_]+)+`, outside the
/// reserved prefixes.
pub fn business_event_name(name: &str) -> Result<(), EventNameError> {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    if !word(first) || rest.is_empty() || !rest.iter().all(|w| word(w)) {
        return Err(EventNameError::Shape(name.to_owned()));
    }
    if RESERVED_PREFIXES.contains(&first) {
        return Err(EventNameError::Reserved(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_names_are_dotted_lower_case_words_outside_the_reserved_prefixes() {
        for ok in ["order.created", "item_2.updated", "a.b.c", "keys.rotated"] {
            assert_eq!(business_event_name(ok), Ok(()), "{ok}");
        }
        for shape in [
            "order",
            "Order.created",
            "order.",
            ".x",
            "order..x",
            "order.cre-ated",
            "",
        ] {
            assert!(
                matches!(business_event_name(shape), Err(EventNameError::Shape(_))),
                "{shape}"
            );
        }
        for reserved in ["message.sent", "lane.x", "flow.started", "key.expiring"] {
            assert!(
                matches!(
                    business_event_name(reserved),
                    Err(EventNameError::Reserved(_))
                ),
                "{reserved}"
            );
        }
    }
}
