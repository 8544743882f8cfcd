//! The admin API's documents (see `openapi.json`): times RFC 3339 with
//! microseconds, durations in milliseconds, ids as text.

use serde_json::{Value, json};

use crate::codec::input::InputError;
use crate::domain::{MessageId, MessageView, Micros, Outcome, format_rfc3339};
use crate::flow::{Auth, Diagnostic, Subscription, Trigger};
use crate::store::{BlockedLane, DeliveryView, MessageSummary};

use super::ApiError;

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

pub fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::BadRequest(vec![InputError { code, message }])
}

/// `2026-11-22T10:15:30Z` (or with fractions) -> microseconds.
pub fn parse_time(name: &str, s: &str) -> Result<Micros, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            bad(
                "invalid_parameter",
                format!("`{name}`: not an RFC 3339 time ({e})"),
            )
        })?;
    Ok((t.unix_timestamp_nanos() / 1000) as i64)
}

pub fn summary(m: &MessageSummary) -> Value {
    json!({
        "message_id": m.id.to_string(),
        "tenant": m.tenant.as_str(),
        "trigger": m.trigger.as_str(),
        "lane": m.lane,
        "status": m.status.as_str(),
        "received_at": format_rfc3339(m.received_at),
        "finished_at": m.finished_at.map(format_rfc3339),
        "duration_ms": m.finished_at.map(|f| ms(f - m.received_at)),
        "attempts": m.attempts,
        "response_status": m.response_status,
        "replay_of": m.replay_of.map(|r| r.to_string()),
        "blocking": m.blocking,
    })
}

pub fn detail(v: &MessageView, replay_of: Option<MessageId>, blocking: bool) -> Value {
    let attempts: Vec<Value> = v
        .attempts
        .iter()
        .map(|a| {
            json!({
                "number": a.number,
                "started_at": format_rfc3339(a.started_at),
                "finished_at": a.finished_at.map(format_rfc3339),
                "duration_ms": a.finished_at.map(|f| ms(f - a.started_at)),
                "outcome": a.outcome.map(Outcome::as_str),
                "error": a.error,
                "error_code": a.error_code,
            })
        })
        .collect();
    json!({
        "message_id": v.id.to_string(),
        "tenant": v.tenant.as_str(),
        "trigger": v.trigger.as_str(),
        "lane": v.lane,
        "mode": v.mode.as_str(),
        "status": v.status.as_str(),
        "received_at": format_rfc3339(v.received_at),
        "finished_at": v.finished_at.map(format_rfc3339),
        "duration_ms": v.finished_at.map(|f| ms(f - v.received_at)),
        "replay_of": replay_of.map(|r| r.to_string()),
        "blocking": blocking,
        "input": v.input,
        "trace": v.trace,
        "attempts": attempts,
        "response": v.response.as_ref().map(|r| json!({
            "status": r.status,
            "headers": r.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": r.body,
        })),
        "error": v.error,
    })
}

pub fn trigger(
    t: &Trigger,
    base: &str,
    counts: Value,
    problems: &[&Diagnostic],
    lanes: &[&BlockedLane],
) -> Value {
    let auth = match &t.auth {
        Auth::None => json!({"none": true}),
        Auth::ApiKeys(labels) => json!({"api_keys": labels}),
        Auth::Basic(users) => json!({"basic": users}),
        // The rule without its secret.
        Auth::Hmac(rule) => json!({"hmac": {
            "header": rule.header,
            "timestamp_header": rule.timestamp_header,
        }}),
    };
    json!({
        "tenant": t.key.tenant.as_str(),
        "trigger": t.key.trigger.as_str(),
        "url": format!("{base}/{}/{}", t.key.tenant, t.key.trigger),
        "description": t.description,
        "methods": t.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "auth": auth,
        "enabled": t.enabled,
        "mode": t.response.mode.as_str(),
        "timeout_ms": t.response.timeout.as_millis() as u64,
        "ordered": t.delivery.ordered,
        "ordering_key": t.delivery.ordering_key.as_ref().map(|e| e.source()),
        "concurrency": t.delivery.concurrency,
        "retry": t.delivery.retry.iter().map(|d| humantime::format_duration(*d).to_string()).collect::<Vec<_>>(),
        "load_error": problems.first().map(|d| d.to_string()),
        "load_errors": problems.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "counts": counts,
        "blocked_lanes": lanes.iter().map(|l| lane(l)).collect::<Vec<_>>(),
    })
}

pub fn lane(l: &BlockedLane) -> Value {
    json!({
        "tenant": l.key.tenant.as_str(),
        "trigger": l.key.trigger.as_str(),
        "lane": l.lane,
        "message_id": l.message_id.to_string(),
        "status": l.status.as_str(),
        "since": l.since.map(format_rfc3339),
    })
}

pub fn subscription(s: &Subscription) -> Value {
    json!({
        "name": s.name,
        "url": s.url,
        "events": s.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "enabled": s.enabled,
        "basic_auth": s.basic_auth.is_some(),
        "signed": s.secret.is_some(),
    })
}

pub fn delivery(d: &DeliveryView, full: bool) -> Value {
    let mut v = json!({
        "delivery_id": d.id.to_string(),
        "tenant": d.tenant.as_str(),
        "subscription": d.subscription,
        "event": d.event,
        "message_id": d.message_id.map(|m| m.to_string()),
        "created_at": format_rfc3339(d.created_at),
        "status": d.status.as_str(),
        "next_attempt_at": (d.status == crate::store::DeliveryStatus::Pending).then(|| format_rfc3339(d.next_at)),
        "attempts": d.attempts.iter().map(|a| json!({
            "number": a.number,
            "at": format_rfc3339(a.at),
            "status": a.status,
            "headers": if full { json!(a.headers) } else { Value::Null },
            "body": if full { json!(a.body) } else { Value::Null },
            "error": a.error,
        })).collect::<Vec<_>>(),
    });
    if full {
        v["payload"] = serde_json::from_str(&d.payload).unwrap_or(Value::Null);
    }
    v
}
