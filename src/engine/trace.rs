//! The step trace kept with every message: which step ran, how long, and what it said.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::flow::Step;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    pub step: Arc<str>,
    pub name: Option<Arc<str>>,
    pub kind: &'static str,
    /// Microseconds from the start of the execution to the start of the step.
    pub offset_us: u64,
    pub duration_us: u64,
    pub ok: bool,
    pub detail: Option<String>,
    /// With `trace: full`: the variables before and after the step.
    pub vars: Option<Box<(Value, Value)>>,
}

impl TraceEntry {
    pub fn new(step: &Step, offset: Duration, took: Duration) -> Self {
        Self {
            step: step.path.clone(),
            name: step.name.clone(),
            kind: step.kind.kind_name(),
            offset_us: offset.as_micros() as u64,
            duration_us: took.as_micros() as u64,
            ok: true,
            detail: None,
            vars: None,
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
            "step": &*self.step,
            "kind": self.kind,
            "offset_us": self.offset_us,
            "duration_us": self.duration_us,
            "outcome": if self.ok { "ok" } else { "error" },
        });
        if let Some(name) = &self.name {
            v["name"] = json!(&**name);
        }
        if let Some(detail) = &self.detail {
            v[if self.ok { "detail" } else { "error" }] = json!(detail);
        }
        if let Some(vars) = &self.vars {
            v["vars_before"] = vars.0.clone();
            v["vars_after"] = vars.1.clone();
        }
        v
    }

    /// Appends this entry as a JSON object (the same document as `to_json`).
    pub fn write_json(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"step\":{},\"kind\":\"{}\",\"offset_us\":{},\"duration_us\":{},\"outcome\":\"{}\"",
            json!(&*self.step),
            self.kind,
            self.offset_us,
            self.duration_us,
            if self.ok { "ok" } else { "error" }
        );
        if let Some(name) = &self.name {
            let _ = write!(out, ",\"name\":{}", json!(&**name));
        }
        if let Some(detail) = &self.detail {
            let key = if self.ok { "detail" } else { "error" };
            let _ = write!(out, ",\"{key}\":{}", json!(detail));
        }
        if let Some(vars) = &self.vars {
            let _ = write!(out, ",\"vars_before\":{},\"vars_after\":{}", vars.0, vars.1);
        }
        out.push('}');
    }
}
