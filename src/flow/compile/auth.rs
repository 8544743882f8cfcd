//! `auth:` of a trigger: API key labels, Basic users, an HMAC signature (with
//! the presets of common senders) or none, and the addresses allowed to call.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::connect::{EnvLookup, Secrets};
use crate::domain::{Cidr, HmacAlgorithm, HmacRule, SignatureEncoding, SignatureScheme};
use crate::flow::model::{Auth, Tenant};
use crate::flow::raw::{RawAuth, RawHmac};

use super::cx::{FileCx, is_header_name, list_or_none};

/// How old a signed timestamp may be by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// `auth:` of a trigger -> who may call it, and from which addresses.
pub(super) fn compile_auth(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Option<Spanned<RawAuth>>,
    env: &EnvLookup,
) -> (Auth, Vec<Cidr>) {
    let mut allow_ips = Vec::new();
    let auth = match raw {
        None => {
            cx.error_at(1, 1, "missing `auth`: list `api_keys` labels from _tenant.yaml, or set `none: true` to leave the trigger open");
            Auth::None
        }
        Some(a) => {
            let loc = a.referenced;
            let a = a.value;
            allow_ips = compile_allow_ips(cx, a.allow_ips, loc);
            let chosen: Vec<&str> = [
                ("api_keys", a.api_keys.is_some()),
                ("none: true", a.none == Some(true)),
                ("basic", a.basic.is_some()),
                ("hmac", a.hmac.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, p)| p.then_some(k))
            .collect();
            if chosen.len() > 1 {
                cx.error(
                    loc,
                    format!("`auth` has {}; choose one", chosen.join(" and ")),
                );
            }
            if let Some(labels) = a.api_keys.filter(|l| !l.is_empty()) {
                let listed = tenant.key_labels();
                Auth::ApiKeys(known(
                    cx,
                    labels,
                    &listed,
                    "api key label",
                    "labels",
                    tenant,
                ))
            } else if let Some(users) = a.basic.filter(|u| !u.is_empty()) {
                let listed: Vec<&str> =
                    tenant.basic_users.iter().map(|(u, _)| u.as_str()).collect();
                Auth::Basic(known(
                    cx,
                    users,
                    &listed,
                    "basic user",
                    "basic_users",
                    tenant,
                ))
            } else if let Some(h) = a.hmac {
                match compile_hmac(cx, h, env) {
                    Some(rule) => Auth::Hmac(Arc::new(rule)),
                    None => Auth::None,
                }
            } else if a.none == Some(true) {
                Auth::None
            } else {
                cx.error(
                    loc,
                    "`auth` needs `api_keys: [label, ...]`, `basic: [user, ...]`, `hmac: {...}` or `none: true`",
                );
                Auth::None
            }
        }
    };
    (auth, allow_ips)
}

/// The names a trigger lists (API key labels, Basic users), each checked
/// against those `_tenant.yaml` defines.
fn known(
    cx: &mut FileCx<'_>,
    names: Vec<Spanned<String>>,
    listed: &[&str],
    what: &str,
    field: &str,
    tenant: &Tenant,
) -> Vec<String> {
    for n in &names {
        if !listed.contains(&n.value.as_str()) {
            cx.error(
                n.referenced,
                format!(
                    "unknown {what} `{}` ({field} in {}/_tenant.yaml: {})",
                    n.value,
                    tenant.name,
                    list_or_none(listed)
                ),
            );
        }
    }
    names.into_iter().map(|n| n.value).collect()
}

/// `auth: hmac:` with its preset applied.
fn compile_hmac(cx: &mut FileCx<'_>, raw: Spanned<RawHmac>, env: &EnvLookup) -> Option<HmacRule> {
    let loc = raw.referenced;
    let raw = raw.value;
    let before = cx.diagnostics.len();
    let mut rule = HmacRule {
        scheme: SignatureScheme::Plain,
        header: String::new(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Hex,
        prefix: String::new(),
        secret: Vec::new(),
        timestamp_header: None,
        tolerance: DEFAULT_TOLERANCE,
    };
    if let Some(p) = &raw.preset {
        match p.value.as_str() {
            "duro" => {
                rule.header = "x-duro-signature".into();
                rule.prefix = "sha256=".into();
            }
            "github" => {
                rule.header = "x-hub-signature-256".into();
                rule.prefix = "sha256=".into();
            }
            "stripe" => {
                rule.scheme = SignatureScheme::Stripe;
                rule.header = "stripe-signature".into();
            }
            other => cx.error(
                p.referenced,
                format!("unknown preset `{other}` (duro, github or stripe)"),
            ),
        }
    }
    if let Some(h) = &raw.header {
        if is_header_name(&h.value) {
            rule.header = h.value.to_ascii_lowercase();
        } else {
            cx.error(
                h.referenced,
                format!("`{}` is not a valid header name", h.value),
            );
        }
    }
    if raw.preset.is_none() && raw.header.is_none() {
        cx.error(
            loc,
            "`hmac` needs `header:` (the signature's header) or a `preset:`",
        );
    }
    if let Some(a) = &raw.algorithm {
        rule.algorithm = match a.value.as_str() {
            "sha256" => HmacAlgorithm::Sha256,
            "sha1" => HmacAlgorithm::Sha1,
            "sha512" => HmacAlgorithm::Sha512,
            other => {
                cx.error(
                    a.referenced,
                    format!("`algorithm` is sha256, sha1 or sha512, not `{other}`"),
                );
                HmacAlgorithm::Sha256
            }
        };
    }
    if let Some(e) = &raw.encoding {
        rule.encoding = match e.value.as_str() {
            "hex" => SignatureEncoding::Hex,
            "base64" => SignatureEncoding::Base64,
            other => {
                cx.error(
                    e.referenced,
                    format!("`encoding` is hex or base64, not `{other}`"),
                );
                SignatureEncoding::Hex
            }
        };
    }
    if let Some(p) = &raw.prefix {
        rule.prefix = p.value.clone();
    }
    if let Some(t) = &raw.timestamp_header {
        if rule.scheme == SignatureScheme::Stripe {
            cx.error(t.referenced, "the stripe preset reads its timestamp from Stripe-Signature; `timestamp_header` does not apply");
        } else if is_header_name(&t.value) {
            rule.timestamp_header = Some(t.value.to_ascii_lowercase());
        } else {
            cx.error(
                t.referenced,
                format!("`{}` is not a valid header name", t.value),
            );
        }
    }
    if let Some(t) = &raw.tolerance {
        if let Some(d) = cx.positive_duration(t, "tolerance") {
            rule.tolerance = d;
        }
        if rule.scheme != SignatureScheme::Stripe && raw.timestamp_header.is_none() {
            cx.error(
                t.referenced,
                "`tolerance` needs `timestamp_header` (or the stripe preset)",
            );
        }
    }
    let mut ignored = Secrets::default();
    if let Some(secret) = cx.expand(&raw.secret, "secret", env, &mut ignored) {
        if secret.is_empty() {
            cx.error(raw.secret.referenced, "the hmac `secret` is empty");
        }
        rule.secret = secret.into_bytes();
    }
    (cx.diagnostics.len() == before).then_some(rule)
}

fn compile_allow_ips(
    cx: &mut FileCx<'_>,
    raw: Option<Vec<Spanned<String>>>,
    loc: Location,
) -> Vec<Cidr> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.is_empty() {
        cx.error(
            loc,
            "`allow_ips` is empty: it would refuse every caller; remove it to allow any address",
        );
    }
    raw.iter()
        .filter_map(|c| match c.value.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                cx.error(c.referenced, format!("`allow_ips`: {e}"));
                None
            }
        })
        .collect()
}
