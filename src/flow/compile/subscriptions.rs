//! `subscriptions:` of `_tenant.yaml`: outbound event webhooks. Secrets come from
//! the server's environment (`${VAR}`); a missing variable is a load error. The
//! rules are `domain::subscription`'s, which the admin API checks too.

use serde_saphyr::Spanned;

use crate::domain::{
    self, EventPattern, Include, Subscription, SubscriptionError, SubscriptionSource, TenantName,
    TriggerName,
};
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
    tenant: &TenantName,
    raw: Vec<Spanned<RawSubscription>>,
    allow_http: bool,
) -> Vec<Subscription> {
    let mut out: Vec<Subscription> = Vec::new();
    for s in raw {
        let s = s.value;
        let name = s.name.value.clone();
        if let Err(e) = domain::check_name(&name) {
            cx.error(s.name.referenced, e.to_string());
        }
        if out.iter().any(|o| o.name == name) {
            cx.error(
                s.name.referenced,
                format!("subscription `{name}` is declared twice"),
            );
        }
        let what = format!("subscription `{name}`");
        let url = s.url.value.clone();
        if let Err(e) = domain::check_url(&url, allow_http) {
            cx.error(s.url.referenced, format!("{what}: {e}"));
        }
        let mut events = Vec::new();
        for e in &s.events {
            match EventPattern::parse(&e.value) {
                Ok(p) if !events.contains(&p) => events.push(p),
                Ok(_) => {}
                Err(why) => cx.error(e.referenced, why.to_string()),
            }
        }
        if s.events.is_empty() {
            cx.error(
                s.name.referenced,
                format!("subscription `{name}` lists no `events`"),
            );
        }
        let triggers = s.triggers.map(|list| {
            list.into_iter()
                .filter_map(|t| match TriggerName::parse(&t.value) {
                    Ok(_) => Some(t.value),
                    Err(_) => {
                        let e = SubscriptionError::Trigger(t.value.clone());
                        cx.error(t.referenced, format!("{what}: {e}"));
                        None
                    }
                })
                .collect()
        });
        let include = match &s.include {
            None => Include::Ids,
            Some(i) => Include::parse(&i.value).unwrap_or_else(|e| {
                cx.error(i.referenced, format!("{what}: {e}"));
                Include::Ids
            }),
        };
        let mut retry = None;
        if let Some(waits) = &s.retry {
            for w in waits {
                if let Err(e) = domain::parse_retry([w.value.as_str()]) {
                    cx.error(w.referenced, format!("{what}: {e}"));
                }
            }
            match domain::parse_retry(waits.iter().map(|w| w.value.as_str())) {
                Ok(r) => retry = Some(r),
                Err(e @ SubscriptionError::RetryBounds) => {
                    cx.error(s.name.referenced, format!("{what}: {e}"))
                }
                Err(_) => {}
            }
        }
        if let Some(d) = &s.description
            && let Err(e) = crate::domain::check_description(&d.value)
        {
            cx.error(d.referenced, e.to_string());
        }
        let basic_auth = s.basic_auth.and_then(|b| {
            let password = expand(cx, &b.password, &what)?;
            Some((b.username.value, password))
        });
        let secret = s.secret.and_then(|v| expand(cx, &v, &what));
        out.push(Subscription {
            id: domain::file_subscription_id(tenant, &name),
            tenant: tenant.clone(),
            name,
            description: s.description.map(|d| d.value),
            url,
            events,
            triggers,
            basic_auth,
            secret,
            include,
            retry,
            enabled: s.enabled,
            source: SubscriptionSource::File,
            created_at: 0,
            updated_at: 0,
        });
    }
    out
}
