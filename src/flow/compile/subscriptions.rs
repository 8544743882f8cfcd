//! `subscriptions:` of `_tenant.yaml`: outbound event webhooks. Secrets come from
//! the server's environment (`${VAR}`); a missing variable is a load error.

use serde_saphyr::Spanned;

use crate::domain::EventKind;
use crate::flow::model::Subscription;
use crate::flow::raw::RawSubscription;

use super::cx::FileCx;

/// Replaces every `${VAR}` with the variable's value.
fn expand(cx: &mut FileCx<'_>, s: &Spanned<String>, what: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s.value.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            cx.error(
                s.referenced,
                format!("{what}: `${{` without a closing `}}`"),
            );
            return None;
        };
        let var = &rest[start + 2..start + end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => {
                cx.error(
                    s.referenced,
                    format!("{what}: environment variable `{var}` is not set"),
                );
                return None;
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

pub(super) fn compile(
    cx: &mut FileCx<'_>,
    raw: Vec<Spanned<RawSubscription>>,
) -> Vec<Subscription> {
    let mut out: Vec<Subscription> = Vec::new();
    for s in raw {
        let s = s.value;
        let name = s.name.value.clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            cx.error(
                s.name.referenced,
                format!("subscription name `{name}` may only contain letters, digits, `_` and `-`"),
            );
        }
        if out.iter().any(|o| o.name == name) {
            cx.error(
                s.name.referenced,
                format!("subscription `{name}` is declared twice"),
            );
        }
        let url = s.url.value.clone();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            cx.error(
                s.url.referenced,
                format!("subscription `{name}`: url must start with https:// (or http:// where the settings allow it)"),
            );
        }
        let mut events = Vec::new();
        for e in &s.events {
            let kinds = event_kinds(&e.value);
            if kinds.is_empty() {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                cx.error(
                    e.referenced,
                    format!(
                        "unknown event `{}` (one of {}, or `message.*` for every message event)",
                        e.value,
                        known.join(", ")
                    ),
                );
            }
            for k in kinds {
                if !events.contains(&k) {
                    events.push(k);
                }
            }
        }
        if s.events.is_empty() {
            cx.error(
                s.name.referenced,
                format!("subscription `{name}` lists no `events`"),
            );
        }
        let what = format!("subscription `{name}`");
        let basic_auth = s.basic_auth.and_then(|b| {
            let password = expand(cx, &b.password, &what)?;
            Some((b.username.value, password))
        });
        let secret = s.secret.and_then(|v| expand(cx, &v, &what));
        out.push(Subscription {
            name,
            url,
            events,
            basic_auth,
            secret,
            enabled: s.enabled,
        });
    }
    out
}

/// The events one entry of `events:` names: one event by its name, or with
/// `message.*` (`lane.*`, `flow.*`) every event of that kind, those added in
/// later versions too. Empty for an unknown name.
fn event_kinds(name: &str) -> Vec<EventKind> {
    match name.strip_suffix(".*") {
        Some(kind) => EventKind::ALL
            .into_iter()
            .filter(|k| k.as_str().split('.').next() == Some(kind))
            .collect(),
        None => EventKind::parse(name).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_star_names_every_message_event_and_no_other() {
        let all = event_kinds("message.*");
        for k in [
            EventKind::MessageSucceeded,
            EventKind::MessageFailed,
            EventKind::MessageRejected,
            EventKind::MessageCancelled,
        ] {
            assert!(all.contains(&k), "{all:?}");
        }
        assert!(!all.contains(&EventKind::LaneBlocked));
        assert_eq!(event_kinds("lane.blocked"), vec![EventKind::LaneBlocked]);
        assert!(event_kinds("nothing.*").is_empty());
        assert!(event_kinds("message.exploded").is_empty());
    }
}
