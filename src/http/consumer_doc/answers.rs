//! The shapes of the answers every trigger gives, whatever its flow: the error
//! body, the `202` of a queued or timed-out call, the `200` of a flow that ends
//! without `respond`, and the status URL's document. They are built elsewhere
//! (`http/error.rs`, `http/trigger.rs`, `domain::MessageView`); these types only
//! describe them to the consumer document, and the API tests check real answers
//! against what they say (`tests/api/consumer_doc.rs`). `deny_unknown_fields`
//! tells the document an answer has no other fields; a field that may be null
//! is always there (`required = true`).

#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

use crate::domain::{MessageStatus, Outcome};

/// A string of one of `values`.
fn one_of(values: &[&'static str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn status_schema() -> Object {
    one_of(&MessageStatus::ALL.map(MessageStatus::as_str))
}

fn outcome_schema() -> Object {
    let outcomes = [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::Interrupted,
        Outcome::Cancelled,
    ];
    let mut o = one_of(&outcomes.map(Outcome::as_str));
    o.schema_type = utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]);
    if let Some(values) = &mut o.enum_values {
        values.push(Value::Null);
    }
    o
}

fn message_id_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .build()
}

/// Every error answer: `{"errors": [{"code", "message"}]}`; a failed flow's
/// also names its message.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    #[schema(min_items = 1)]
    pub errors: Vec<ErrorItem>,
    /// The message whose flow failed (`flow_failed`, `budget_exceeded`,
    /// `rejected`): ask its status URL, or quote it to the operators.
    #[schema(schema_with = message_id_schema)]
    pub message_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorItem {
    /// What went wrong, for programs: the answer's description lists the
    /// codes it may carry.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// `invalid_body` against the trigger's body schema: the JSON pointer of the
    /// offending value (`""`: the body itself).
    pub pointer: Option<String>,
    /// `lane_blocked`: the failed message that holds the ordered lane.
    #[schema(schema_with = message_id_schema)]
    pub blocked_by: Option<String>,
}

/// `202 Accepted`: the message is stored (async), or still running past the
/// trigger's timeout (sync); its status URL is in `Location`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    #[schema(schema_with = message_id_schema)]
    pub message_id: String,
    #[schema(schema_with = status_schema)]
    pub status: String,
}

/// `200` of a sync flow that ended without `respond`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Succeeded {
    #[schema(schema_with = message_id_schema)]
    pub message_id: String,
    /// Always `succeeded`.
    #[schema(schema_with = succeeded_schema)]
    pub status: String,
}

fn succeeded_schema() -> Object {
    one_of(&["succeeded"])
}

/// The status URL's answer: where the message is, its attempts and, once the
/// flow answered, that answer.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageStatusDocument {
    #[schema(schema_with = message_id_schema)]
    pub message_id: String,
    pub tenant: String,
    pub trigger: String,
    #[schema(schema_with = status_schema)]
    pub status: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    pub attempts: Vec<Attempt>,
    /// The flow's answer (`respond`, or a `fail` step's), once there is one.
    #[schema(required = true)]
    pub response: Option<StoredAnswer>,
    /// Why the message failed, when it did.
    #[schema(required = true)]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    #[schema(minimum = 1)]
    pub number: u32,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
    /// succeeded, failed, interrupted or cancelled; null while it runs.
    #[schema(required = true, schema_with = outcome_schema)]
    pub outcome: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// `budget_exceeded`, `flow_failed`, `rejected`, `interrupted`, `cancelled`.
    #[schema(required = true)]
    pub error_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredAnswer {
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    /// The body the flow answered with.
    pub body: Value,
}
