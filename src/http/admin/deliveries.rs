//! The delivery log of outbound event webhooks, and manual redelivery.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;

use crate::domain::{TenantName, now_micros};
use crate::store::DeliveryView;

use super::answers::{Delivery, DeliveryPage, Errors, Redelivered};
use super::{ApiError, AppState, Json, authorize, bad, parse_id, visible};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Tenant name
    tenant: String,
    /// Subscription name
    subscription: Option<String>,
    /// next_cursor of the previous page
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
}

/// A tenant's event deliveries, newest first.
#[utoipa::path(
    operation_id = "list_deliveries",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "A bad parameter", body = Errors),
    )
)]
#[get("/deliveries")]
pub async fn list(
    req: HttpRequest,
    q: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<Json<DeliveryPage>, ApiError> {
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
    Ok(Json(DeliveryPage {
        deliveries: rows.iter().map(|d| Delivery::new(d, false)).collect(),
        next_cursor: next,
    }))
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

/// One delivery with its payload and every attempt (status, headers, body excerpt).
#[utoipa::path(
    operation_id = "get_delivery",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, description = "The delivery", body = Delivery))
)]
#[get("/deliveries/{id}")]
pub async fn detail(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<Json<Delivery>, ApiError> {
    let d = find(&req, &state, &id).await?;
    Ok(Json(Delivery::new(&d, true)))
}

/// Send the delivery again now.
#[utoipa::path(
    operation_id = "redeliver",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 202, description = "Queued for sending", body = Redelivered))
)]
#[post("/deliveries/{id}/redeliver")]
pub async fn redeliver(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let d = find(&req, &state, &id).await?;
    state.queue.store().redeliver(d.id, now_micros()).await?;
    state.queue.dispatcher().events().wake_sender();
    Ok(HttpResponse::Accepted().json(Redelivered {
        delivery_id: d.id.to_string(),
        status: "pending".into(),
    }))
}
