//! The consumer document: an OpenAPI 3.1 description of the triggers one
//! consumer (a key label of a tenant) may call, made from the loaded triggers
//! with utoipa's types, as the admin API's is. A trigger's own schemas
//! (`body:`, `response_schema:`) go in as written (`embed.rs`); the answers
//! every trigger gives are described by the types of `answers.rs`, the error
//! codes by `codes.rs`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApiBuilder, Paths, Ref, RefOr, Required};

use crate::domain::Mode;
use crate::flow::model::{Param, ParamType};
use crate::flow::statuses::AnswerStatuses;
use crate::flow::{Auth, Method, Trigger};

use super::answers;
use super::codes;
use super::embed;
use super::responses::Answers;

const API_KEY: &str = "apiKey";
const BEARER: &str = "bearer";

/// Whether consumer `label` may call `trigger` with its key: an enabled
/// trigger that lists the label, or that is open. Triggers called with Basic
/// credentials or signatures are not called with a key, and are not listed.
pub fn may_call(trigger: &Trigger, label: &str) -> bool {
    trigger.enabled
        && match &trigger.auth {
            Auth::None => true,
            Auth::ApiKeys(labels) => labels.iter().any(|l| l == label),
            Auth::Basic(_) | Auth::Hmac(_) => false,
        }
}

/// The document for consumer `label` of `tenant`, listing `triggers` (those
/// it may call) by name.
pub fn document(
    tenant: &str,
    label: &str,
    mut triggers: Vec<&Trigger>,
) -> Result<Value, serde_json::Error> {
    triggers.sort_by(|a, b| a.key.trigger.as_str().cmp(b.key.trigger.as_str()));
    let mut paths = Paths::new();
    let mut own: Vec<(String, Value)> = Vec::new();
    for t in triggers {
        let name = t.key.trigger.as_str();
        let mut own_schema = |kind: &str, schema: Option<&crate::flow::schema::BodySchema>| {
            let schema = schema?;
            let component = format!("{name}.{kind}");
            own.push((
                component.clone(),
                embed::component(&component, schema.source()),
            ));
            Some(component)
        };
        let schemas = OwnSchemas {
            body: own_schema("body", t.body_schema.as_ref()),
            response: own_schema("response", t.response_schema.as_ref()),
        };
        let statuses = AnswerStatuses::of(&t.steps);
        let mut item: Option<PathItem> = None;
        for method in &t.methods {
            let op = call_operation(t, *method, &statuses, &schemas);
            let http = match method {
                Method::Get => HttpMethod::Get,
                Method::Post => HttpMethod::Post,
            };
            match &mut item {
                Some(item) => item.merge_operations(PathItem::new(http, op)),
                None => item = Some(PathItem::new(http, op)),
            }
        }
        if let Some(item) = item {
            paths.paths.insert(format!("/{tenant}/{name}"), item);
        }
        paths.paths.insert(
            format!("/{tenant}/{name}/messages/{{message_id}}"),
            PathItem::new(HttpMethod::Get, status_operation(t)),
        );
    }
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(format!("{tenant} — triggers for {label}"))
                .version("")
                .description(Some(about(tenant, label)))
                .build(),
        )
        .paths(paths)
        .components(Some(components()))
        .security(Some([
            SecurityRequirement::new(API_KEY, Vec::<String>::new()),
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
        ]))
        .build();
    let mut value = serde_json::to_value(&doc)?;
    if let Some(schemas) = value
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.extend(own);
    }
    // A digest of the rest: the version changes when what a caller sees does.
    let digest = Sha256::digest(serde_json::to_vec(&value)?);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    value["info"]["version"] = json!(hex);
    Ok(value)
}

fn about(tenant: &str, label: &str) -> String {
    format!(
        "The triggers of `{tenant}` that the key of consumer `{label}` may call. Send the key \
         as `X-Api-Key: <key>` (or `Authorization: Bearer <key>`). Query parameters are typed: \
         a wrong one is answered `400` before anything runs. A call that creates a message \
         answers with its id in `X-Message-Id`; a `202` gives the message's status URL in \
         `Location` (`/{tenant}/<trigger>/messages/<id>`, the same key). An `Idempotency-Key` \
         header repeated within the retention returns the first call's answer instead of \
         running again. Every error answer is `{{\"errors\": [{{\"code\", \"message\"}}]}}`; \
         each answer lists the codes it may carry."
    )
}

fn components() -> utoipa::openapi::Components {
    let key = ApiKeyValue::with_description(
        "X-Api-Key",
        "The consumer's key (`fg_<id>_<secret>`), as issued by the tenant's operators",
    );
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("The same key, as `Authorization: Bearer <key>`"))
        .build();
    ComponentsBuilder::new()
        .schema_from::<answers::Errors>()
        .schema_from::<answers::ErrorItem>()
        .schema_from::<answers::Accepted>()
        .schema_from::<answers::Succeeded>()
        .schema_from::<answers::MessageStatusDocument>()
        .schema_from::<answers::Attempt>()
        .schema_from::<answers::StoredAnswer>()
        .security_scheme(API_KEY, SecurityScheme::ApiKey(ApiKey::Header(key)))
        .security_scheme(BEARER, SecurityScheme::Http(bearer))
        .build()
}

/// The component names of a trigger's own schemas.
struct OwnSchemas {
    body: Option<String>,
    response: Option<String>,
}

fn call_operation(
    t: &Trigger,
    method: Method,
    statuses: &AnswerStatuses,
    own: &OwnSchemas,
) -> Operation {
    let name = t.key.trigger.as_str();
    let id = if t.methods.len() > 1 {
        format!("{name}_{}", method.as_str().to_ascii_lowercase())
    } else {
        name.to_owned()
    };
    let parameters: Vec<Parameter> = t
        .params
        .iter()
        .map(query_parameter)
        .chain([idempotency_key()])
        .collect();
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(name))
        .description(t.description.clone())
        .parameters(Some(parameters))
        .extensions(Some(
            utoipa::openapi::extensions::ExtensionsBuilder::new()
                .add("x-flowgate-mode", json!(mode(t)))
                .add("x-flowgate-ordered", json!(t.delivery.ordered))
                .build(),
        ));
    if method == Method::Post {
        op = op.request_body(Some(request_body(t, own.body.as_deref())));
    }
    if matches!(t.auth, Auth::None) {
        op = op.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    let mut answers = Answers::default();
    let sync = t.response.mode == Mode::Sync;
    if sync {
        for status in &statuses.respond {
            let body = match &own.response {
                Some(c) if (200..300).contains(status) => RefOr::Ref(Ref::from_schema_name(c)),
                _ => RefOr::T(any()),
            };
            let a = answers.at(*status);
            a.say("The flow's answer");
            a.bodies.push(body);
            a.xml |= statuses.respond_xml.contains(status);
            a.message_id = true;
        }
        if !statuses.always_responds {
            let a = answers.at(200);
            a.say("The flow ended without an answer of its own: it succeeded");
            a.bodies.push(RefOr::Ref(
                Ref::from_schema_name(answers::Succeeded::name()),
            ));
            a.message_id = true;
        }
    }
    let a = answers.at(202);
    a.say(&if sync {
        format!(
            "The flow did not answer within {} (or the `Idempotency-Key` repeats a call still running): it goes on; its status URL is in `Location`",
            humantime::format_duration(t.response.timeout)
        )
    } else {
        "Stored: the flow runs after this answer; its status URL is in `Location`".to_owned()
    });
    a.bodies
        .push(RefOr::Ref(Ref::from_schema_name(answers::Accepted::name())));
    a.message_id = true;
    a.location = true;
    for code in codes::call_codes(t, method, statuses) {
        answers.error(code);
    }
    op.responses(answers.build()).build()
}

fn status_operation(t: &Trigger) -> Operation {
    let name = t.key.trigger.as_str();
    let id = ParameterBuilder::new()
        .name("message_id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The id of a message of this trigger (`X-Message-Id`)"))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
            Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Uuid,
            )),
        )))
        .build();
    let mut answers = Answers::default();
    let a = answers.at(200);
    a.say("Where the message is, its attempts, and the flow's answer once there is one");
    a.bodies.push(RefOr::Ref(Ref::from_schema_name(
        answers::MessageStatusDocument::name(),
    )));
    a.message_id = true;
    for code in codes::status_url_codes(t) {
        answers.error(code);
    }
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!("{name}_status")))
        .summary(Some(format!("{name}: a message's status")))
        .parameter(id)
        .responses(answers.build());
    if matches!(t.auth, Auth::None) {
        op = op.securities(Some(Vec::<SecurityRequirement>::new()));
    }
    op.build()
}

fn mode(t: &Trigger) -> &'static str {
    match t.response.mode {
        Mode::Sync => "sync",
        Mode::Async => "async",
    }
}

/// Any JSON value.
fn any() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .build(),
    )
}

fn number(n: f64) -> utoipa::Number {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        utoipa::Number::Int(n as isize)
    } else {
        utoipa::Number::Float(n)
    }
}

fn query_parameter(p: &Param) -> Parameter {
    let ty = match p.ty {
        ParamType::String => Type::String,
        ParamType::Integer => Type::Integer,
        ParamType::Number => Type::Number,
        ParamType::Boolean => Type::Boolean,
    };
    let schema = ObjectBuilder::new()
        .schema_type(ty)
        .default(p.default.clone())
        .enum_values(p.allowed.clone())
        .minimum(p.min.map(number))
        .maximum(p.max.map(number));
    ParameterBuilder::new()
        .name(&p.name)
        .parameter_in(ParameterIn::Query)
        .required(if p.required {
            Required::True
        } else {
            Required::False
        })
        .description(p.description.clone())
        .schema(Some(schema))
        .build()
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .description(Some(
            "Repeated within the retention, returns the first call's answer and message id instead of running again",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255)),
        ))
        .build()
}

fn request_body(t: &Trigger, schema: Option<&str>) -> utoipa::openapi::request_body::RequestBody {
    let json = match schema {
        Some(name) => RefOr::Ref(Ref::from_schema_name(name)),
        None => RefOr::T(any()),
    };
    // An empty body is `null`: required when the schema refuses that.
    let required = t
        .body_schema
        .as_ref()
        .is_some_and(|s| !s.matches(&Value::Null));
    let text =
        || ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String)));
    RequestBodyBuilder::new()
        .description(Some(
            "Any content type. JSON is read as JSON; a form as an object of strings (a repeated \
             key: an array); XML as JSON (elements as keys, attributes as `@name`); `text/*` as a \
             string; anything else as `{\"base64\": ...}`. A body schema applies to the body as \
             read, whatever its type.",
        ))
        .required(Some(if required {
            Required::True
        } else {
            Required::False
        }))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(json)).build(),
        )
        .content(
            "application/x-www-form-urlencoded",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .content("application/xml", text().build())
        .content("text/plain", text().build())
        .build()
}
