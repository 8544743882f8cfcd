//! The log history: filtered, paged lists, one message in full, and what an
//! operator does to messages (replay, bulk replay, skip, unblock).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::auth::admin::AdminIdentity;
use crate::domain::{MessageStatus, MessageView, TenantName, TriggerKey, TriggerName};
use crate::queue::LaneError;
use crate::store::{MessageQuery, Release, StoreError};

use super::json::{bad, detail as detail_doc, parse_time, summary};
use super::{ApiError, AppState, authorize, parse_id, visible};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
/// The most messages one bulk replay may run again.
const MAX_BULK: u32 = 10_000;
/// Replays stored per write.
const BULK_BATCH: usize = 500;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filter {
    tenant: Option<String>,
    trigger: Option<String>,
    status: Option<String>,
    lane: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Query parameters are strings; `serde(flatten)` would lose the number in `limit`.
#[derive(Deserialize)]
pub struct ListQuery {
    tenant: Option<String>,
    trigger: Option<String>,
    status: Option<String>,
    lane: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

impl ListQuery {
    fn filter(&self) -> Filter {
        Filter {
            tenant: self.tenant.clone(),
            trigger: self.trigger.clone(),
            status: self.status.clone(),
            lane: self.lane.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
}

/// The store query for a filter as `who` may see it; `None` when nothing can match.
fn to_query(
    who: &AdminIdentity,
    f: &Filter,
    state: &AppState,
) -> Result<Option<MessageQuery>, ApiError> {
    let status = f
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                bad(
                    "invalid_parameter",
                    format!("`status`: unknown status `{s}`"),
                )
            })
        })
        .transpose()?;
    let catalog = state.catalog.get();
    let of_tenant = |t: &str| -> Vec<TriggerKey> {
        let mut keys: Vec<TriggerKey> = catalog
            .triggers()
            .filter(|g| g.key.tenant.as_str() == t)
            .map(|g| g.key.clone())
            .collect();
        keys.sort();
        keys
    };
    let triggers = match (&f.tenant, &f.trigger) {
        (None, Some(_)) => {
            return Err(bad("invalid_parameter", "`trigger` needs `tenant`".into()));
        }
        (Some(t), Some(g)) => {
            visible(who, t)?;
            let (Ok(tenant), Ok(trigger)) = (TenantName::parse(t), TriggerName::parse(g)) else {
                return Ok(None);
            };
            vec![TriggerKey { tenant, trigger }]
        }
        (Some(t), None) => {
            visible(who, t)?;
            let keys = of_tenant(t);
            if keys.is_empty() {
                return Ok(None);
            }
            keys
        }
        // A global view without filters reads the id index directly.
        (None, None) if who.tenants.is_none() && status.is_none() && f.lane.is_none() => Vec::new(),
        (None, None) => {
            let mut keys: Vec<TriggerKey> = catalog
                .triggers()
                .filter(|g| who.sees(g.key.tenant.as_str()))
                .map(|g| g.key.clone())
                .collect();
            keys.sort();
            if keys.is_empty() {
                return Ok(None);
            }
            keys
        }
    };
    Ok(Some(MessageQuery {
        triggers,
        status,
        lane: f.lane.clone(),
        from: f
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?,
        to: f.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        before: None,
        limit: DEFAULT_LIMIT,
    }))
}

pub async fn list(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let Some(mut query) = to_query(&who, &q.filter(), &state)? else {
        return Ok(HttpResponse::Ok().json(json!({"messages": [], "next_cursor": null})));
    };
    query.limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    query.before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse()
                .map_err(|_| bad("invalid_parameter", "`cursor`: not a message id".into()))
        })
        .transpose()?;
    let limit = query.limit as usize;
    let rows = state.queue.store().list_messages(query).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "messages": rows.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// The message `id` if `who` may see it, else 404.
/// Why a message cannot be used, for an admin: unreadable documents are named
/// to those who may see the tenant, and 404 to others.
fn unusable(who: &AdminIdentity, id: &str, e: StoreError, replay: bool) -> ApiError {
    match e {
        StoreError::Unreadable { tenant, why, .. } if who.sees(tenant.as_str()) => {
            ApiError::Unreadable { why, replay }
        }
        StoreError::Unreadable { .. } => ApiError::NotFound(format!("no message `{id}`")),
        other => other.into(),
    }
}

async fn find(
    who: &AdminIdentity,
    state: &AppState,
    id: &str,
) -> Result<(MessageView, Option<crate::domain::MessageId>), ApiError> {
    find_for(who, state, id, false).await
}

/// `find`, saying whether the message is wanted for a replay.
async fn find_for(
    who: &AdminIdentity,
    state: &AppState,
    id: &str,
    replay: bool,
) -> Result<(MessageView, Option<crate::domain::MessageId>), ApiError> {
    let not_found = || ApiError::NotFound(format!("no message `{id}`"));
    let parsed = parse_id(id, "message")?;
    let (view, replay_of) = state
        .queue
        .store()
        .message_detail(parsed)
        .await
        .map_err(|e| unusable(who, id, e, replay))?
        .ok_or_else(not_found)?;
    if !who.sees(view.tenant.as_str()) {
        return Err(not_found());
    }
    Ok((view, replay_of))
}

/// Whether `v` holds its ordered lane: known here, or (lanes claimed from a
/// shared store by any node) asked of the store.
async fn blocking(state: &AppState, v: &MessageView) -> Result<bool, ApiError> {
    let Some(lane) = v.lane.as_deref() else {
        return Ok(false);
    };
    let dispatcher = state.queue.dispatcher();
    if !state.queue.execution().lanes_in_store() {
        let key = TriggerKey {
            tenant: v.tenant.clone(),
            trigger: v.trigger.clone(),
        };
        return Ok(dispatcher.blocked_by(&key, lane) == Some(v.id));
    }
    let lanes = state
        .queue
        .store()
        .blocked_lanes(Some(vec![v.tenant.clone()]))
        .await?;
    Ok(lanes.iter().any(|l| l.message_id == v.id))
}

pub async fn detail(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let (view, replay_of) = find(&who, &state, &id).await?;
    let blocking = blocking(&state, &view).await?;
    Ok(HttpResponse::Ok().json(detail_doc(&view, replay_of, blocking)))
}

pub async fn replay(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let (view, _) = find_for(&who, &state, &id, true).await?;
    let new = state.queue.replay(&view).await?;
    tracing::info!(admin = who.label, original = %view.id, replay = %new, "message replayed");
    Ok(HttpResponse::Accepted().json(json!({
        "message_id": new.to_string(),
        "replay_of": view.id.to_string(),
        "status": "queued",
    })))
}

async fn release(
    req: HttpRequest,
    id: &str,
    state: &AppState,
    how: Release,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, state).await?;
    let (view, _) = find(&who, state, id).await?;
    match state.queue.release_lane(&view, how).await {
        Ok(()) => {
            tracing::info!(admin = who.label, message = %view.id, action = ?how, "ordered lane released");
            let status = if how == Release::Skip {
                MessageStatus::Skipped
            } else {
                view.status
            };
            Ok(HttpResponse::Ok().json(json!({
                "message_id": view.id.to_string(),
                "status": status.as_str(),
                "lane": view.lane,
            })))
        }
        Err(LaneError::NotBlocking(_)) => Err(ApiError::Conflict(format!(
            "message {} does not hold an ordered lane",
            view.id
        ))),
        Err(LaneError::Store(e)) => Err(e.into()),
    }
}

pub async fn skip(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    release(req, &id, &state, Release::Skip).await
}

pub async fn unblock(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    release(req, &id, &state, Release::Unblock).await
}

#[derive(Deserialize)]
pub struct BulkReplay {
    #[serde(flatten)]
    filter: Filter,
    /// Only count the messages that match.
    #[serde(default)]
    dry_run: bool,
    /// The count from the dry run: replays only when it still matches.
    expect: Option<u64>,
}

pub async fn bulk_replay(
    req: HttpRequest,
    body: web::Json<BulkReplay>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let body = body.into_inner();
    if body.filter.tenant.is_none() || body.filter.trigger.is_none() {
        return Err(bad(
            "invalid_parameter",
            "bulk replay needs `tenant` and `trigger`".into(),
        ));
    }
    let Some(mut query) = to_query(&who, &body.filter, &state)? else {
        return Ok(HttpResponse::Ok().json(json!({"count": 0, "replayed": 0, "message_ids": []})));
    };
    let count = state.queue.store().count_messages(query.clone()).await?;
    if body.dry_run {
        return Ok(HttpResponse::Ok().json(json!({"count": count})));
    }
    if body.expect != Some(count) {
        return Err(ApiError::Conflict(format!(
            "{count} messages match; count first (dry_run: true) and send `expect: {count}` to replay them"
        )));
    }
    if count > u64::from(MAX_BULK) {
        return Err(ApiError::Conflict(format!(
            "{count} messages match; at most {MAX_BULK} can be replayed at once: narrow the filter"
        )));
    }
    query.limit = MAX_BULK;
    let mut rows = state.queue.store().list_messages(query).await?;
    rows.reverse();
    let mut ids = Vec::with_capacity(rows.len());
    // Oldest first, in batches: one store write per batch, not per message.
    for chunk in rows.chunks(BULK_BATCH) {
        let mut views = Vec::with_capacity(chunk.len());
        for m in chunk {
            let detail = state.queue.store().message_detail(m.id).await;
            let detail = detail.map_err(|e| unusable(&who, &m.id.to_string(), e, true))?;
            if let Some((view, _)) = detail {
                views.push(view);
            }
        }
        let replayed = state.queue.replay_many(&views).await?;
        ids.extend(replayed.iter().map(ToString::to_string));
    }
    tracing::info!(admin = who.label, replayed = ids.len(), "bulk replay");
    Ok(HttpResponse::Accepted()
        .json(json!({"count": count, "replayed": ids.len(), "message_ids": ids})))
}
