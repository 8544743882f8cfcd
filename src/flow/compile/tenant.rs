//! `_tenant.yaml` -> Tenant: API keys, Basic users, secret headers, connections
//! and event subscriptions.

use std::sync::Arc;

use crate::connect::{Registry, Secrets};
use crate::domain::TenantName;
use crate::flow::model::Tenant;
use crate::flow::raw::RawTenant;

use super::connections::compile_connections;
use super::cx::{FileCx, is_header_name};

/// `_tenant.yaml` -> Tenant. With problems, the tenant holds only its valid keys
/// (so its triggers can still be checked) and the diagnostics say what is wrong.
pub fn compile_tenant(
    cx: &mut FileCx<'_>,
    name: TenantName,
    raw: RawTenant,
    registry: &Registry,
) -> Tenant {
    let keys = super::keys::compile_api_keys(cx, raw.api_keys);
    let mut basic_users = Vec::new();
    for (user, hash) in raw.basic_users {
        if user.is_empty() || user.contains(':') {
            cx.error(
                hash.referenced,
                format!("basic user `{user}`: a user name cannot be empty or contain `:`"),
            );
        }
        if !hash.value.starts_with("$argon2id$")
            || argon2::password_hash::phc::PasswordHash::new(&hash.value).is_err()
        {
            cx.error(hash.referenced, format!("basic user `{user}`: give an argon2id PHC hash of the password (`flowgate key new --label {user} --key PASSWORD` prints one)"));
        }
        basic_users.push((user, hash.value));
    }
    let mut secret_headers = Vec::new();
    for h in raw.secret_headers {
        if is_header_name(&h.value) {
            secret_headers.push(h.value.to_ascii_lowercase());
        } else {
            cx.error(
                h.referenced,
                format!("`{}` is not a valid header name", h.value),
            );
        }
    }
    let mut secrets = Secrets::default();
    let connections =
        compile_connections(cx, raw.connections, &secret_headers, registry, &mut secrets);
    let subscriptions = super::subscriptions::compile(
        cx,
        &name,
        raw.subscriptions,
        registry.subscriptions_allow_http(),
    );
    let mut tenant = Tenant::new(name, keys.pasted).with_key_ids(keys.with_ids);
    tenant.limits = keys.limits;
    tenant.basic_users = basic_users;
    tenant.connections = connections;
    tenant.secret_headers = secret_headers.into();
    tenant.secrets = Arc::new(secrets);
    tenant.outbound = registry.outbound().clone();
    tenant.with_subscriptions(subscriptions)
}
