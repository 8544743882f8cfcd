//! `/_admin`: the operators' API (`/_admin/api`, admin tokens) and the web UI
//! served from the binary. A tenant-scoped token is answered 404 for anything of
//! a tenant it cannot see, exactly as if it did not exist.

mod answers;
mod deliveries;
mod extract;
mod keys;
mod me;
mod messages;
mod openapi;
mod subscriptions;
mod triggers;
mod ui;

use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::auth::admin::AdminIdentity;
use crate::codec::input::InputError;
use crate::domain::{MessageId, Micros};

use super::{ApiError, AppState};

/// Answers are typed: `Json<T>` serializes `T`, whose schema is in the document.
use actix_web::web::Json;

/// Every admin API endpoint, once. Each handler's `#[get]`/`#[post]` and
/// `#[utoipa::path]` give its method, path and answers; the route table and
/// the OpenAPI document are both made from this list, so neither can have an
/// endpoint the other lacks.
macro_rules! endpoints {
    ($($module:ident :: $handler:ident),* $(,)?) => {
        /// The documented paths and the types of their answers.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($module::$handler),*))]
        struct Endpoints;

        /// The route table of `/_admin/api`.
        fn api(scope: actix_web::Scope) -> actix_web::Scope {
            scope$(.service($module::$handler))*
        }
    };
}

endpoints!(
    me::me,
    triggers::list,
    triggers::tenants,
    triggers::lanes,
    messages::list,
    messages::detail,
    messages::replay,
    messages::skip,
    messages::unblock,
    messages::bulk_replay,
    deliveries::list,
    deliveries::detail,
    deliveries::redeliver,
    subscriptions::list,
    subscriptions::create,
    subscriptions::detail,
    subscriptions::update,
    subscriptions::remove,
    subscriptions::rotate_secret,
    subscriptions::send_test,
    keys::list,
);

pub fn routes(cfg: &mut web::ServiceConfig) {
    let api = web::scope("/api")
        .route("/openapi.json", web::get().to(ui::openapi))
        .default_service(web::to(not_found));
    cfg.service(
        web::scope("/_admin")
            .route("", web::get().to(ui::index))
            .route("/", web::get().to(ui::index))
            .route("/app.js", web::get().to(ui::script))
            .route("/app.css", web::get().to(ui::style))
            .service(self::api(api))
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such admin resource".into()))
}

/// The admin token's identity, or 401 (handlers take it as `extract::Admin`).
async fn authorize(req: &HttpRequest, state: &AppState) -> Result<Arc<AdminIdentity>, ApiError> {
    if state.admin.is_empty() {
        return Err(ApiError::Unauthorized(
            "no admin tokens are configured (admin_tokens in flowgate.toml)".into(),
        ));
    }
    let token = super::callers::presented(req, "x-admin-token").ok_or_else(|| {
        ApiError::Unauthorized("missing admin token: send Authorization: Bearer <token>".into())
    })?;
    let client =
        crate::auth::gate::Client::new(super::client_ip(req, &state.settings.trusted_proxies));
    state
        .admin
        .identify(token, client)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid admin token".into()))
}

fn parse_id(s: &str, what: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} `{s}`")))
}

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest(vec![InputError::new(code, message)])
}

/// A list's `cursor` parameter: the id of the last row of the previous page.
fn parse_cursor<T: std::str::FromStr>(
    cursor: Option<&str>,
    what: &str,
) -> Result<Option<T>, ApiError> {
    cursor
        .map(|c| {
            c.parse()
                .map_err(|_| bad("invalid_parameter", format!("`cursor`: not a {what} id")))
        })
        .transpose()
}

/// The `next_cursor` of a page: the id of its last row when the page is full.
fn next_cursor<R>(rows: &[R], limit: usize, id: impl Fn(&R) -> String) -> Option<String> {
    if rows.len() == limit {
        rows.last().map(id)
    } else {
        None
    }
}

/// `2026-11-22T10:15:30Z` (or with fractions) -> microseconds.
fn parse_time(name: &str, s: &str) -> Result<Micros, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            bad(
                "invalid_parameter",
                format!("`{name}`: not an RFC 3339 time ({e})"),
            )
        })?;
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}
