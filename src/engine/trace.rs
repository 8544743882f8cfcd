//! The step trace kept with every message: which step ran, how long, and what it said.

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

    /// Appends this entry as a JSON object (the same document as `to_json`),
    /// written directly with serde_json's writer: it runs for every step of every
    /// message, and building a `Value` first cost an allocation per field.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"step\":");
        put(out, &*self.step);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_bytes());
        out.extend_from_slice(b"\",\"offset_us\":");
        put(out, &self.offset_us);
        out.extend_from_slice(b",\"duration_us\":");
        put(out, &self.duration_us);
        out.extend_from_slice(if self.ok {
            b",\"outcome\":\"ok\""
        } else {
            b",\"outcome\":\"error\""
        });
        if let Some(name) = &self.name {
            out.extend_from_slice(b",\"name\":");
            put(out, &**name);
        }
        if let Some(detail) = &self.detail {
            out.extend_from_slice(if self.ok {
                b",\"detail\":"
            } else {
                b",\"error\":"
            });
            put(out, detail);
        }
        if let Some(vars) = &self.vars {
            out.extend_from_slice(b",\"vars_before\":");
            put(out, &vars.0);
            out.extend_from_slice(b",\"vars_after\":");
            put(out, &vars.1);
        }
        out.push(b'}');
    }
}

/// `v` as JSON text at the end of `out` (writing into a Vec cannot fail).
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_entries_are_the_json_documents() {
        let texts = [
            "plain",
            "",
            "quote \" and \\ back",
            "line\nfeed\ttab\r",
            "\u{1}\u{1f}\u{7f}",
            "ünï €",
        ];
        for (i, text) in texts.iter().enumerate() {
            let entry = TraceEntry {
                step: Arc::from(*text),
                name: Some(Arc::from(format!("n{text}"))),
                kind: "set",
                offset_us: i as u64 * 1_000_003,
                duration_us: u64::MAX - i as u64,
                ok: i % 2 == 0,
                detail: Some(format!("d{text}")),
                vars: (i == 3).then(|| Box::new((json!({"a": text}), json!([1, "x"])))),
            };
            let mut out = Vec::new();
            entry.write_json(&mut out);
            let out = String::from_utf8(out).unwrap();
            let parsed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(parsed, entry.to_json(), "{out}");
        }
    }
}
