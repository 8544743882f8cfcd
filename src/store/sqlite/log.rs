//! A message's attempt log and other JSON as the embedded store keeps it: text.

use crate::domain::AttemptRecord;

pub(super) fn attempt_json(a: &AttemptRecord) -> String {
    json_text(a)
}

pub(super) fn parse_attempts(log: &str) -> Vec<AttemptRecord> {
    let items: Vec<serde_json::Value> = serde_json::from_str(log).unwrap_or_default();
    items.iter().map(AttemptRecord::from_json).collect()
}

pub(super) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
