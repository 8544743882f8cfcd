//! The log history: filtered, paged lists, one message in full, and what an
//! operator does to messages (replay, bulk replay, skip, unblock).

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::domain::{MessageStatus, MessageView, TenantName, TriggerKey, TriggerName};
use crate::queue::LaneError;
use crate::store::{MessageQuery, Release};

use super::answers::{
    BulkAnswer, BulkCount, BulkReplayed, Errors, MessageDetail, MessagePage, MessageSummary,
    Released, Replayed,
};
use super::extract::{Admin, Found, Message, Operate, Operator, ToReplay, unusable};
use super::{ApiError, AppState, Json, bad, next_cursor, parse_cursor, parse_time};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
/// The most messages one bulk replay may run again.
const MAX_BULK: u32 = 10_000;
/// Replays stored per write.
const BULK_BATCH: usize = 500;

#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
pub struct Filter {
    tenant: Option<String>,
    trigger: Option<String>,
    status: Option<String>,
    lane: Option<String>,
    /// The consumer's label (an API key's, or the HTTP Basic user).
    consumer: Option<String>,
    /// The id of the key of the form `fg_<id>_<secret>` that sent it.
    key_id: Option<String>,
    #[schema(format = DateTime)]
    from: Option<String>,
    #[schema(format = DateTime)]
    to: Option<String>,
}

/// Query parameters are strings; `serde(flatten)` would lose the number in `limit`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Tenant name
    tenant: Option<String>,
    /// Trigger name (needs tenant)
    trigger: Option<String>,
    /// queued, running, retrying, succeeded, failed, dead, skipped, rejected or cancelled
    status: Option<String>,
    /// Ordered lane (the ordering key's value)
    lane: Option<String>,
    /// The consumer that sent it: an API key's label, or the HTTP Basic user
    consumer: Option<String>,
    /// The id of the key (`fg_<id>_<secret>`) that sent it
    key_id: Option<String>,
    /// Received at or after (RFC 3339)
    #[param(format = DateTime)]
    from: Option<String>,
    /// Received before (RFC 3339)
    #[param(format = DateTime)]
    to: Option<String>,
    /// next_cursor of the previous page
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
}

impl ListQuery {
    fn filter(&self) -> Filter {
        Filter {
            tenant: self.tenant.clone(),
            trigger: self.trigger.clone(),
            status: self.status.clone(),
            lane: self.lane.clone(),
            consumer: self.consumer.clone(),
            key_id: self.key_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
}

/// The store query for a filter as `who` may see it; `None` when nothing can match.
fn to_query(who: &Admin, f: &Filter, state: &AppState) -> Result<Option<MessageQuery>, ApiError> {
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
            who.visible(t)?;
            let (Ok(tenant), Ok(trigger)) = (TenantName::parse(t), TriggerName::parse(g)) else {
                return Ok(None);
            };
            vec![TriggerKey { tenant, trigger }]
        }
        (Some(t), None) => {
            who.visible(t)?;
            let keys = of_tenant(t);
            if keys.is_empty() {
                return Ok(None);
            }
            keys
        }
        // A global view without filters reads the id index directly.
        (None, None)
            if who.tenants.is_none()
                && status.is_none()
                && f.lane.is_none()
                && f.consumer.is_none() =>
        {
            Vec::new()
        }
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
        consumer: f.consumer.clone(),
        key_id: f.key_id.clone(),
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

/// The log history, newest first, paged by cursor.
#[utoipa::path(
    operation_id = "list_messages",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "A bad parameter", body = Errors),
    )
)]
#[get("/messages")]
pub async fn list(q: web::Query<ListQuery>, who: Admin) -> Result<Json<MessagePage>, ApiError> {
    let state = &who.state;
    let Some(mut query) = to_query(&who, &q.filter(), state)? else {
        return Ok(Json(MessagePage {
            messages: Vec::new(),
            next_cursor: None,
        }));
    };
    query.limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    query.before = parse_cursor(q.cursor.as_deref(), "message")?;
    let limit = query.limit as usize;
    let rows = state.queue.store().list_messages(query).await?;
    Ok(Json(MessagePage {
        messages: rows.iter().map(MessageSummary::from).collect(),
        next_cursor: next_cursor(&rows, limit, |m| m.head.id.to_string()),
    }))
}

/// Whether `v` holds its ordered lane: known here, or (lanes claimed from a
/// shared store by any node) asked of the store.
async fn blocking(state: &AppState, v: &MessageView) -> Result<bool, ApiError> {
    let Some(lane) = v.head.lane.as_deref() else {
        return Ok(false);
    };
    let dispatcher = state.queue.dispatcher();
    if !state.queue.execution().lanes_in_store() {
        let key = TriggerKey {
            tenant: v.head.tenant.clone(),
            trigger: v.head.trigger.clone(),
        };
        return Ok(dispatcher.blocked_by(&key, lane) == Some(v.head.id));
    }
    let lanes = state
        .queue
        .store()
        .blocked_lanes(Some(vec![v.head.tenant.clone()]))
        .await?;
    Ok(lanes.iter().any(|l| l.message_id == v.head.id))
}

/// One message: input (redacted), step trace, every attempt, response.
#[utoipa::path(
    operation_id = "get_message",
    responses(
        (status = 200, description = "The message", body = MessageDetail),
        (status = 500, description = "The message's stored documents cannot be read back", body = Errors),
    )
)]
#[get("/messages/{id}")]
pub async fn detail(found: Found<Message>) -> Result<Json<MessageDetail>, ApiError> {
    let Found { who, it } = found;
    let Message { view, replay_of } = it;
    let blocking = blocking(&who.state, &view).await?;
    Ok(Json(MessageDetail::new(&view, replay_of, blocking)))
}

/// Run the message's input again as a new message linked to it; a replay of a
/// lane's blocking message takes the head of the lane.
#[utoipa::path(
    operation_id = "replay_message",
    responses(
        (status = 202, description = "The new message", body = Replayed),
        (status = 409, description = "The message's stored input cannot be read back", body = Errors),
    )
)]
#[post("/messages/{id}/replay")]
pub async fn replay(found: Operate<ToReplay>) -> Result<HttpResponse, ApiError> {
    let Found { who, it } = found;
    let state = &who.state;
    let view = it.view;
    let new = state.queue.replay(&view).await?;
    tracing::info!(admin = who.label, original = %view.head.id, replay = %new, "message replayed");
    Ok(HttpResponse::Accepted().json(Replayed {
        message_id: new.to_string(),
        replay_of: view.head.id.to_string(),
        status: "queued".into(),
    }))
}

async fn release(found: Operate<Message>, how: Release) -> Result<Json<Released>, ApiError> {
    let Found { who, it } = found;
    let state = &who.state;
    let view = it.view;
    match state.queue.release_lane(&view, how).await {
        Ok(()) => {
            tracing::info!(admin = who.label, message = %view.head.id, action = ?how, "ordered lane released");
            let status = if how == Release::Skip {
                MessageStatus::Skipped
            } else {
                view.head.status
            };
            Ok(Json(Released {
                message_id: view.head.id.to_string(),
                status: status.as_str().to_owned(),
                lane: view.head.lane,
            }))
        }
        Err(LaneError::NotBlocking(_)) => Err(ApiError::Conflict(format!(
            "message {} does not hold an ordered lane",
            view.head.id
        ))),
        Err(LaneError::Store(e)) => Err(e.into()),
    }
}

/// The two ways to release a lane, each its own endpoint that differs only in
/// what it does with the blocking message.
macro_rules! release_endpoint {
    ($(#[doc = $doc:literal])* $name:ident, $op:literal, $path:literal, $done:literal, $how:expr) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            operation_id = $op,
            responses(
                (status = 200, description = $done, body = Released),
                (status = 409, description = "The message does not hold an ordered lane", body = Errors),
            )
        )]
        #[post($path)]
        pub async fn $name(found: Operate<Message>) -> Result<Json<Released>, ApiError> {
            release(found, $how).await
        }
    };
}

release_endpoint!(
    /// Mark a lane's blocking message skipped; the lane goes on.
    skip, "skip_message", "/messages/{id}/skip", "Skipped", Release::Skip
);
release_endpoint!(
    /// Let the lane go on, the blocking message keeping its status.
    unblock, "unblock_message", "/messages/{id}/unblock", "Unblocked", Release::Unblock
);

#[derive(Deserialize, utoipa::ToSchema)]
pub struct BulkReplay {
    #[serde(flatten)]
    filter: Filter,
    /// Only count the messages that match.
    #[serde(default)]
    dry_run: bool,
    /// The count from the dry run: replays only when it still matches.
    expect: Option<u64>,
}

/// Bulk replay by filter: count first with dry_run, then send expect: <count>.
#[utoipa::path(
    operation_id = "bulk_replay",
    request_body = BulkReplay,
    responses(
        (status = 200, description = "The count (dry run), or nothing matched", body = BulkAnswer),
        (status = 202, description = "Replayed", body = BulkReplayed),
        (status = 400, description = "A bad parameter or body", body = Errors),
        (status = 409, description = "The count is not `expect`, or too many match", body = Errors),
        (status = 408, description = "The body did not arrive in time", body = Errors),
        (status = 413, description = "The body is too large", body = Errors),
    )
)]
#[post("/replay")]
pub async fn bulk_replay(
    body: web::Json<BulkReplay>,
    who: Operator,
) -> Result<HttpResponse, ApiError> {
    let state = &who.state;
    let body = body.into_inner();
    if body.filter.tenant.is_none() || body.filter.trigger.is_none() {
        return Err(bad(
            "invalid_parameter",
            "bulk replay needs `tenant` and `trigger`".into(),
        ));
    }
    let Some(mut query) = to_query(&who, &body.filter, state)? else {
        return Ok(HttpResponse::Ok().json(BulkAnswer::Replayed(BulkReplayed {
            count: 0,
            replayed: 0,
            message_ids: Vec::new(),
        })));
    };
    let count = state.queue.store().count_messages(query.clone()).await?;
    if body.dry_run {
        return Ok(HttpResponse::Ok().json(BulkAnswer::Count(BulkCount { count })));
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
            let found = state.queue.store().message_detail(m.head.id).await;
            let found = found.map_err(|e| unusable(&who, &m.head.id.to_string(), e, true))?;
            if let Some((view, _)) = found {
                views.push(view);
            }
        }
        let replayed = state.queue.replay_many(&views).await?;
        ids.extend(replayed.iter().map(ToString::to_string));
    }
    tracing::info!(admin = who.label, replayed = ids.len(), "bulk replay");
    Ok(HttpResponse::Accepted().json(BulkReplayed {
        count,
        replayed: ids.len(),
        message_ids: ids,
    }))
}
