//! Event delivery attempts for `/_metrics`: a counter by tenant, subscription
//! and outcome, and a duration histogram by tenant and subscription. The
//! subscriptions are the tenants' own (files or the admin API), a bounded set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::metrics::{Histogram, help};

/// Every outcome of an attempt: sent, or the kind of its failure.
pub const OUTCOMES: [&str; 7] = [
    "succeeded",
    "connect",
    "tls",
    "timeout",
    "status",
    "redirect",
    "policy",
];

#[derive(Default)]
struct Series {
    outcomes: [AtomicU64; OUTCOMES.len()],
    duration: Histogram,
}

type Key = (String, String);

#[derive(Default)]
pub struct DeliveryMetrics {
    series: RwLock<HashMap<Key, Arc<Series>>>,
}

impl DeliveryMetrics {
    /// One attempt of a delivery to `subscription` of `tenant` that ended in
    /// `outcome` (one of [`OUTCOMES`]) after `took_us`.
    pub fn attempt(&self, tenant: &str, subscription: &str, outcome: &str, took_us: i64) {
        let key = (tenant.to_owned(), subscription.to_owned());
        let found = {
            let map = self.series.read().unwrap_or_else(|p| p.into_inner());
            map.get(&key).cloned()
        };
        let series = found.unwrap_or_else(|| {
            let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_default().clone()
        });
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            series.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
        series.duration.observe_us(took_us);
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        let map = self.series.read().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&Key, &Arc<Series>)> = map.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        help(
            out,
            "flowgate_deliveries_total",
            "counter",
            "Event delivery attempts, by outcome (succeeded, or why it failed)",
        );
        for ((tenant, sub), s) in &rows {
            for (name, n) in OUTCOMES.iter().zip(&s.outcomes) {
                let labels =
                    format!("tenant=\"{tenant}\",subscription=\"{sub}\",outcome=\"{name}\"");
                super::metrics::sample(
                    out,
                    "flowgate_deliveries_total",
                    &labels,
                    n.load(Ordering::Relaxed),
                );
            }
        }
        let name = "flowgate_delivery_duration_seconds";
        help(
            out,
            name,
            "histogram",
            "Time an event delivery attempt took",
        );
        for ((tenant, sub), s) in &rows {
            let labels = format!("tenant=\"{tenant}\",subscription=\"{sub}\"");
            s.duration.render(out, name, &labels);
        }
    }
}
