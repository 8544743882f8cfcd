//! The step trace kept with every message: which step ran, how long, and what it said.

use std::time::Duration;

use serde_json::{Value, json};

use crate::domain::{Micros, format_rfc3339};
use crate::flow::Step;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    pub step: String,
    pub name: Option<String>,
    pub kind: &'static str,
    pub started_at: Micros,
    pub duration_us: u64,
    pub ok: bool,
    pub detail: Option<String>,
}

impl TraceEntry {
    pub fn new(step: &Step, started_at: Micros, took: Duration) -> Self {
        Self {
            step: step.path.clone(),
            name: step.name.clone(),
            kind: step.kind.kind_name(),
            started_at,
            duration_us: took.as_micros() as u64,
            ok: true,
            detail: None,
        }
    }

    pub fn ok(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }

    pub fn failed(mut self, error: String) -> Self {
        self.ok = false;
        self.detail = Some(error);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "step": self.step,
            "kind": self.kind,
            "started_at": format_rfc3339(self.started_at),
            "duration_us": self.duration_us,
            "outcome": if self.ok { "ok" } else { "error" },
        });
        if let Some(name) = &self.name {
            v["name"] = json!(name);
        }
        if let Some(detail) = &self.detail {
            v[if self.ok { "detail" } else { "error" }] = json!(detail);
        }
        v
    }
}
