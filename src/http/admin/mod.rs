//! `/_admin`: the operators' API (`/_admin/api`, admin tokens) and the web UI
//! served from the binary. A tenant-scoped token is answered 404 for anything of
//! a tenant it cannot see, exactly as if it did not exist.

mod deliveries;
mod json;
mod messages;
mod triggers;
mod ui;

use std::sync::Arc;

use actix_web::{HttpRequest, web};

use crate::auth::admin::AdminIdentity;
use crate::domain::MessageId;

use super::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_admin")
            .route("", web::get().to(ui::index))
            .route("/", web::get().to(ui::index))
            .route("/app.js", web::get().to(ui::script))
            .route("/app.css", web::get().to(ui::style))
            .route("/api/openapi.json", web::get().to(ui::openapi))
            .route("/api/triggers", web::get().to(triggers::list))
            .route("/api/tenants", web::get().to(triggers::tenants))
            .route("/api/lanes", web::get().to(triggers::lanes))
            .route("/api/messages", web::get().to(messages::list))
            .route("/api/messages/{id}", web::get().to(messages::detail))
            .route(
                "/api/messages/{id}/replay",
                web::post().to(messages::replay),
            )
            .route("/api/messages/{id}/skip", web::post().to(messages::skip))
            .route(
                "/api/messages/{id}/unblock",
                web::post().to(messages::unblock),
            )
            .route("/api/replay", web::post().to(messages::bulk_replay))
            .route("/api/deliveries", web::get().to(deliveries::list))
            .route("/api/deliveries/{id}", web::get().to(deliveries::detail))
            .route(
                "/api/deliveries/{id}/redeliver",
                web::post().to(deliveries::redeliver),
            )
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such admin resource".into()))
}

fn presented(req: &HttpRequest) -> Option<&str> {
    if let Some(t) = req
        .headers()
        .get("x-admin-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.trim()).filter(|t| !t.is_empty());
    }
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The admin token's identity, or 401.
pub async fn authorize(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Arc<AdminIdentity>, ApiError> {
    if state.admin.is_empty() {
        return Err(ApiError::Unauthorized(
            "no admin tokens are configured (admin_tokens in flowgate.toml)".into(),
        ));
    }
    let token = presented(req).ok_or_else(|| {
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

/// 404 for a tenant the identity cannot see (or that does not exist).
fn visible(who: &AdminIdentity, tenant: &str) -> Result<(), ApiError> {
    if who.sees(tenant) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no tenant `{tenant}`")))
    }
}

fn parse_id(s: &str, what: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::NotFound(format!("no {what} `{s}`")))
}
