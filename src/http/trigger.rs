//! `GET|POST /<tenant>/<trigger>` and its status URL.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::auth::limits::RateLimitHeaders;
use crate::auth::signature::Signed;
use crate::codec::input::{self, InputError};
use crate::domain::{
    Consumer, MessageId, MessageStatus, MessageView, Mode, NewMessage, StoredResponse, now_micros,
};
use crate::engine::{EvalError, ExecError, FailedAnswer};
use crate::flow::{Method, OnTimeout, Tenant, Trigger};
use crate::ops::metrics::{ConsumerSlot, TriggerMetrics};
use crate::queue::{SyncResult, WaitOutcome};
use crate::store::{EnqueueOutcome, StoreError};

use super::{ApiError, AppState, X_MESSAGE_ID, callers};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 255;

fn find(
    state: &AppState,
    tenant: &str,
    trigger: &str,
) -> Result<(Arc<Tenant>, Arc<Trigger>), ApiError> {
    let catalog = state.catalog.get();
    let entry = catalog
        .tenant(tenant)
        .ok_or_else(|| ApiError::NotFound(format!("no tenant `{tenant}`")))?;
    let t = entry
        .triggers
        .get(trigger)
        .filter(|t| t.enabled)
        .ok_or_else(|| ApiError::NotFound(format!("no trigger `{tenant}/{trigger}`")))?;
    Ok((entry.tenant.clone(), t.clone()))
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if super::body::is_late(&e) {
                return ApiError::BodyTimeout;
            }
            ApiError::BadRequest(vec![InputError::new(
                "invalid_body",
                format!("the body could not be read: {e}"),
            )])
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn location(trigger: &Trigger, id: MessageId) -> String {
    format!(
        "/{}/{}/messages/{id}",
        trigger.key.tenant, trigger.key.trigger
    )
}

fn accepted(trigger: &Trigger, id: MessageId, status: MessageStatus) -> HttpResponse {
    // Every async call answers this, so it is written without a `Value` in between:
    // the id and the status need no escaping.
    let body = format!(r#"{{"message_id":"{id}","status":"{}"}}"#, status.as_str());
    HttpResponse::Accepted()
        .insert_header((X_MESSAGE_ID, id.to_string()))
        .insert_header((header::LOCATION, location(trigger, id)))
        .content_type(ContentType::json())
        .body(body)
}

/// A flow's `respond` as an HTTP answer. Strings are sent as they are when the
/// flow set a content type; everything else as JSON.
fn responded(id: MessageId, r: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header((X_MESSAGE_ID, id.to_string()));
    let mut has_type = false;
    for (name, value) in &r.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "x-message-id"
        ) {
            continue;
        }
        has_type |= name == "content-type";
        res.append_header((name.as_str(), value.as_str()));
    }
    match r.body {
        Value::Null => res.finish(),
        Value::String(s) if has_type => res.body(s),
        other => {
            if !has_type {
                res.content_type("application/json");
            }
            res.body(serde_json::to_vec(&other).unwrap_or_default())
        }
    }
}

fn succeeded(id: MessageId) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((X_MESSAGE_ID, id.to_string()))
        .json(json!({"message_id": id.to_string(), "status": "succeeded"}))
}

fn failed(id: MessageId, e: ExecError) -> ApiError {
    match FailedAnswer::of(id, &e) {
        Some(answer) => ApiError::Failed(answer),
        // The node stopped the execution (it is shutting down): another try may work.
        None => ApiError::Store(crate::store::StoreError::Unavailable(
            format!("the execution of message {id} was stopped: {e}").into(),
        )),
    }
}

/// The answer to a repeated Idempotency-Key: the first message's.
fn repeat(trigger: &Trigger, view: MessageView) -> Result<HttpResponse, ApiError> {
    let id = view.head.id;
    if trigger.response.mode == Mode::Async || !view.head.status.is_final() {
        return Ok(accepted(trigger, id, view.head.status));
    }
    match (view.response, view.head.status) {
        (Some(r), _) => Ok(responded(id, r)),
        (None, MessageStatus::Succeeded) => Ok(succeeded(id)),
        (None, _) => {
            // The failure as recorded; the step it failed at is the trace's last.
            let last = view.attempts.last();
            let e = match ExecError::recorded(
                last.and_then(|a| a.error_code.as_deref()),
                last.and_then(|a| a.error.clone()).unwrap_or_default(),
                None,
            ) {
                ExecError::Step { message, .. } => ExecError::Step {
                    step: view
                        .trace
                        .as_array()
                        .and_then(|t| t.last())
                        .and_then(|s| s["name"].as_str().or(s["step"].as_str()))
                        .unwrap_or("-")
                        .to_owned(),
                    message,
                },
                other => other,
            };
            Err(failed(id, e))
        }
    }
}

/// The lane of an ordered trigger (see `Executor::lane`); a key that cannot be
/// computed from the request, or that names no lane, is the caller's problem.
async fn lane(
    state: &AppState,
    trigger: &Trigger,
    input: &Value,
) -> Result<Option<String>, ApiError> {
    let executor = state.queue.dispatcher().executor();
    executor.lane(trigger, input).await.map_err(|e| {
        let error = match e {
            EvalError::NotAKey(_) => InputError::new("invalid_ordering_key", e.to_string()),
            e => InputError::new(
                "invalid_body",
                format!("the ordering key cannot be computed from this request: {e}"),
            ),
        };
        ApiError::BadRequest(vec![error])
    })
}

/// Every path that is not one of flowgate's own: `/<tenant>/<trigger>` and its
/// status URL, and a tenant's consumer document and page, split by hand (a
/// pattern route costs a regex match per request).
/// Trigger calls are counted by answer status for `/_metrics`; only loaded
/// triggers get counters (names from a URL must not create series).
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut parts = req.path().strip_prefix('/').unwrap_or("").split('/');
    let segments = (
        parts.next().filter(|s| !s.is_empty()),
        parts.next().filter(|s| !s.is_empty()),
        parts.next(),
        parts.next().filter(|s| !s.is_empty()),
        parts.next(),
    );
    match segments {
        // `/<tenant>/_openapi.json`, `/<tenant>/_docs`: no trigger name starts with `_`.
        (Some(tenant), Some(own), file, None, None) if own.starts_with('_') => {
            super::consumer_doc::serve(&req, &state, tenant, own, file).await
        }
        (Some(tenant), Some(trigger), None, None, None) => {
            let metrics = state.queue.dispatcher().metrics();
            let counters = metrics.find(tenant, trigger).or_else(|| {
                state
                    .catalog
                    .get()
                    .trigger(tenant, trigger)
                    .map(|_| metrics.trigger(tenant, trigger))
            });
            let names = (tenant.to_owned(), trigger.to_owned());
            let mut caller = Caller {
                counters: counters.as_deref(),
                ..Caller::default()
            };
            let out = call(&req, names, payload, &state, &mut caller).await;
            let status = match &out {
                Ok(r) => r.status(),
                Err(e) => actix_web::ResponseError::status_code(e),
            };
            if let Some(c) = caller.counters {
                c.request(caller.slot, status.as_u16());
            }
            tracing::debug!(
                tenant,
                trigger,
                consumer = caller.label.as_deref(),
                key_id = caller.key_id.as_deref(),
                status = status.as_u16(),
                "trigger call answered"
            );
            with_limits(out, caller.limits)
        }
        (Some(tenant), Some(trigger), Some("messages"), Some(id), None) => {
            if req.method() != actix_web::http::Method::GET {
                return Err(ApiError::MethodNotAllowed {
                    allow: "GET".into(),
                });
            }
            let names = (tenant.to_owned(), trigger.to_owned(), id.to_owned());
            let mut limits = None;
            let out = message_status(&req, names, &state, &mut limits).await;
            with_limits(out, limits)
        }
        _ => Err(ApiError::NotFound("no such tenant or trigger".into())),
    }
}

/// Who made a call, once its credentials are checked: the consumer's row of
/// the trigger's request counters (found without allocating), and for the
/// request's log line, only when debug lines are written, its label and key id.
#[derive(Default)]
struct Caller<'m> {
    counters: Option<&'m TriggerMetrics>,
    slot: ConsumerSlot,
    label: Option<String>,
    key_id: Option<String>,
    /// The `RateLimit-*` headers of a consumer with limits.
    limits: Option<RateLimitHeaders>,
}

impl Caller<'_> {
    fn identified(&mut self, auth: &Value) {
        let who = Consumer::of_auth(auth);
        if let Some(c) = self.counters {
            self.slot = c.consumer(who.label);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            self.label = who.label.map(str::to_owned);
            self.key_id = who.key_id.map(str::to_owned);
        }
    }
}

const RATELIMIT_LIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: header::HeaderName =
    header::HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: header::HeaderName = header::HeaderName::from_static("ratelimit-reset");

/// The answer to a consumer with limits, whatever it is, with the
/// `RateLimit-*` headers; any other answer as it is.
fn with_limits(
    out: Result<HttpResponse, ApiError>,
    limits: Option<RateLimitHeaders>,
) -> Result<HttpResponse, ApiError> {
    let Some(h) = limits else { return out };
    let mut res = out.unwrap_or_else(HttpResponse::from_error);
    let headers = res.headers_mut();
    headers.insert(RATELIMIT_LIMIT, h.limit.into());
    headers.insert(RATELIMIT_REMAINING, h.remaining.into());
    headers.insert(RATELIMIT_RESET, h.reset.into());
    Ok(res)
}

async fn call(
    req: &HttpRequest,
    (tenant_name, trigger_name): (String, String),
    payload: web::Payload,
    state: &AppState,
    caller: &mut Caller<'_>,
) -> Result<HttpResponse, ApiError> {
    let received_at = now_micros();
    let (tenant, trigger) = find(state, &tenant_name, &trigger_name)?;
    let method = match req.method().as_str() {
        "GET" => Some(Method::Get),
        "POST" => Some(Method::Post),
        _ => None,
    };
    let method =
        method
            .filter(|m| trigger.allows(*m))
            .ok_or_else(|| ApiError::MethodNotAllowed {
                allow: trigger.allow_header(),
            })?;
    let admitted = match callers::admit(req, state, &tenant, &trigger, &mut caller.limits).await {
        // Refused by its limits: counted under its consumer all the same.
        Err(ApiError::Limited(why, auth)) => {
            caller.identified(&auth);
            return Err(ApiError::Limited(why, auth));
        }
        other => other?,
    };
    let body = read_body(req, payload, state.settings.body_limit).await?;
    let auth = callers::verify_signed(req, admitted, Signed::Body(&body))?;
    caller.identified(&auth);
    let idempotency_key = match req.headers().get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => {
            Some(k.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::BadRequest(vec![InputError::new(
                "invalid_header",
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ),
            )]));
        }
    };
    let id = MessageId::new();
    let headers = crate::domain::header_pairs(req.headers());
    let input::Document {
        input: document,
        json_body,
    } = input::document(
        &trigger,
        input::Request {
            id,
            received_at,
            method,
            query: req.query_string(),
            headers,
            content_type: req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            body: &body,
            auth,
            max_depth: state.settings.max_input_depth,
        },
    )
    .map_err(ApiError::BadRequest)?;
    let lane = lane(state, &trigger, &document).await?;
    let message = NewMessage {
        id,
        tenant: trigger.key.tenant.clone(),
        trigger: trigger.key.trigger.clone(),
        lane,
        mode: trigger.response.mode,
        received_at,
        idempotency_key,
        input: document,
        body_json: json_body.then(|| body.freeze()),
    };

    if trigger.response.mode == Mode::Async {
        let (id, outcome, _) = state.queue.accept(message, false).await?;
        return match outcome {
            EnqueueOutcome::Inserted => Ok(accepted(&trigger, id, MessageStatus::Queued)),
            EnqueueOutcome::Duplicate(view) => repeat(&trigger, *view),
        };
    }
    if !trigger.delivery.ordered && message.idempotency_key.is_none() {
        return match state.queue.execute_sync(trigger.clone(), message).await? {
            SyncResult::Responded(r)
            | SyncResult::Finished {
                response: Some(r), ..
            } => Ok(responded(id, r)),
            SyncResult::Finished {
                result: Ok(()),
                response: None,
            } => Ok(succeeded(id)),
            SyncResult::Finished {
                result: Err(e),
                response: None,
            } => Err(failed(id, e)),
            SyncResult::TimedOut => Ok(accepted(&trigger, id, MessageStatus::Running)),
        };
    }
    // Sync through the queue: ordered lanes, or an Idempotency-Key to honour.
    // Behind a blocked lane the caller would only wait for its timeout.
    if let Some(lane) = &message.lane
        && let Some(by) = state.queue.lane_blocked_by(&trigger.key, lane).await?
    {
        return Err(ApiError::LaneBlocked {
            lane: lane.clone(),
            by,
        });
    }
    let (id, outcome, waiter) = state.queue.accept(message, true).await?;
    let (EnqueueOutcome::Inserted, Some(waiter)) = (outcome.clone(), waiter) else {
        return match outcome {
            EnqueueOutcome::Duplicate(view) => repeat(&trigger, *view),
            EnqueueOutcome::Inserted => Ok(accepted(&trigger, id, MessageStatus::Queued)),
        };
    };
    match tokio::time::timeout(trigger.response.timeout, waiter).await {
        Ok(Ok(WaitOutcome::Responded(r))) => Ok(responded(id, r)),
        Ok(Ok(WaitOutcome::Finished { error: Some(e), .. })) => Err(failed(id, e)),
        Ok(Ok(WaitOutcome::Finished {
            status: MessageStatus::Succeeded,
            ..
        })) => Ok(succeeded(id)),
        Ok(Ok(WaitOutcome::Finished { .. })) | Ok(Err(_)) => {
            Ok(accepted(&trigger, id, MessageStatus::Running))
        }
        Err(_) if trigger.response.on_timeout == OnTimeout::Cancel => {
            // Not started yet: it never runs (and says so); else it goes on.
            let status = if state.queue.dispatcher().waiters().cancel(id) {
                MessageStatus::Cancelled
            } else {
                MessageStatus::Running
            };
            Ok(accepted(&trigger, id, status))
        }
        Err(_) => {
            // Still waiting for its turn, it says so.
            let status = if state.queue.dispatcher().waiters().forget(id) {
                MessageStatus::Running
            } else {
                MessageStatus::Queued
            };
            Ok(accepted(&trigger, id, status))
        }
    }
}

/// `GET /<tenant>/<trigger>/messages/<id>` with the trigger's key.
async fn message_status(
    req: &HttpRequest,
    (tenant_name, trigger_name, id): (String, String, String),
    state: &AppState,
    limits: &mut Option<RateLimitHeaders>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, trigger) = find(state, &tenant_name, &trigger_name)?;
    // A GET has no body: a signing caller signs the path instead (after a
    // context of its own, so that it never stands for a body), and a signature
    // seen once reads that one message, never the trigger's others.
    let admitted = callers::admit(req, state, &tenant, &trigger, limits).await?;
    callers::verify_signed(req, admitted, Signed::StatusUrl(req.path()))?;
    let not_found = || ApiError::NotFound(format!("no message `{id}` for this trigger"));
    let parsed: MessageId = id.parse().map_err(|_| not_found())?;
    let view = match state.queue.message(parsed).await {
        Ok(view) => view.ok_or_else(not_found)?,
        // Told to this trigger's callers as the opaque 500 it is for them.
        Err(StoreError::Unreadable {
            tenant,
            trigger: t,
            why,
        }) if tenant == trigger.key.tenant && t == trigger.key.trigger => {
            return Err(ApiError::Internal(why));
        }
        Err(StoreError::Unreadable { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if view.head.tenant != trigger.key.tenant || view.head.trigger != trigger.key.trigger {
        return Err(not_found());
    }
    Ok(HttpResponse::Ok()
        .insert_header((X_MESSAGE_ID, view.head.id.to_string()))
        .json(view.status_document()))
}
