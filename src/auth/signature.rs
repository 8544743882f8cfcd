//! Signed webhooks: HMAC over the exact raw body (and a timestamp, when the sender
//! signs one), compared in constant time, with replays refused by the age of the
//! signed timestamp. Presets in `flow::compile::auth` fill in the layouts of common
//! senders; this module only checks one request against one rule.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::domain::{HmacAlgorithm, HmacRule, SignatureEncoding, SignatureScheme};

/// What a status URL's signature covers before the path: signatures are bound
/// to their use, so a signature made for a status URL is never a body's, nor
/// the reverse (a body that begins with this is refused).
pub const STATUS_URL_CONTEXT: &[u8] = b"flowgate:status-url:";

/// What a request's signature is checked against.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// A webhook's raw body, as its sender signs it.
    Body(&'a [u8]),
    /// A status URL's path (`/<tenant>/<trigger>/messages/<id>`), signed after
    /// [`STATUS_URL_CONTEXT`].
    StatusUrl(&'a str),
}

impl Signed<'_> {
    /// The bytes the signature covers (after the timestamp, when one is signed).
    fn parts(&self) -> Result<[&[u8]; 2], SignatureError> {
        match self {
            Self::Body(body) if body.starts_with(STATUS_URL_CONTEXT) => {
                Err(SignatureError::Mismatch)
            }
            Self::Body(body) => Ok([b"", body]),
            Self::StatusUrl(path) => Ok([STATUS_URL_CONTEXT, path.as_bytes()]),
        }
    }
}

/// Why a signature was refused (said to the caller: nothing here is secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing the {0} header")]
    Missing(String),
    #[error("the {0} header is malformed")]
    Malformed(String),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signed timestamp is outside the allowed window (a replay or a wrong clock)")]
    Stale,
}

fn tag<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The HMAC of `parts` concatenated.
pub fn compute(algorithm: HmacAlgorithm, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match algorithm {
        HmacAlgorithm::Sha1 => tag::<Hmac<sha1::Sha1>>(secret, parts),
        HmacAlgorithm::Sha256 => tag::<Hmac<sha2::Sha256>>(secret, parts),
        HmacAlgorithm::Sha512 => tag::<Hmac<sha2::Sha512>>(secret, parts),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn matches(rule: &HmacRule, parts: &[&[u8]], presented: &[u8]) -> bool {
    let expected = compute(rule.algorithm, &rule.secret, parts);
    !expected.is_empty() && bool::from(expected.as_slice().ct_eq(presented))
}

/// Unix seconds (or milliseconds, told apart by size) within `tolerance` of `now`.
fn fresh(ts: &str, now: i64, rule: &HmacRule, header: &str) -> Result<(), SignatureError> {
    let mut t: i64 = ts
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed(header.to_owned()))?;
    if t > 100_000_000_000 {
        t /= 1000;
    }
    if now.abs_diff(t) > rule.tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Checks one request. `header` reads a request header by lower-case name;
/// `now` is unix seconds.
pub fn verify(
    rule: &HmacRule,
    header: impl Fn(&str) -> Option<String>,
    signed: Signed<'_>,
    now: i64,
) -> Result<(), SignatureError> {
    let value = header(&rule.header).ok_or_else(|| SignatureError::Missing(rule.header.clone()))?;
    let [context, content] = signed.parts()?;
    match rule.scheme {
        SignatureScheme::Plain => {
            let sig = value
                .trim()
                .strip_prefix(rule.prefix.as_str())
                .ok_or_else(|| SignatureError::Malformed(rule.header.clone()))?;
            let presented = match rule.encoding {
                SignatureEncoding::Hex => unhex(&sig.to_ascii_lowercase()),
                SignatureEncoding::Base64 => {
                    base64::engine::general_purpose::STANDARD.decode(sig).ok()
                }
            }
            .ok_or_else(|| SignatureError::Malformed(rule.header.clone()))?;
            let ok = match &rule.timestamp_header {
                None => matches(rule, &[context, content], &presented),
                Some(th) => {
                    let ts = header(th).ok_or_else(|| SignatureError::Missing(th.clone()))?;
                    fresh(&ts, now, rule, th)?;
                    let parts = [ts.trim().as_bytes(), b".", context, content];
                    matches(rule, &parts, &presented)
                }
            };
            if ok {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
        SignatureScheme::Stripe => {
            let mut t = None;
            let mut candidates = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => t = Some(v.to_owned()),
                    Some(("v1", v)) => candidates.push(v.to_owned()),
                    _ => {}
                }
            }
            let t = t.ok_or_else(|| SignatureError::Malformed(rule.header.clone()))?;
            if candidates.is_empty() {
                return Err(SignatureError::Malformed(rule.header.clone()));
            }
            fresh(&t, now, rule, &rule.header)?;
            let expected = compute(
                rule.algorithm,
                &rule.secret,
                &[t.as_bytes(), b".", context, content],
            );
            let ok = candidates
                .iter()
                .filter_map(|c| unhex(&c.to_ascii_lowercase()))
                .any(|c| bool::from(expected.as_slice().ct_eq(c.as_slice())));
            if ok {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule(scheme: SignatureScheme, ts: Option<&str>) -> HmacRule {
        HmacRule {
            scheme,
            header: "x-sig".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".into(),
            secret: b"It's a Secret to Everybody".to_vec(),
            timestamp_header: ts.map(str::to_owned),
            tolerance: Duration::from_secs(300),
        }
    }

    #[test]
    fn known_answer_from_a_public_example() {
        // The example of GitHub's webhook documentation.
        let r = rule(SignatureScheme::Plain, None);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let headers = |n: &str| (n == "x-sig").then(|| sig.to_owned());
        assert_eq!(
            verify(&r, headers, Signed::Body(b"Hello, World!"), 0),
            Ok(())
        );
        assert_eq!(
            verify(&r, headers, Signed::Body(b"Hello, World?"), 0),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(&r, |_| None, Signed::Body(b"x"), 0),
            Err(SignatureError::Missing(_))
        ));
    }

    #[test]
    fn timestamps_refuse_replays() {
        let r = rule(SignatureScheme::Plain, Some("x-ts"));
        let now = 1_700_000_000;
        let sign = |ts: i64, body: &[u8]| {
            format!(
                "sha256={}",
                hex(&compute(
                    r.algorithm,
                    &r.secret,
                    &[ts.to_string().as_bytes(), b".", body]
                ))
            )
        };
        // A request sent with timestamp `sent` and signed over timestamp `signed`.
        let check = |sent: i64, signed: i64| {
            let sig = sign(signed, b"b");
            let headers = move |n: &str| match n {
                "x-sig" => Some(sig.clone()),
                "x-ts" => Some(sent.to_string()),
                _ => None,
            };
            verify(&r, headers, Signed::Body(b"b"), now)
        };
        assert_eq!(check(now - 10, now - 10), Ok(()));
        assert_eq!(check(now - 3600, now - 3600), Err(SignatureError::Stale));
        // Moving the timestamp breaks the signature.
        assert_eq!(check(now, now - 3600), Err(SignatureError::Mismatch));

        let s = HmacRule {
            header: "stripe-signature".into(),
            prefix: String::new(),
            ..rule(SignatureScheme::Stripe, None)
        };
        let v1 = hex(&compute(
            s.algorithm,
            &s.secret,
            &[now.to_string().as_bytes(), b".", b"{}"],
        ));
        let value = format!("t={now},v1=00ff,v1={v1},v0=abc");
        let h = |n: &str| (n == "stripe-signature").then(|| value.clone());
        assert_eq!(verify(&s, h, Signed::Body(b"{}"), now + 5), Ok(()));
        assert_eq!(
            verify(&s, h, Signed::Body(b"{ }"), now + 5),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&s, h, Signed::Body(b"{}"), now + 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn a_signature_serves_the_use_it_was_made_for() {
        let r = rule(SignatureScheme::Plain, None);
        let path = "/hooks/Duro/messages/0";
        let sig =
            |parts: &[&[u8]]| format!("sha256={}", hex(&compute(r.algorithm, &r.secret, parts)));
        let for_url = sig(&[STATUS_URL_CONTEXT, path.as_bytes()]);
        let header = |s: String| move |n: &str| (n == "x-sig").then(|| s.clone());
        assert_eq!(
            verify(&r, header(for_url.clone()), Signed::StatusUrl(path), 0),
            Ok(())
        );
        // The status URL's signature, sent with its signed bytes as a body.
        let as_body = [STATUS_URL_CONTEXT, path.as_bytes()].concat();
        assert_eq!(
            verify(&r, header(for_url), Signed::Body(&as_body), 0),
            Err(SignatureError::Mismatch)
        );
        // A body's signature of the path is not the status URL's.
        let for_body = sig(&[path.as_bytes()]);
        assert_eq!(
            verify(
                &r,
                header(for_body.clone()),
                Signed::Body(path.as_bytes()),
                0
            ),
            Ok(())
        );
        assert_eq!(
            verify(&r, header(for_body), Signed::StatusUrl(path), 0),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_status_url_example_of_the_docs() {
        // docs/http.md, "Status URL": `printf '%s' '1767225600.flowgate:status-url:/hooks/...'
        // | openssl dgst -sha256 -hmac example-secret`.
        let r = HmacRule {
            secret: b"example-secret".to_vec(),
            ..rule(SignatureScheme::Plain, Some("x-duro-timestamp"))
        };
        let h = |n: &str| match n {
            "x-sig" => Some(
                "sha256=170ade5da861ef23ae555629d9b5f6e90faf21bd8455755f8efc141bbf337b21".into(),
            ),
            "x-duro-timestamp" => Some("1767225600".into()),
            _ => None,
        };
        let path = "/hooks/Duro/messages/0193f8a0-5c4e-7b21-9a3d-2f1e0c4b5a69";
        assert_eq!(verify(&r, h, Signed::StatusUrl(path), 1767225600), Ok(()));
    }
}
