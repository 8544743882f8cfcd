//! Counters and histograms for `/_metrics`, kept as atomics per trigger.
//!
//! The label sets are known in advance (a loaded trigger, a status code, an
//! outcome), so each trigger gets one block of atomics, created the first time it
//! is seen and found again by a map lookup on borrowed names: recording costs no
//! allocation and no formatting. Rendering (Prometheus text) happens on scrape.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: i64) {
        let us = us.max(0) as u64;
        let secs = us as f64 / 1e6;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// How an execution (one attempt) ended, for `flowgate_executions_total`.
#[derive(Debug, Clone, Copy)]
pub enum ExecOutcome {
    Succeeded = 0,
    Failed = 1,
    /// A `fail` step with a 4xx status: the flow turned the request down.
    Rejected = 2,
}

impl ExecOutcome {
    /// The outcome of an attempt that left its message in `status`.
    pub fn of(status: crate::domain::MessageStatus) -> Self {
        use crate::domain::MessageStatus as S;
        match status {
            S::Succeeded => Self::Succeeded,
            S::Rejected => Self::Rejected,
            _ => Self::Failed,
        }
    }
}

const OUTCOMES: [&str; 3] = ["succeeded", "failed", "rejected"];

/// Answers by status code (index: code - 100).
type ByStatus = [AtomicU64; 500];

/// The consumer labels a trigger counts its requests under, each its own row of
/// counters. Labels come from `_tenant.yaml` (a key's label, a Basic user), so
/// they are few; past this many on one trigger, calls are counted under
/// `OTHER_CONSUMERS`.
pub const MAX_CONSUMERS: usize = 64;
/// The `consumer` label of calls by a consumer past `MAX_CONSUMERS`.
pub const OTHER_CONSUMERS: &str = "_other";

/// One consumer's answers.
struct ConsumerRequests {
    label: Box<str>,
    by_status: Box<ByStatus>,
}

/// Where a trigger counts one call's answer: the row of the consumer that made
/// it, found once per request by [`TriggerMetrics::consumer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerSlot(usize);

impl ConsumerSlot {
    /// Calls that name no consumer: open triggers, HMAC signatures, refused keys.
    pub const NOBODY: Self = Self(0);
    const OTHER: Self = Self(MAX_CONSUMERS + 1);
}

/// One trigger's atomics.
pub struct TriggerMetrics {
    /// Answers to calls that name no consumer.
    requests: ByStatus,
    /// Answers to each consumer's calls, in the order the labels were first
    /// seen: claimed once, then only read, so that finding a row takes no lock.
    consumers: [std::sync::OnceLock<ConsumerRequests>; MAX_CONSUMERS],
    /// Answers to consumers past `MAX_CONSUMERS`.
    others: ByStatus,
    executions: [AtomicU64; 3],
    pub execution: Histogram,
    pub queue_wait: Histogram,
}

impl TriggerMetrics {
    fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            consumers: std::array::from_fn(|_| std::sync::OnceLock::new()),
            others: std::array::from_fn(|_| AtomicU64::new(0)),
            executions: Default::default(),
            execution: Histogram::default(),
            queue_wait: Histogram::default(),
        }
    }

    /// The row of the consumer `label` (`None`: nobody). A label seen before
    /// is found by comparing it with the few this trigger has; a new one takes
    /// the next free row (one allocation, the first time only).
    pub fn consumer(&self, label: Option<&str>) -> ConsumerSlot {
        let Some(label) = label else {
            return ConsumerSlot::NOBODY;
        };
        for (i, row) in self.consumers.iter().enumerate() {
            let taken = row.get_or_init(|| ConsumerRequests {
                label: label.into(),
                by_status: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            });
            // Another label may have taken the row first: then look further.
            if &*taken.label == label {
                return ConsumerSlot(i + 1);
            }
        }
        ConsumerSlot::OTHER
    }

    /// Counts an answer with `status` to a call of `consumer`.
    pub fn request(&self, consumer: ConsumerSlot, status: u16) {
        let row = match consumer.0 {
            0 => &self.requests,
            i if i <= MAX_CONSUMERS => match self.consumers[i - 1].get() {
                Some(c) => &c.by_status,
                None => return,
            },
            _ => &self.others,
        };
        if let Some(c) = row.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every consumer's row with its label: nobody's first (`""`), then in the
    /// order they were first seen, then the others'.
    fn request_rows(&self) -> impl Iterator<Item = (&str, &ByStatus)> {
        std::iter::once(("", &self.requests))
            .chain(
                self.consumers
                    .iter()
                    .map_while(|row| row.get())
                    .map(|c| (&*c.label, &*c.by_status)),
            )
            .chain(std::iter::once((OTHER_CONSUMERS, &self.others)))
    }

    pub fn executed(&self, outcome: ExecOutcome, took_us: i64) {
        self.executions[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.execution.observe_us(took_us);
    }
}

type Map = HashMap<String, HashMap<String, Arc<TriggerMetrics>>>;

#[derive(Default)]
pub struct Metrics {
    triggers: RwLock<Map>,
    /// Store operations that failed, as their callers saw them.
    pub store_errors: AtomicU64,
}

impl Metrics {
    /// The trigger's atomics, if it has been seen.
    pub fn find(&self, tenant: &str, trigger: &str) -> Option<Arc<TriggerMetrics>> {
        let map = self.triggers.read().unwrap_or_else(|p| p.into_inner());
        map.get(tenant)?.get(trigger).cloned()
    }

    /// The trigger's atomics, created the first time. Only for loaded triggers:
    /// the names must not come unchecked from a request.
    pub fn trigger(&self, tenant: &str, trigger: &str) -> Arc<TriggerMetrics> {
        if let Some(m) = self.find(tenant, trigger) {
            return m;
        }
        let mut map = self.triggers.write().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_owned())
            .or_default()
            .entry(trigger.to_owned())
            .or_insert_with(|| Arc::new(TriggerMetrics::new()))
            .clone()
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The per-trigger series in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let map = self.triggers.read().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&str, &str, &Arc<TriggerMetrics>)> = map
            .iter()
            .flat_map(|(t, ts)| ts.iter().map(move |(g, m)| (t.as_str(), g.as_str(), m)))
            .collect();
        rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        help(
            out,
            "flowgate_requests_total",
            "counter",
            "Trigger calls answered, by consumer (label of the key or Basic user; empty for none) and status code",
        );
        for (t, g, m) in &rows {
            for (consumer, by_status) in m.request_rows() {
                let consumer = escape(consumer);
                for (i, c) in by_status.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        let code = i + 100;
                        let _ = writeln!(
                            out,
                            "flowgate_requests_total{{tenant=\"{t}\",trigger=\"{g}\",consumer=\"{consumer}\",status=\"{code}\"}} {n}"
                        );
                    }
                }
            }
        }
        help(
            out,
            "flowgate_executions_total",
            "counter",
            "Flow executions (attempts), by outcome",
        );
        for (t, g, m) in &rows {
            for (name, c) in OUTCOMES.iter().zip(&m.executions) {
                let n = c.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "flowgate_executions_total{{tenant=\"{t}\",trigger=\"{g}\",outcome=\"{name}\"}} {n}"
                );
            }
        }
        type Of = fn(&TriggerMetrics) -> &Histogram;
        let histograms: [(&str, &str, Of); 2] = [
            (
                "flowgate_execution_seconds",
                "Time a flow execution took",
                |m| &m.execution,
            ),
            (
                "flowgate_queue_wait_seconds",
                "Time a queued message waited past its due time before it ran",
                |m| &m.queue_wait,
            ),
        ];
        for (name, text, histogram) in histograms {
            help(out, name, "histogram", text);
            for (t, g, m) in &rows {
                let labels = format!("tenant=\"{t}\",trigger=\"{g}\"");
                histogram(m).render(out, name, &labels);
            }
        }
        help(
            out,
            "flowgate_store_errors_total",
            "counter",
            "Store operations that failed",
        );
        sample(
            out,
            "flowgate_store_errors_total",
            "",
            self.store_errors.load(Ordering::Relaxed),
        );
    }
}

/// A label's value as Prometheus' text format writes it: `\\`, `"` and line
/// breaks escaped.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            ch => out.push(ch),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A metric's `# HELP` and `# TYPE` lines (`kind`: counter, gauge, histogram).
pub fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// One sample line; `labels` as they stand between the braces, empty for none.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A metric whose samples differ by one label: `label="value"` per sample.
pub fn labelled<T: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    text: &str,
    label: &str,
    samples: &[(&str, T)],
) {
    help(out, name, kind, text);
    for (value_of_label, value) in samples {
        sample(out, name, &format!("{label}=\"{value_of_label}\""), value);
    }
}

/// A metric of one unlabelled sample.
pub fn single(out: &mut String, name: &str, kind: &str, text: &str, value: impl std::fmt::Display) {
    help(out, name, kind, text);
    sample(out, name, "", value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        let t = m.trigger("acme", "X");
        let nobody = t.consumer(None);
        t.request(nobody, 200);
        t.request(nobody, 200);
        t.request(nobody, 404);
        let shop = t.consumer(Some("webshop"));
        assert_eq!(t.consumer(Some("erp")), t.consumer(Some("erp")));
        assert_ne!(t.consumer(Some("erp")), shop);
        t.request(shop, 200);
        t.request(t.consumer(Some("webshop")), 429);
        t.request(t.consumer(Some("a \"quoted\" label")), 200);
        t.executed(ExecOutcome::Succeeded, 700);
        t.executed(ExecOutcome::Failed, 3_000_000);
        let mut out = String::new();
        m.render(&mut out);
        let has = |line: &str| assert!(out.contains(line), "{line} not in\n{out}");
        has(
            "flowgate_requests_total{tenant=\"acme\",trigger=\"X\",consumer=\"\",status=\"200\"} 2",
        );
        has(
            "flowgate_requests_total{tenant=\"acme\",trigger=\"X\",consumer=\"\",status=\"404\"} 1",
        );
        has(
            "flowgate_requests_total{tenant=\"acme\",trigger=\"X\",consumer=\"webshop\",status=\"200\"} 1",
        );
        has(
            "flowgate_requests_total{tenant=\"acme\",trigger=\"X\",consumer=\"webshop\",status=\"429\"} 1",
        );
        has(r#"consumer="a \"quoted\" label",status="200"} 1"#);
        assert!(!out.contains("consumer=\"erp\""), "no calls, no samples");
        assert!(out.contains(
            "flowgate_executions_total{tenant=\"acme\",trigger=\"X\",outcome=\"failed\"} 1"
        ));
        assert!(out.contains(
            "flowgate_execution_seconds_bucket{tenant=\"acme\",trigger=\"X\",le=\"0.001\"} 1"
        ));
        assert!(out.contains(
            "flowgate_execution_seconds_bucket{tenant=\"acme\",trigger=\"X\",le=\"10\"} 2"
        ));
        assert!(out.contains("flowgate_execution_seconds_count{tenant=\"acme\",trigger=\"X\"} 2"));
    }

    #[test]
    fn consumers_past_the_limit_are_counted_together() {
        let m = Metrics::default();
        let t = m.trigger("acme", "X");
        for i in 0..MAX_CONSUMERS + 3 {
            t.request(t.consumer(Some(&format!("c{i}"))), 200);
        }
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("consumer=\"c63\",status=\"200\"} 1"), "{out}");
        assert!(!out.contains("consumer=\"c64\""), "{out}");
        assert!(
            out.contains("consumer=\"_other\",status=\"200\"} 3"),
            "{out}"
        );
    }
}
