//! Each consumer's own description of the triggers its key may call:
//! `GET /<tenant>/_openapi.json` (an OpenAPI 3.1 document, `document.rs`) and
//! `GET /<tenant>/_docs`, a page for people that asks for the key and renders
//! that document (`static/`, compiled into the binary like the admin UI).
//!
//! The document needs a key of the tenant, checked as a trigger call checks
//! it (the same verdicts and answers, through the same verification cache and
//! failure budget); it lists the enabled triggers that list the key's label,
//! and the open ones. An unknown tenant is the `404` a trigger call of it gets.
//! The page itself holds nothing of the tenant: a browser cannot send a header
//! when it opens a URL, so the page loads without a key, asks for it (or reads
//! it from the URL's `#key=` fragment, which is never sent to the server) and
//! fetches the document with `X-Api-Key`.
//!
//! A document is built once per consumer and catalog (`cache.rs`).

mod answers;
mod cache;
mod codes;
mod document;
mod embed;
mod responses;

use actix_web::http::Method as HttpMethod;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use crate::auth::gate::Client;
use crate::auth::key_cache::Verdict;
use crate::flow::{Tenant, Trigger};

pub use cache::DocCache;

use super::{ApiError, AppState};

const PAGE: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/docs.js");
const STYLE: &str = include_str!("static/docs.css");

/// The page may only load its own script and style, and fetch from its origin.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `/<tenant>/<own>[/<file>]`, `own` being a name of flowgate's (`_...`),
/// which no trigger can have.
pub async fn serve(
    req: &HttpRequest,
    state: &AppState,
    tenant: &str,
    own: &str,
    file: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let catalog = state.catalog.get();
    let entry = catalog
        .tenant(tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant `{tenant}`")))?;
    let asset = match (own, file) {
        ("_openapi.json", None) => None,
        ("_docs", None) => Some(("text/html; charset=utf-8", PAGE)),
        ("_docs", Some("docs.js")) => Some(("text/javascript; charset=utf-8", SCRIPT)),
        ("_docs", Some("docs.css")) => Some(("text/css; charset=utf-8", STYLE)),
        _ => {
            let path = file.map_or_else(|| own.to_owned(), |f| format!("{own}/{f}"));
            return Err(ApiError::NotFound(format!("no trigger `{tenant}/{path}`")));
        }
    };
    if req.method() != HttpMethod::GET {
        return Err(ApiError::MethodNotAllowed {
            allow: "GET".into(),
        });
    }
    if let Some((content_type, body)) = asset {
        return Ok(static_file(content_type, body));
    }
    let label = consumer(req, state, &entry.tenant).await?;
    let build = || {
        let triggers: Vec<&Trigger> = entry
            .triggers
            .values()
            .map(AsRef::as_ref)
            .filter(|t| document::may_call(t, &label))
            .collect();
        document::document(tenant, &label, triggers).and_then(|d| serde_json::to_vec_pretty(&d))
    };
    let doc = state
        .consumer_docs
        .get_or_build(&catalog, tenant, &label, build)
        .map_err(|e| ApiError::Internal(format!("the consumer document: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        // Each key sees its own document: no shared cache may keep it.
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .insert_header((header::VARY, "x-api-key, authorization"))
        .body(doc))
}

/// The label of the key the request presents, or the answer a trigger call
/// with that key would get.
async fn consumer(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
) -> Result<String, ApiError> {
    let key = super::callers::presented(req, "x-api-key").ok_or_else(|| {
        ApiError::Unauthorized(
            "missing API key: send it in the X-Api-Key header or as Authorization: Bearer <key>"
                .into(),
        )
    })?;
    let client = Client::new(super::client_ip(req, &state.settings.trusted_proxies));
    match state.keys.identify(tenant, key, client).await? {
        Verdict::Known { label, .. } => Ok(label),
        Verdict::Expired { id, .. } => Err(ApiError::KeyExpired(id)),
        Verdict::Unknown => Err(ApiError::Unauthorized("invalid API key".into())),
    }
}

fn static_file(content_type: &str, body: &'static str) -> HttpResponse {
    let mut res = HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .body(body);
    if content_type.starts_with("text/html") {
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    res
}
