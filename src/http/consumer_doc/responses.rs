//! An operation's answers, gathered by status (the flow's own bodies, the
//! error codes) and then built into OpenAPI responses: one JSON schema per
//! status (`anyOf` when several bodies share it; error bodies with their
//! `code` narrowed to the codes of that status) and the headers that come
//! with it.

use std::collections::BTreeMap;

use utoipa::ToSchema;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Responses, ResponsesBuilder,
};

use super::answers;
use super::codes::Code;

/// The answers of one operation, by status, gathered before they are built.
#[derive(Default)]
pub struct Answers(BTreeMap<u16, Answer>);

#[derive(Default)]
pub struct Answer {
    said: Vec<String>,
    /// The bodies it may have besides error bodies (any of them).
    pub bodies: Vec<RefOr<Schema>>,
    codes: Vec<Code>,
    /// A `respond` step of this status also has an XML answer.
    pub xml: bool,
    /// `X-Message-Id` comes with it.
    pub message_id: bool,
    /// `Location` (the status URL) comes with it.
    pub location: bool,
}

impl Answer {
    pub fn say(&mut self, what: &str) {
        self.said.push(what.to_owned());
    }
}

impl Answers {
    pub fn at(&mut self, status: u16) -> &mut Answer {
        self.0.entry(status).or_default()
    }

    pub fn error(&mut self, code: Code) {
        let a = self.at(code.status);
        a.message_id |= matches!(code.code, "flow_failed" | "budget_exceeded" | "rejected");
        a.codes.push(code);
    }

    pub fn build(self) -> Responses {
        let mut responses = ResponsesBuilder::new();
        for (status, a) in self.0 {
            let mut said = a.said.join("; ");
            if !a.codes.is_empty() {
                if !said.is_empty() {
                    said.push_str(". ");
                }
                said.push_str("Errors:");
                for c in &a.codes {
                    said.push_str(&format!("\n- `{}`: {}", c.code, c.when));
                }
            }
            let mut bodies = a.bodies;
            if !a.codes.is_empty() {
                let mut names: Vec<&str> = a.codes.iter().map(|c| c.code).collect();
                names.dedup();
                bodies.push(RefOr::T(errors_with(&names)));
            }
            let schema = if bodies.len() == 1 {
                bodies.remove(0)
            } else {
                let any_of = bodies
                    .into_iter()
                    .fold(AnyOfBuilder::new(), AnyOfBuilder::item);
                RefOr::T(Schema::AnyOf(any_of.build()))
            };
            let mut r = ResponseBuilder::new().description(said).content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            );
            if a.xml {
                r = r.content(
                    "application/xml",
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
            }
            let string = || ObjectBuilder::new().schema_type(Type::String);
            let header = |what: &str, schema: ObjectBuilder| {
                HeaderBuilder::new()
                    .schema(Some(schema))
                    .description(Some(what))
                    .build()
            };
            if a.message_id {
                r = r.header("X-Message-Id", header("The message's id", string()));
            }
            if a.location {
                r = r.header("Location", header("The message's status URL", string()));
            }
            if status == 401 {
                r = r.header(
                    "WWW-Authenticate",
                    header(
                        "The credential expected: `Bearer realm=\"flowgate\"`",
                        string(),
                    ),
                );
            }
            if matches!(status, 429 | 503) && !a.codes.is_empty() {
                r = r.header(
                    "Retry-After",
                    header(
                        "Seconds to wait before trying again",
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    ),
                );
            }
            responses = responses.response(status.to_string(), r.build());
        }
        responses.build()
    }
}

/// The error body, with `code` one of `codes`.
fn errors_with(codes: &[&str]) -> Schema {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let item = ObjectBuilder::new().property("code", code);
    let narrowed = ObjectBuilder::new().property("errors", ArrayBuilder::new().items(item));
    Schema::AllOf(
        AllOfBuilder::new()
            .item(Ref::from_schema_name(answers::Errors::name()))
            .item(narrowed)
            .build(),
    )
}
