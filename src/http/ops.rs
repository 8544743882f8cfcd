//! Health, readiness, metrics and the 404 for everything else.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::auth::gate::KeyStats;
use crate::ops::metrics::{help, labelled, sample, single};

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when the flows are loaded and the store answers.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.queue.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "triggers": state.catalog.get().trigger_count(),
        })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .insert_header(("retry-after", "5"))
            .json(json!({"errors": [{"code": "store_unavailable", "message": e.to_string()}]})),
    }
}

/// A verification cache's hits and misses as counters: name, help, value.
fn cache_counters(prefix: &str, checks: &str, s: &KeyStats) -> [(String, String, u64); 2] {
    [
        (
            format!("{prefix}_cache_hits_total"),
            format!("{checks} answered from the cache"),
            s.cache_hits.load(Ordering::Relaxed),
        ),
        (
            format!("{prefix}_cache_misses_total"),
            format!("{checks} that needed a verification"),
            s.cache_misses.load(Ordering::Relaxed),
        ),
    ]
}

/// Writes of consumers' counts to the store, and those that failed.
fn usage_counters(s: &crate::auth::usage::UsageStats) -> [(String, String, u64); 2] {
    [
        (
            "flowgate_usage_flushes_total".to_owned(),
            "Consumers' counts written to the store (about once a second)".to_owned(),
            s.flushes.load(Ordering::Relaxed),
        ),
        (
            "flowgate_usage_flush_errors_total".to_owned(),
            "Writes of consumers' counts that failed (the counts wait for the next)".to_owned(),
            s.flush_errors.load(Ordering::Relaxed),
        ),
    ]
}

/// Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = String::new();
    let k = &state.keys.stats;
    let a = &state.admin.stats;
    let verifications = (
        "flowgate_key_verifications_total".to_owned(),
        "argon2 verifications run".to_owned(),
        k.verifications.load(Ordering::Relaxed),
    );
    let counters = std::iter::once(verifications)
        .chain(cache_counters("flowgate_key", "API key checks", k))
        .chain(cache_counters(
            "flowgate_admin_token",
            "Admin token checks",
            a,
        ))
        .chain(usage_counters(&state.usage.stats));
    for (name, text, v) in counters {
        single(&mut out, &name, "counter", &text, v);
    }
    let catalog = state.catalog.get();
    single(
        &mut out,
        "flowgate_triggers_loaded",
        "gauge",
        "Triggers currently loaded",
        catalog.trigger_count(),
    );
    single(
        &mut out,
        "flowgate_flow_load_errors",
        "gauge",
        "Problems in the flow files at the last load",
        state.reload_errors.load(Ordering::Relaxed),
    );
    help(
        &mut out,
        "flowgate_backlog",
        "gauge",
        "Messages queued or running per trigger on this node",
    );
    let mut triggers: Vec<_> = catalog.triggers().collect();
    triggers.sort_by(|a, b| a.key.cmp(&b.key));
    for t in &triggers {
        let backlog = state.queue.dispatcher().state(&t.key).backlog();
        sample(
            &mut out,
            "flowgate_backlog",
            &trigger_labels(&t.key),
            backlog,
        );
    }
    help(
        &mut out,
        "flowgate_lanes_blocked",
        "gauge",
        "Ordered lanes held by a failed message (across every node on a shared store)",
    );
    for (key, n) in blocked_lanes(&state).await {
        sample(&mut out, "flowgate_lanes_blocked", &trigger_labels(&key), n);
    }
    if let Some(stats) = state.queue.execution().store_stats() {
        render_store(&mut out, stats);
    }
    state.queue.dispatcher().metrics().render(&mut out);
    state.hooks.metrics().render(&mut out);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

fn trigger_labels(key: &crate::domain::TriggerKey) -> String {
    format!("tenant=\"{}\",trigger=\"{}\"", key.tenant, key.trigger)
}

/// The shared store's pool and the leases this node holds.
fn render_store(out: &mut String, s: crate::store::SharedStats) {
    labelled(
        out,
        "flowgate_store_connections",
        "gauge",
        "Connections of this node's PostgreSQL pool, by state",
        "state",
        &[("in_use", s.in_use), ("idle", s.idle)],
    );
    single(
        out,
        "flowgate_store_connections_max",
        "gauge",
        "The pool's limit (pool_size)",
        s.max,
    );
    single(
        out,
        "flowgate_store_waiting",
        "gauge",
        "Tasks waiting for a PostgreSQL connection",
        s.waiting,
    );
    labelled(
        out,
        "flowgate_leases_held",
        "gauge",
        "Leases this node renews on the shared store",
        "kind",
        &[("message", s.messages_held), ("lane", s.lanes_held)],
    );
    single(
        out,
        "flowgate_leases_lost_total",
        "counter",
        "Leases this node lost (not renewed in time, or taken over); the work under them was stopped",
        s.leases_lost,
    );
    single(
        out,
        "flowgate_results_discarded_total",
        "counter",
        "Attempts' ends this node wrote late (no longer the message's current attempt, or the lease lapsed) and the store discarded",
        s.results_discarded,
    );
    single(
        out,
        "flowgate_store_clock_offset_seconds",
        "gauge",
        "The database's clock minus this machine's, as leases follow it (0 below 250 ms)",
        s.clock_offset as f64 / 1e6,
    );
}

/// Blocked lanes per trigger: this node's lanes on SQLite; on a shared store the
/// lanes live in the database, so it is asked (nothing when it does not answer).
async fn blocked_lanes(state: &AppState) -> Vec<(crate::domain::TriggerKey, usize)> {
    let mut counts: Vec<(crate::domain::TriggerKey, usize)> =
        if state.queue.execution().lanes_in_store() {
            let mut by_key = std::collections::BTreeMap::new();
            match state.queue.store().blocked_lanes(None).await {
                Ok(lanes) => lanes
                    .into_iter()
                    .for_each(|l| *by_key.entry(l.key).or_insert(0) += 1),
                Err(e) => tracing::warn!(error = %e, "metrics: blocked lanes unknown"),
            }
            by_key.into_iter().collect()
        } else {
            state
                .queue
                .dispatcher()
                .states()
                .into_iter()
                .map(|(key, s)| (key, s.blocked_lanes()))
                .collect()
        };
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    counts
}
