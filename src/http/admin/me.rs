//! `GET /me`: who the admin token is and what it may do, so that the UI shows
//! a `read` token no button it may not press.

use actix_web::get;

use super::answers::Me;
use super::extract::Admin;
use super::{ApiError, Json};

/// The token's label, role and tenants.
#[utoipa::path(operation_id = "me", responses((status = 200, description = "The token", body = Me)))]
#[get("/me")]
pub async fn me(who: Admin) -> Result<Json<Me>, ApiError> {
    Ok(Json(Me {
        label: who.label.clone(),
        role: who.role.as_str().to_owned(),
        tenants: who
            .tenants
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.as_str().to_owned()).collect()),
    }))
}
