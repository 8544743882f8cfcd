//! The trigger table, the tenants' subscriptions and the blocked lanes.

use std::collections::HashMap;
use std::path::Path;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::admin::AdminIdentity;
use crate::domain::TenantName;
use crate::flow::Diagnostic;

use super::{ApiError, AppState, authorize, json as doc, visible};

/// The tenants a token may see, as a store filter (`None`: all).
pub fn scope(who: &AdminIdentity) -> Option<Vec<TenantName>> {
    who.tenants.clone()
}

/// The tenant a flow file (or tenant folder) belongs to.
fn tenant_of(file: &Path, flows: &Path) -> Option<String> {
    let rel = file.strip_prefix(flows).ok()?;
    rel.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let store = state.queue.store();
    let counts = store.status_counts(scope(&who)).await?;
    let lanes = store.blocked_lanes(scope(&who)).await?;
    let mut by_trigger: HashMap<(String, String), serde_json::Map<String, Value>> = HashMap::new();
    for c in counts {
        by_trigger
            .entry((c.key.tenant.to_string(), c.key.trigger.to_string()))
            .or_default()
            .insert(c.status.as_str().to_owned(), json!(c.count));
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
    let rows: Vec<Value> = triggers
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
            let held: Vec<_> = lanes.iter().filter(|l| l.key == t.key).collect();
            doc::trigger(t, &base, Value::Object(counts), &mine, &held)
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
    Ok(HttpResponse::Ok().json(json!({"triggers": rows, "load_errors": others})))
}

pub async fn tenants(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    let catalog = state.catalog.get();
    let mut names: Vec<String> = catalog
        .triggers()
        .map(|t| t.key.tenant.to_string())
        .filter(|t| who.sees(t))
        .collect();
    names.sort();
    names.dedup();
    let rows: Vec<Value> = names
        .iter()
        .filter_map(|n| catalog.tenant(n))
        .map(|e| {
            json!({
                "tenant": e.tenant.name.as_str(),
                "api_keys": e.tenant.api_keys.iter().map(|(l, _)| l).collect::<Vec<_>>(),
                "subscriptions": e.tenant.subscriptions.iter().map(doc::subscription).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"tenants": rows})))
}

#[derive(Deserialize)]
pub struct LaneQuery {
    tenant: Option<String>,
    trigger: Option<String>,
}

pub async fn lanes(
    req: HttpRequest,
    q: web::Query<LaneQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let who = authorize(&req, &state).await?;
    if let Some(t) = &q.tenant {
        visible(&who, t)?;
    }
    let lanes = state.queue.store().blocked_lanes(scope(&who)).await?;
    let rows: Vec<Value> = lanes
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
        .map(doc::lane)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"lanes": rows})))
}
