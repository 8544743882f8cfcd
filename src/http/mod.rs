//! actix only: every route on one screen, the shared state, and nothing else.

mod callers;
mod error;
mod ops;
mod trigger;

use std::sync::Arc;

use actix_web::web;

use crate::auth::KeyVerifier;
use crate::config::Settings;
use crate::flow::SharedCatalog;
use crate::queue::Queue;

pub use callers::client_ip;
pub use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub catalog: SharedCatalog,
    pub queue: Queue,
    pub keys: Arc<KeyVerifier>,
    pub reload_errors: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/_health", web::get().to(ops::health))
        .route("/_ready", web::get().to(ops::ready))
        .route("/_metrics", web::get().to(ops::metrics))
        .route(
            "/{tenant}/{trigger}/messages/{id}",
            web::get().to(trigger::message_status),
        )
        .route("/{tenant}/{trigger}", web::route().to(trigger::call))
        .default_service(web::to(ops::not_found));
}
