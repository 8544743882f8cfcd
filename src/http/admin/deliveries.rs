//! The delivery log of outbound event webhooks, and manual redelivery.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::domain::now_micros;
use crate::store::{DeliveryQuery, DeliveryView};

use super::answers::{Delivery, DeliveryPage, Errors, Redelivered};
use super::extract::{Admin, Found, Operate};
use super::{ApiError, Json, next_cursor, parse_cursor};

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
pub async fn list(q: web::Query<ListQuery>, who: Admin) -> Result<Json<DeliveryPage>, ApiError> {
    let state = &who.state;
    let query = DeliveryQuery {
        tenant: who.tenant(&q.tenant)?,
        subscription: q.subscription.clone(),
        before: parse_cursor(q.cursor.as_deref(), "delivery")?,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
    };
    let limit = query.limit as usize;
    let rows = state.queue.store().list_deliveries(query).await?;
    Ok(Json(DeliveryPage {
        deliveries: rows.iter().map(|d| Delivery::new(d, false)).collect(),
        next_cursor: next_cursor(&rows, limit, |d| d.delivery.id.to_string()),
    }))
}

/// One delivery with its payload and every attempt (status, headers, body excerpt).
#[utoipa::path(
    operation_id = "get_delivery",
    responses((status = 200, description = "The delivery", body = Delivery))
)]
#[get("/deliveries/{id}")]
pub async fn detail(found: Found<DeliveryView>) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(Delivery::new(&found.it, true)))
}

/// Send the delivery again now.
#[utoipa::path(
    operation_id = "redeliver",
    responses(
        (status = 202, description = "Queued for sending", body = Redelivered),
    )
)]
#[post("/deliveries/{id}/redeliver")]
pub async fn redeliver(found: Operate<DeliveryView>) -> Result<HttpResponse, ApiError> {
    let Found { who, it: d } = found;
    let state = &who.state;
    state
        .queue
        .store()
        .redeliver(d.delivery.id, now_micros())
        .await?;
    state.queue.dispatcher().events().wake_sender();
    Ok(HttpResponse::Accepted().json(Redelivered {
        delivery_id: d.delivery.id.to_string(),
        status: "pending".into(),
    }))
}
