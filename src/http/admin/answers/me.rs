//! The answer about the token that asks.

use serde::Serialize;
use utoipa::ToSchema;

/// `GET /me`: the admin token's label, what it may do and the tenants it sees.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Me {
    pub label: String,
    /// `operate`: it may replay, skip, unblock and redeliver; `read`: it may only look.
    #[schema(schema_with = role_schema)]
    pub role: String,
    /// The tenants it sees; none: every tenant.
    #[schema(required = true)]
    pub tenants: Option<Vec<String>>,
}

fn role_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["read", "operate"]))
        .build()
}
