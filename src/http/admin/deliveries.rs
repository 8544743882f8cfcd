//! The delivery log of outbound event webhooks, and manual redelivery.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::domain::{TenantName, now_micros};
use crate::store::DeliveryView;

use super::json::{bad, delivery};
use super::{ApiError, AppState, authorize, parse_id, visible};

#[derive(Deserialize)]
pub struct ListQuery {
    tenant: String,
    subscription: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub async fn list(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    visible(&who, &q.tenant)?;
    let tenant = TenantName::parse(&q.tenant)
        .map_err(|_| ApiError::NotFound(format!("no tenant `{}`", q.tenant)))?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse()
                .map_err(|_| bad("invalid_parameter", "`cursor`: not a delivery id".into()))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = state
        .queue
        .store()
        .list_deliveries(tenant, q.subscription.clone(), before, limit)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({
        "deliveries": rows.iter().map(|d| delivery(d, false)).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn find(req: &HttpRequest, state: &AppState, id: &str) -> Result<DeliveryView, ApiError> {
    let who = authorize(req, state).await?;
    let not_found = || ApiError::NotFound(format!("no delivery `{id}`"));
    let d = state
        .queue
        .store()
        .get_delivery(parse_id(id, "delivery")?)
        .await?
        .ok_or_else(not_found)?;
    if !who.sees(d.tenant.as_str()) {
        return Err(not_found());
    }
    Ok(d)
}

pub async fn detail(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = find(&req, &state, &id).await?;
    Ok(HttpResponse::Ok().json(delivery(&d, true)))
}

pub async fn redeliver(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = find(&req, &state, &id).await?;
    state.queue.store().redeliver(d.id, now_micros()).await?;
    state.queue.dispatcher().events().wake_sender();
    Ok(
        HttpResponse::Accepted()
            .json(json!({"delivery_id": d.id.to_string(), "status": "pending"})),
    )
}
