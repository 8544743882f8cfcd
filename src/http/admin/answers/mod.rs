//! The admin API's answers, as types, a file per group of endpoints. Each is
//! serialized as it is and described by its `ToSchema` derive, so the OpenAPI
//! document cannot name a field the answer lacks. Times are RFC 3339 with microseconds, durations milliseconds,
//! ids text. `deny_unknown_fields` only tells the document that an answer has no
//! fields but these (`additionalProperties: false`); nothing here is read. A
//! field that may be null is still always there: `required = true`.

mod deliveries;
mod keys;
mod me;
mod messages;
mod subscriptions;
mod triggers;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Micros, format_rfc3339};

pub use deliveries::{Delivery, DeliveryPage, Redelivered};
pub use keys::{ApiKey, ConsumerQuota, ConsumerRate, KeyConsumer, KeyList};
pub use me::Me;
pub use messages::{
    BulkAnswer, BulkCount, BulkReplayed, MessageDetail, MessagePage, MessageSummary, Released,
    Replayed,
};
pub use subscriptions::{
    DeletedSubscription, RotatedSecret, SubscriptionList, SubscriptionView, TestedSubscription,
};
pub use triggers::{Lane, LaneList, Tenant, TenantList, Trigger, TriggerList};

/// Microseconds as the milliseconds of a `duration_ms`.
pub fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Something that started and may have finished (a message, an attempt), as
/// answers write it: the start, `finished_at` and `duration_ms`.
fn span(start: Micros, finished: Option<Micros>) -> (String, Option<String>, Option<f64>) {
    (
        format_rfc3339(start),
        finished.map(format_rfc3339),
        finished.map(|f| ms(f - start)),
    )
}

/// Every error answer: `{"errors": [{"code", "message"}]}`. Built by
/// `http::error`; here for the document (a test holds the two together).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorItem {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_type_is_what_error_answers_are() {
        let typed = Errors {
            errors: vec![ErrorItem {
                code: "not_found".into(),
                message: "no such thing".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(typed).unwrap(),
            crate::http::errors_body("not_found", "no such thing")
        );
    }
}
