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
