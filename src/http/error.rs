//! Every error a caller can see, and the one place that picks status codes.
//! Bodies are `{"errors": [{"code", "message"}]}`; 500s carry no internals.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::auth::limits::Refusal;
use crate::codec::input::InputError;
use crate::domain::MessageId;
use crate::engine::FailedAnswer;
pub use crate::engine::{errors_body, input_errors_body};

/// The credential a 401 asks for (RFC 9110 requires a `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic: browsers and most clients then send the user and password.
    Basic,
    /// A signature over the body in the named header; no registered scheme
    /// exists, so the answer names it for people reading it.
    Signature(String),
}

impl Challenge {
    fn header(&self) -> String {
        match self {
            Self::Basic => "Basic realm=\"flowgate\", charset=\"UTF-8\"".to_owned(),
            Self::Signature(name) => format!("Signature realm=\"flowgate\", header=\"{name}\""),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    /// No or wrong credentials where an API key (or admin token) is expected.
    #[error("unauthorized")]
    Unauthorized(String),
    /// An API key whose id is declared but expired (`key_expired`).
    #[error("key expired")]
    KeyExpired(String),
    /// No or wrong credentials where the trigger expects another kind: the
    /// `WWW-Authenticate` challenge names the one that would be accepted.
    #[error("unauthorized")]
    Challenge { scheme: Challenge, why: String },
    /// The caller's address is not allowed (`allow_ips`).
    #[error("forbidden")]
    Forbidden(String),
    /// An admin token of role `read` asked to change something (`read_only_token`).
    #[error("read-only token")]
    ReadOnlyToken { label: String },
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// The body did not arrive within `body_timeout` (the connection is closed).
    #[error("request timeout")]
    BodyTimeout,
    #[error("bad request")]
    BadRequest(Vec<InputError>),
    #[error("backlog full")]
    BacklogFull,
    /// The caller's address spent its budget of failed verifications.
    #[error("too many failed verifications")]
    Throttled { retry_after: u64 },
    /// Too many verifications are waiting already.
    #[error("verifications busy")]
    AuthBusy,
    /// The consumer's rate or daily quota is spent (`rate_limited`,
    /// `quota_exceeded`).
    #[error("limited")]
    Limited(
        crate::auth::limits::Refusal,
        /// Who was refused (`.auth` of the input it would have had), for the
        /// request's metrics and log line.
        Box<serde_json::Value>,
    ),
    /// The store failed: away or busy (503 + `Retry-After`), or it refused a
    /// statement, which is a bug (500). The whole chain is logged. A node
    /// stopping an execution as it shuts down answers as an unavailable store.
    #[error("store failed")]
    Store(#[source] crate::store::StoreError),
    /// The flow failed: its answer (a `fail` step's status and message, or the
    /// step or budget it failed at).
    #[error("flow failed")]
    Failed(FailedAnswer),
    /// The request is valid but the resource is not in a state for it.
    #[error("conflict")]
    Conflict(String),
    /// A conflict with a code of its own (`subscription_in_file`, ...).
    #[error("conflict: {code}")]
    ConflictCode { code: &'static str, why: String },
    /// A sync call whose message would wait behind the failed message `by`
    /// holding its ordered lane: answered at once, nothing stored.
    #[error("lane blocked")]
    LaneBlocked { lane: String, by: MessageId },
    /// A message's stored documents cannot be read back (told to admins only:
    /// callers get `Internal`). `replay`: it was asked to run again (409), else
    /// to be shown (500).
    #[error("unreadable message")]
    Unreadable { why: String, replay: bool },
    #[error("internal error")]
    Internal(String),
}

fn body(code: &str, message: impl Into<String>) -> serde_json::Value {
    errors_body(code, &message.into())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) | Self::KeyExpired(_) | Self::Challenge { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden(_) | Self::ReadOnlyToken { .. } => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BacklogFull | Self::Throttled { .. } | Self::Limited(..) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::AuthBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict(_)
            | Self::ConflictCode { .. }
            | Self::LaneBlocked { .. }
            | Self::Unreadable { replay: true, .. } => StatusCode::CONFLICT,
            Self::Unreadable { replay: false, .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Failed(a) => {
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        let payload = match self {
            Self::NotFound(what) => body("not_found", what.clone()),
            Self::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    res.insert_header((header::ALLOW, v));
                }
                body(
                    "method_not_allowed",
                    format!("this trigger accepts {allow}"),
                )
            }
            Self::Unauthorized(why) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"flowgate\""));
                body("unauthorized", why.clone())
            }
            Self::KeyExpired(id) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"flowgate\""));
                body(
                    "key_expired",
                    format!("API key `{id}` expired: ask for a new key"),
                )
            }
            Self::Challenge { scheme, why } => {
                if let Ok(v) = HeaderValue::from_str(&scheme.header()) {
                    res.insert_header((header::WWW_AUTHENTICATE, v));
                }
                body("unauthorized", why.clone())
            }
            Self::Forbidden(why) => body("forbidden", why.clone()),
            Self::ReadOnlyToken { label } => body(
                "read_only_token",
                format!(
                    "admin token `{label}` has role `read`: it may look, but not replay, skip, unblock, redeliver or change subscriptions (that takes a token of role `operate`)"
                ),
            ),
            Self::PayloadTooLarge(limit) => body(
                "payload_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
            ),
            Self::BodyTimeout => {
                // The rest of the body may still be on its way: nothing more is
                // read from this connection.
                res.force_close();
                body(
                    "body_timeout",
                    "the request body did not arrive within the time allowed (body_timeout)",
                )
            }
            Self::BadRequest(errors) => input_errors_body(errors),
            Self::BacklogFull => {
                res.insert_header((header::RETRY_AFTER, "1"));
                body("backlog_full", "this trigger's queue is full; retry later")
            }
            Self::Throttled { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                body(
                    "too_many_failures",
                    "too many failed credentials from this address; retry later",
                )
            }
            Self::Limited(Refusal::Rate { retry_after }, _) => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                body(
                    "rate_limited",
                    format!("this API key's consumer is over its rate; retry in {retry_after} s"),
                )
            }
            Self::Limited(Refusal::Quota { retry_after }, _) => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                body(
                    "quota_exceeded",
                    "this API key's consumer has used its daily quota; it starts again at 00:00 UTC",
                )
            }
            Self::AuthBusy => {
                res.insert_header((header::RETRY_AFTER, "1"));
                body(
                    "auth_busy",
                    "too many credentials are waiting to be verified; retry later",
                )
            }
            Self::Store(e) if e.is_unavailable() => {
                tracing::error!(error = %crate::domain::chain::describe(e), "store unavailable");
                res.insert_header((header::RETRY_AFTER, "5"));
                body(
                    "store_unavailable",
                    "messages cannot be stored right now; retry later",
                )
            }
            Self::Store(e) => {
                tracing::error!(error = %crate::domain::chain::describe(e), "internal error");
                body("internal", "internal error")
            }
            Self::Failed(a) => {
                res.insert_header((super::X_MESSAGE_ID, a.id.to_string()));
                a.body()
            }
            Self::Conflict(why) => body("conflict", why.clone()),
            Self::ConflictCode { code, why } => body(code, why.clone()),
            Self::LaneBlocked { lane, by } => {
                let mut b = body(
                    "lane_blocked",
                    format!(
                        "ordered lane `{lane}` is blocked by failed message {by} until an operator skips, replays or unblocks it; nothing was stored"
                    ),
                );
                b["errors"][0]["blocked_by"] = serde_json::json!(by.to_string());
                b
            }
            Self::Unreadable { why, replay } => {
                tracing::error!(error = %why, "a stored message cannot be read back");
                if *replay {
                    body("unreadable", format!("cannot replay: {why}"))
                } else {
                    body("unreadable", why.clone())
                }
            }
            Self::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                body("internal", "internal error")
            }
        };
        res.json(payload)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        // An outage is retried (503 + Retry-After); anything else, a statement
        // the database refused included, is a bug: 500, its whole chain logged.
        Self::Store(e)
    }
}

impl From<crate::auth::gate::Refused> for ApiError {
    fn from(e: crate::auth::gate::Refused) -> Self {
        match e {
            crate::auth::gate::Refused::Throttled { retry_after } => {
                Self::Throttled { retry_after }
            }
            crate::auth::gate::Refused::Busy => Self::AuthBusy,
        }
    }
}

impl From<crate::queue::AcceptError> for ApiError {
    fn from(e: crate::queue::AcceptError) -> Self {
        match e {
            crate::queue::AcceptError::BacklogFull => Self::BacklogFull,
            crate::queue::AcceptError::Store(s) => s.into(),
        }
    }
}
