//! Plain types shared by every layer: validated names, message ids, statuses, times.
//! Nothing here knows about HTTP, SQL or the runtime.

pub mod chain;
mod cidr;
pub mod depth;
mod event;
mod headers;
mod json_iter;
pub mod json_text;
pub mod key_id;
mod limits;
mod message;
mod meta;
mod names;
mod signature;
mod size;
mod subscription;
mod time;

pub use cidr::{Cidr, CidrError};
pub use event::{
    Emitted, EventKind, EventNameError, MAX_EMITS, MAX_EMITTED_BYTES, RESERVED_PREFIXES,
    business_event_name,
};
pub use headers::{REDACTED, SECRET_HEADERS, header_pairs};
pub use limits::{DAY_MICROS, LimitError, Limits, Per, Rate, parse_quota, utc_day};
pub use message::{
    AttemptRecord, Consumer, MessageHead, MessageId, MessageStatus, MessageView, Mode, NewMessage,
    Outcome, OwnedConsumer, StoredResponse,
};
pub use meta::RunMeta;
pub use names::{NameError, TenantName, TriggerKey, TriggerName};
pub use signature::{HmacAlgorithm, HmacRule, SignatureEncoding, SignatureScheme};
pub use size::{SizeError, parse_size};
pub use subscription::{
    EventPattern, Include, MAX_API_SUBSCRIPTIONS, Subscription, SubscriptionError,
    SubscriptionSource, check_description, check_name, check_url, file_subscription_id,
    format_retry, new_secret, parse_events, parse_retry,
};
pub use time::{Micros, format_rfc3339, now_micros};
