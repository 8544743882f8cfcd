//! actix only: every route on one screen, the shared state, and nothing else.

mod admin;
pub mod body;
mod callers;
mod consumer_doc;
mod error;
mod ops;
pub mod tls;
mod trigger;

use std::sync::Arc;

use actix_web::web;

use crate::auth::admin::AdminTokens;
use crate::auth::key_cache::KeyVerifier;
use crate::config::Settings;
use crate::flow::{Diagnostic, SharedCatalog};
use crate::queue::Queue;

/// `X-Message-Id`, on every answer about a message; its name parsed once.
const X_MESSAGE_ID: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-message-id");

pub use callers::client_ip;
pub use error::{ApiError, errors_body, input_errors_body};

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub catalog: SharedCatalog,
    pub queue: Queue,
    /// Sends event deliveries (`POST /subscriptions/{id}/test` sends at once).
    pub hooks: crate::events::sender::Sender,
    pub keys: Arc<KeyVerifier>,
    /// Consumers' counts and limits.
    pub usage: Arc<crate::auth::usage::Usage>,
    pub reload_errors: Arc<std::sync::atomic::AtomicUsize>,
    pub admin: Arc<AdminTokens>,
    /// The problems of the last load of the flow files.
    pub problems: Arc<std::sync::RwLock<Vec<Diagnostic>>>,
    /// Consumer documents built for the catalog in use.
    pub consumer_docs: consumer_doc::DocCache,
}

/// JSON bodies read by extractors (the admin API) fail as the trigger routes'
/// do: 408 past `body_timeout`, 413 past the limit, 400 with the JSON error body.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().error_handler(|e, _| {
        use actix_web::error::JsonPayloadError;
        let api = match &e {
            JsonPayloadError::Payload(p) if body::is_late(p) => ApiError::BodyTimeout,
            JsonPayloadError::Overflow { limit }
            | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                ApiError::PayloadTooLarge(*limit)
            }
            other => ApiError::BadRequest(vec![crate::codec::input::InputError::new(
                "invalid_body",
                other.to_string(),
            )]),
        };
        api.into()
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(admin::routes)
        .route("/_health", web::get().to(ops::health))
        .route("/_ready", web::get().to(ops::ready))
        .route("/_metrics", web::get().to(ops::metrics))
        .default_service(web::to(trigger::dispatch));
}
