//! Who may call a trigger: the caller's address against `allow_ips` (through
//! trusted proxies only), then its credentials — an API key, HTTP Basic, or an
//! HMAC signature of the raw body, which can only be checked once the body is
//! read. An API key's consumer is counted and held against its limits here.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use base64::Engine;
use serde_json::{Value, json};

use crate::auth::gate::Client;
use crate::auth::key_cache::Verdict;
use crate::auth::limits::RateLimitHeaders;
use crate::domain::{Cidr, HmacRule};
use crate::flow::{Auth, Tenant, Trigger};

use super::error::Challenge;
use super::{ApiError, AppState};

/// The outcome of the checks made before the body is read.
pub enum Admitted {
    /// The document's `.auth`.
    Done(Value),
    /// A signature still to be checked against the body.
    Signed(Arc<HmacRule>),
}

/// The caller's address: the peer, or — when the peer is a trusted proxy — the
/// rightmost `X-Forwarded-For` address that is not itself a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !Cidr::any_contains(trusted, &peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // An address we cannot read: stop at the last one we could.
            break;
        };
        client = ip;
        if !Cidr::any_contains(trusted, &ip) {
            break;
        }
    }
    Some(client)
}

/// A secret sent in its own `header`, or else as `Authorization: Bearer`
/// (API keys in `X-Api-Key`, admin tokens in `X-Admin-Token`).
pub fn presented<'r>(req: &'r HttpRequest, header: &str) -> Option<&'r str> {
    if let Some(k) = req.headers().get(header).and_then(|v| v.to_str().ok()) {
        return Some(k.trim()).filter(|k| !k.is_empty());
    }
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Address and credential checks that need no body, and an API key's
/// consumer held against its limits: `limits` is set to what the answer's
/// `RateLimit-*` headers say (whatever the answer is) for a consumer with any.
pub async fn admit(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    trigger: &Trigger,
    limits: &mut Option<RateLimitHeaders>,
) -> Result<Admitted, ApiError> {
    let ip = client_ip(req, &state.settings.trusted_proxies);
    let client = Client::new(ip);
    if !trigger.allow_ips.is_empty()
        && !ip.is_some_and(|ip| Cidr::any_contains(&trigger.allow_ips, &ip))
    {
        return Err(ApiError::Forbidden(format!(
            "calls from {} are not allowed for this trigger",
            ip.map_or("an unknown address".to_owned(), |ip| ip.to_string())
        )));
    }
    match &trigger.auth {
        Auth::None => Ok(Admitted::Done(json!({"method": "none"}))),
        Auth::ApiKeys(labels) => {
            let usage = &state.usage;
            let Some(key) = presented(req, "x-api-key") else {
                usage.unauthorized(tenant, None);
                return Err(ApiError::Unauthorized(
                    "missing API key: send it in the X-Api-Key header or as Authorization: Bearer <key>"
                        .into(),
                ));
            };
            match state.keys.identify(tenant, key, client).await? {
                Verdict::Known { label, id } if labels.contains(&label) => {
                    let admission = usage.admit(tenant, &label, id.as_deref());
                    *limits = admission.headers;
                    let mut auth = json!({"method": "api_key", "label": label});
                    if let Some(id) = id {
                        auth["key_id"] = json!(id);
                    }
                    if let Some(why) = admission.refused {
                        return Err(ApiError::Limited(why, Box::new(auth)));
                    }
                    Ok(Admitted::Done(auth))
                }
                Verdict::Known { label, .. } => {
                    usage.unauthorized(tenant, Some(&label));
                    Err(ApiError::Unauthorized(
                        "this API key may not call this trigger".into(),
                    ))
                }
                Verdict::Expired { id, label } => {
                    usage.unauthorized(tenant, Some(&label));
                    Err(ApiError::KeyExpired(id))
                }
                Verdict::Unknown => {
                    // A declared id with a wrong secret is its consumer's 401.
                    let declared =
                        crate::auth::keys::key_id(key).and_then(|id| tenant.key_ids.get(id));
                    usage.unauthorized(tenant, declared.map(|k| k.label.as_str()));
                    Err(ApiError::Unauthorized("invalid API key".into()))
                }
            }
        }
        Auth::Basic(users) => {
            let refuse = |why: &str| ApiError::Challenge {
                scheme: Challenge::Basic,
                why: why.into(),
            };
            let (user, password) = basic_credentials(req)
                .ok_or_else(|| refuse("missing credentials: use HTTP Basic auth"))?;
            // Checked whoever the user is, so that an unknown or unlisted user
            // takes the time a wrong password does.
            let matched = state
                .keys
                .check_basic(tenant, &user, &password, client)
                .await?;
            if matched && users.contains(&user) {
                Ok(Admitted::Done(json!({"method": "basic", "user": user})))
            } else {
                Err(refuse("invalid user or password"))
            }
        }
        Auth::Hmac(rule) => Ok(Admitted::Signed(rule.clone())),
    }
}

/// Finishes `admit` once what is signed is known: the raw body of a call, or
/// the path of a status URL.
pub fn verify_signed(
    req: &HttpRequest,
    admitted: Admitted,
    signed: crate::auth::signature::Signed<'_>,
) -> Result<Value, ApiError> {
    let rule = match admitted {
        Admitted::Done(auth) => return Ok(auth),
        Admitted::Signed(rule) => rule,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    crate::auth::signature::verify(&rule, header, signed, now)
        .map(|()| json!({"method": "hmac", "header": rule.header}))
        .map_err(|e| ApiError::Challenge {
            scheme: Challenge::Signature(rule.header.clone()),
            why: e.to_string(),
        })
}
