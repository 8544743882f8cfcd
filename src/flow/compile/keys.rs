//! `api_keys:` of `_tenant.yaml`: pasted keys (`label: "<hash>"`) and keys with
//! public ids (`label: { keys: [{id, hash, expires}], rate, burst, quota }`),
//! each checked here so that `flowgate check` names the key that is wrong.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_saphyr::{Location, Spanned};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{Limits, Rate, parse_quota};
use crate::flow::model::KeyWithId;
use crate::flow::raw::{RawApiKey, RawConsumer};

use super::cx::FileCx;

/// `api_keys:` compiled.
#[derive(Default)]
pub struct ApiKeys {
    /// The keys without ids: (label, hash).
    pub pasted: Vec<(String, String)>,
    pub with_ids: Vec<KeyWithId>,
    /// label -> its limits, for the labels that have any.
    pub limits: IndexMap<String, Limits>,
}

/// The keys without ids (label, hash), those with ids, and the consumers'
/// limits. Problems are reported as diagnostics, each naming its key.
pub fn compile_api_keys(cx: &mut FileCx<'_>, raw: IndexMap<String, Spanned<RawApiKey>>) -> ApiKeys {
    let mut pasted = Vec::new();
    let mut with_ids: Vec<KeyWithId> = Vec::new();
    let mut limits = IndexMap::new();
    // id -> the label that declared it first
    let mut seen: HashMap<String, String> = HashMap::new();
    for (label, entry) in raw {
        if label.is_empty()
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            cx.error(
                entry.referenced,
                format!("api key label `{label}` may only contain letters, digits, `_` and `-`"),
            );
        }
        match entry.value {
            RawApiKey::Hash(hash) => {
                check_hash(
                    cx,
                    entry.referenced,
                    &format!("api key `{label}`"),
                    &label,
                    &hash,
                );
                pasted.push((label, hash));
            }
            RawApiKey::Consumer(consumer) => {
                let consumer = *consumer;
                if let Some(l) = compile_limits(cx, &label, &consumer) {
                    limits.insert(label.clone(), l);
                }
                let keys = compile_consumer(cx, &label, consumer, entry.referenced, &mut seen);
                with_ids.extend(keys);
            }
        }
    }
    ApiKeys {
        pasted,
        with_ids,
        limits,
    }
}

/// `rate:` (with `burst:`) and `quota:` of a consumer; `None` when it has
/// neither (or they are wrong, which is said).
fn compile_limits(cx: &mut FileCx<'_>, label: &str, consumer: &RawConsumer) -> Option<Limits> {
    let text = |v: &Spanned<serde_json::Value>| match &v.value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rate = consumer
        .rate
        .as_ref()
        .and_then(|r| match Rate::parse(&text(r)) {
            Ok(rate) => Some(rate),
            Err(e) => {
                cx.error(r.referenced, format!("api key `{label}`: `rate`: {e}"));
                None
            }
        });
    let burst = consumer.burst.as_ref().and_then(|b| {
        let n = b
            .value
            .as_u64()
            .filter(|n| (1..=u64::from(u32::MAX)).contains(n));
        if n.is_none() {
            cx.error(
                b.referenced,
                format!("api key `{label}`: `burst` is a whole number of requests, at least 1"),
            );
        } else if consumer.rate.is_none() {
            cx.error(
                b.referenced,
                format!("api key `{label}`: `burst` needs a `rate`"),
            );
        }
        n.map(|n| n as u32)
    });
    let quota = consumer
        .quota
        .as_ref()
        .and_then(|q| match parse_quota(&text(q)) {
            Ok(n) => Some(n),
            Err(e) => {
                cx.error(q.referenced, format!("api key `{label}`: `quota`: {e}"));
                None
            }
        });
    let rate = rate.map(|r| (r, burst.unwrap_or_else(|| r.one_second())));
    (rate.is_some() || quota.is_some()).then_some(Limits { rate, quota })
}

fn compile_consumer(
    cx: &mut FileCx<'_>,
    label: &str,
    consumer: RawConsumer,
    at: Location,
    seen: &mut HashMap<String, String>,
) -> Vec<KeyWithId> {
    if consumer.keys.value.is_empty() {
        cx.error(
            at,
            format!("api key `{label}`: `keys` is empty; make one with `flowgate key new --label {label}`"),
        );
    }
    let mut keys = Vec::new();
    for key in consumer.keys.value {
        let key = key.value;
        let id = key.id.value;
        let what = format!("api key `{label}` id `{id}`");
        // A key whose id is wrong or taken is left out; one with another
        // problem is kept, so that triggers listing its label are still checked.
        let mut valid = true;
        if !crate::domain::key_id::is_id(&id) {
            cx.error(
                key.id.referenced,
                format!("{what}: an id is 8 characters of `a-z` and `2-7` (as `flowgate key new` makes them)"),
            );
            valid = false;
        } else if let Some(first) = seen.get(&id) {
            cx.error(
                key.id.referenced,
                format!("{what}: the id is declared already (under `{first}`); each key needs its own id"),
            );
            valid = false;
        } else {
            seen.insert(id.clone(), label.to_owned());
        }
        check_hash(cx, key.hash.referenced, &what, label, &key.hash.value);
        let expires = match key.expires {
            None => None,
            Some(e) => match OffsetDateTime::parse(e.value.trim(), &Rfc3339) {
                Ok(at) => Some(at),
                Err(err) => {
                    cx.error(
                        e.referenced,
                        format!("{what}: `expires`: `{}` is not an RFC 3339 time like 2027-06-30T00:00:00Z ({err})", e.value),
                    );
                    None
                }
            },
        };
        if valid {
            keys.push(KeyWithId::new(
                id,
                label.to_owned(),
                key.hash.value,
                expires,
            ));
        }
    }
    keys
}

/// Says what is wrong with `what`'s hash (of consumer `label`) unless it is
/// an argon2id PHC string.
fn check_hash(cx: &mut FileCx<'_>, at: Location, what: &str, label: &str, hash: &str) {
    if let Err(e) = argon2::password_hash::phc::PasswordHash::new(hash) {
        cx.error(
            at,
            format!("{what}: not a PHC hash string ({e}); make one with `flowgate key new --label {label}`"),
        );
    } else if !hash.starts_with("$argon2id$") {
        cx.error(at, format!("{what}: only argon2id hashes are accepted"));
    }
}
