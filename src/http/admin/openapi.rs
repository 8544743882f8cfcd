//! The admin API's OpenAPI document, made from the endpoint list (`endpoints!`
//! in `mod.rs`) and the answers' types, never written by hand. Served as
//! `/_admin/api/openapi.json`; a test checks real answers of every endpoint
//! against it.

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, ContentBuilder, Ref, RefOr, ResponseBuilder};

use super::answers::Errors;

/// What the document says of itself and of the token every request needs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "flowgate admin API",
        version = "1",
        description = "The operators' view of flowgate: triggers, the log history, replays, ordered lanes and event deliveries. Every request needs an admin token (`Authorization: Bearer <token>`). A tenant-scoped token gets 404 for anything of another tenant."
    ),
    servers((url = "/_admin/api")),
    security(("adminToken" = [])),
    components(schemas(Errors))
)]
struct About;

/// The answers every endpoint may give, whatever it does: the token's
/// (401, 429 and 503 while verifications queue), a tenant the token cannot
/// see (404), and the store's (500, 503).
const EVERY_ENDPOINT: [(&str, &str, &str); 5] = [
    ("401", "Unauthorized", "Missing or invalid admin token"),
    (
        "404",
        "NotFound",
        "No such resource, or not visible to this token",
    ),
    (
        "429",
        "TooManyRequests",
        "Too many failed tokens from this address, or the trigger's backlog is full",
    ),
    ("500", "Internal", "An internal error (logged, not told)"),
    (
        "503",
        "Unavailable",
        "The store is unavailable, or too many tokens wait to be verified",
    ),
];

/// What every endpoint that changes something (any method but GET) answers a
/// token of role `read`, before it looks at anything else (`extract::Operator`).
const READ_ONLY: (&str, &str) = ("403", "The token has role `read` (`read_only_token`)");

/// An answer with the `Errors` body.
fn errors_answer(description: &str) -> openapi::Response {
    let errors = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Errors")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", errors)
        .build()
}

/// `{id}` in an admin path is always a message's or a delivery's id.
fn id_parameter() -> Parameter {
    let uuid = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .description(Some("A message id, or a delivery id under /deliveries"))
        .schema(Some(uuid))
        .build()
}

/// The whole document.
pub fn document() -> openapi::OpenApi {
    let mut doc = About::openapi();
    doc.merge(super::Endpoints::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "adminToken",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An admin token from admin_tokens in flowgate.toml"))
                .build(),
        ),
    );
    for (_, name, description) in EVERY_ENDPOINT {
        components
            .responses
            .insert(name.to_owned(), RefOr::T(errors_answer(description)));
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (op, changes) in operations {
            let Some(op) = op else { continue };
            let params = op.parameters.get_or_insert_with(Vec::new);
            let declared = params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.name == "id"));
            if path.contains("{id}") && !declared {
                params.push(RefOr::T(id_parameter()));
            }
            for (status, name, _) in EVERY_ENDPOINT {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
            if changes {
                let (status, description) = READ_ONLY;
                op.responses
                    .responses
                    .insert(status.to_owned(), RefOr::T(errors_answer(description)));
            }
        }
    }
    doc
}

/// The document as served, made once.
pub static JSON: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});
