//! The trigger table, the tenants' subscriptions and the blocked lanes.

use std::collections::HashMap;
use std::path::Path;

use actix_web::{HttpRequest, get, web};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::domain::TenantName;
use crate::flow::Diagnostic;

use super::answers::{Lane, LaneList, Tenant, TenantList, Trigger, TriggerList};
use super::extract::Admin;
use super::{ApiError, Json};

/// The tenants a token may see, as a store filter (`None`: all).
pub fn scope(who: &Admin) -> Option<Vec<TenantName>> {
    who.tenants.clone()
}

/// The tenant a flow file (or tenant folder) belongs to.
fn tenant_of(file: &Path, flows: &Path) -> Option<String> {
    let rel = file.strip_prefix(flows).ok()?;
    rel.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

/// Every loaded trigger the token may see, with counts by status, blocked lanes and load errors.
#[utoipa::path(operation_id = "list_triggers", responses((status = 200, description = "The trigger table", body = TriggerList)))]
#[get("/triggers")]
pub async fn list(who: Admin, req: HttpRequest) -> Result<Json<TriggerList>, ApiError> {
    let state = &who.state;
    let store = state.queue.store();
    let counts = store.status_counts(scope(&who)).await?;
    let blocked = store.blocked_lanes(scope(&who)).await?;
    let mut by_trigger: HashMap<(String, String), IndexMap<String, u64>> = HashMap::new();
    for c in counts {
        by_trigger
            .entry((c.key.tenant.to_string(), c.key.trigger.to_string()))
            .or_default()
            .insert(c.status.as_str().to_owned(), c.count);
    }
    let problems: Vec<Diagnostic> = state.problems.read().map(|p| p.clone()).unwrap_or_default();
    let info = req.connection_info().clone();
    let base = format!("{}://{}", info.scheme(), info.host());
    let catalog = state.catalog.get();
    let mut triggers: Vec<_> = catalog
        .triggers()
        .filter(|t| who.sees(t.key.tenant.as_str()))
        .collect();
    triggers.sort_by(|a, b| a.key.cmp(&b.key));
    let mut used = vec![false; problems.len()];
    let rows: Vec<Trigger> = triggers
        .iter()
        .map(|t| {
            let mine: Vec<&Diagnostic> = problems
                .iter()
                .enumerate()
                .filter(|(_, d)| d.file == t.file)
                .map(|(i, d)| {
                    used[i] = true;
                    d
                })
                .collect();
            let key = (t.key.tenant.to_string(), t.key.trigger.to_string());
            let counts = by_trigger.remove(&key).unwrap_or_default();
            let held: Vec<_> = blocked.iter().filter(|l| l.key == t.key).collect();
            Trigger::new(t, &base, counts, &mine, &held)
        })
        .collect();
    let flows = &state.settings.flows;
    let others: Vec<String> = problems
        .iter()
        .zip(used)
        .filter(|(d, used)| {
            !used
                && (who.tenants.is_none()
                    || tenant_of(&d.file, flows).is_some_and(|t| who.sees(&t)))
        })
        .map(|(d, _)| d.to_string())
        .collect();
    Ok(Json(TriggerList {
        triggers: rows,
        load_errors: others,
    }))
}

/// Tenants with their API key labels and subscriptions (never hashes or secrets).
#[utoipa::path(operation_id = "list_tenants", responses((status = 200, description = "Tenants", body = TenantList)))]
#[get("/tenants")]
pub async fn tenants(who: Admin) -> Result<Json<TenantList>, ApiError> {
    let state = &who.state;
    let catalog = state.catalog.get();
    let mut names: Vec<String> = catalog
        .triggers()
        .map(|t| t.key.tenant.to_string())
        .filter(|t| who.sees(t))
        .collect();
    names.sort();
    names.dedup();
    let tenants = names
        .iter()
        .filter_map(|n| catalog.tenant(n))
        .map(|e| Tenant::from(e.tenant.as_ref()))
        .collect();
    Ok(Json(TenantList { tenants }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LaneQuery {
    /// Tenant name
    tenant: Option<String>,
    /// Trigger name
    trigger: Option<String>,
}

/// Ordered lanes held by a failed message.
#[utoipa::path(operation_id = "list_lanes", params(LaneQuery), responses((status = 200, description = "Blocked lanes", body = LaneList)))]
#[get("/lanes")]
pub async fn lanes(q: web::Query<LaneQuery>, who: Admin) -> Result<Json<LaneList>, ApiError> {
    let state = &who.state;
    if let Some(t) = &q.tenant {
        who.visible(t)?;
    }
    let blocked = state.queue.store().blocked_lanes(scope(&who)).await?;
    let rows = blocked
        .iter()
        .filter(|l| {
            q.tenant
                .as_deref()
                .is_none_or(|t| l.key.tenant.as_str() == t)
        })
        .filter(|l| {
            q.trigger
                .as_deref()
                .is_none_or(|t| l.key.trigger.as_str() == t)
        })
        .map(Lane::from)
        .collect();
    Ok(Json(LaneList { lanes: rows }))
}
