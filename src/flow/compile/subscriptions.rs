//! `subscriptions:` of `_tenant.yaml`: outbound event webhooks. Secrets come from
//! the server's environment (`${VAR}`); a missing variable is a load error.

use serde_saphyr::Spanned;

use crate::domain::{EventKind, business_event_name};
use crate::flow::model::{Include, Subscription};
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
        let mut business: Vec<String> = Vec::new();
        for e in &s.events {
            if let Some(pattern) = business_pattern(&e.value) {
                if !business.contains(&pattern) {
                    business.push(pattern);
                }
                continue;
            }
            let kinds = event_kinds(&e.value);
            if kinds.is_empty() {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                cx.error(
                    e.referenced,
                    format!(
                        "unknown event `{}` (one of {}, `message.*` for every message event, or a business event a flow emits, as `order.created` or `order.*`)",
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
        let include = match s.include.as_ref().map(|i| i.value.as_str()) {
            None | Some("ids") => Include::Ids,
            Some("full") => Include::Full,
            Some(other) => {
                if let Some(i) = &s.include {
                    cx.error(
                        i.referenced,
                        format!(
                            "subscription `{name}`: include must be `ids` or `full`, not `{other}`"
                        ),
                    );
                }
                Include::Ids
            }
        };
        out.push(Subscription {
            name,
            url,
            events,
            business,
            include,
            basic_auth,
            secret,
            enabled: s.enabled,
        });
    }
    out
}

/// A business event (or `prefix.*` of them) an entry of `events:` names, as
/// `Subscription::business` keeps it: `order.*` as `order.`. Names under
/// flowgate's own prefixes are not business events.
fn business_pattern(name: &str) -> Option<String> {
    match name.strip_suffix(".*") {
        Some(prefix) => {
            // `order.*` and `order.line.*`: the prefix is a name's first words.
            let probe = format!("{prefix}.x");
            business_event_name(&probe)
                .ok()
                .map(|()| format!("{prefix}."))
        }
        None => business_event_name(name).ok().map(|()| name.to_owned()),
    }
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

    #[test]
    fn business_events_are_listed_exactly_or_by_prefix_and_never_under_reserved_ones() {
        assert_eq!(
            business_pattern("order.created").as_deref(),
            Some("order.created")
        );
        assert_eq!(business_pattern("order.*").as_deref(), Some("order."));
        assert_eq!(
            business_pattern("order.line.*").as_deref(),
            Some("order.line.")
        );
        assert_eq!(business_pattern("message.exploded"), None);
        assert_eq!(business_pattern("message.*"), None);
        assert_eq!(business_pattern("Order.created"), None);
        assert_eq!(business_pattern("order"), None);
    }
}
