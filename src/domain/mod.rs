//! Plain types shared by every layer: validated names, message ids, statuses, times.
//! Nothing here knows about HTTP, SQL or the runtime.

mod cidr;
pub mod depth;
mod event;
mod json_iter;
mod message;
mod names;
mod time;

pub use cidr::Cidr;
pub use event::EventKind;
pub use message::{
    AttemptRecord, MessageId, MessageStatus, MessageView, Mode, NewMessage, Outcome, StoredResponse,
};
pub use names::{NameError, TenantName, TriggerKey, TriggerName};
pub use time::{Micros, format_rfc3339, now_micros};
