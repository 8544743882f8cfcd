//! Sends stored event deliveries: signed POSTs, 2xx is success, anything else is
//! tried again on the schedule until it runs out. Every attempt is recorded with
//! the receiver's status, headers and the start of its body.
//!
//! The signature is `X-Flowgate-Signature: sha256=<hex HMAC-SHA256>` over
//! `<X-Flowgate-Timestamp>.<body>`: the timestamp (Unix seconds) is signed with
//! the exact body, so a receiver can refuse replays of old deliveries.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::domain::{Micros, now_micros};
use crate::flow::{SharedCatalog, Subscription};
use crate::store::{DeliveryAttempt, DeliveryStatus, DeliveryView, Store};

/// How much of a receiver's answer is kept.
const BODY_EXCERPT: usize = 1024;
const PARALLEL: usize = 8;

/// How the sender behaves (from the settings).
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub retry: Vec<Duration>,
    pub poll: Duration,
    pub timeout: Duration,
    pub allow_http: bool,
    /// Refuse receivers at private addresses (`subscriptions_deny_private`).
    pub deny_private: bool,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + bytes.len() * 2);
    hex.push_str("sha256=");
    for b in bytes.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Starts the sender task.
pub fn start(store: Store, catalog: SharedCatalog, wake: Arc<Notify>, settings: SenderSettings) {
    // Names resolve through the address filter: what is checked is what is
    // connected to.
    let client = match crate::connect::address::client_builder(settings.deny_private)
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; event webhooks are off");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let now = now_micros();
            let lease = now + 2 * settings.timeout.as_micros() as i64 + 1_000_000;
            match store.claim_deliveries(now, lease, 100).await {
                Ok(due) if !due.is_empty() => {
                    let n = due.len();
                    futures_util::stream::iter(due)
                        .for_each_concurrent(PARALLEL, |d| {
                            send_one(&client, &store, &catalog, &settings, d)
                        })
                        .await;
                    if n == 100 {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read due event deliveries"),
            }
            let _ = tokio::time::timeout(settings.poll, wake.notified()).await;
        }
    });
}

fn excerpt(s: &str) -> String {
    let mut end = s.len().min(BODY_EXCERPT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

async fn send_one(
    client: &reqwest::Client,
    store: &Store,
    catalog: &SharedCatalog,
    settings: &SenderSettings,
    d: DeliveryView,
) {
    let number = d.attempts.len() as u32 + 1;
    let at = now_micros();
    let subscription: Option<Subscription> = catalog
        .get()
        .tenant(d.delivery.tenant.as_str())
        .and_then(|e| {
            e.tenant
                .subscriptions
                .iter()
                .find(|s| s.name == d.delivery.subscription)
                .cloned()
        });
    let attempt = match subscription {
        None => failed(number, at, "the subscription no longer exists"),
        Some(s) if !s.enabled => failed(number, at, "the subscription is disabled"),
        Some(s) if s.url.starts_with("http://") && !settings.allow_http => failed(
            number,
            at,
            "http:// URLs need the setting subscriptions_allow_http = true",
        ),
        Some(s) => match refused(&s.url, settings.deny_private) {
            Some(why) => failed(number, at, &why),
            None => post(client, &s, &d, number, at).await,
        },
    };
    let ok = attempt.status.is_some_and(|c| (200..300).contains(&c));
    let (status, next_at): (DeliveryStatus, Micros) = if ok {
        (DeliveryStatus::Succeeded, at)
    } else {
        match settings.retry.get(number as usize - 1) {
            Some(delay) => (
                DeliveryStatus::Pending,
                now_micros() + delay.as_micros() as i64,
            ),
            None => (DeliveryStatus::Failed, at),
        }
    };
    if !ok {
        tracing::info!(delivery = %d.delivery.id, subscription = d.delivery.subscription, attempt = number, status = ?attempt.status, error = ?attempt.error, "event delivery failed");
    }
    if let Err(e) = store
        .record_delivery_attempt(d.delivery.id, attempt, status, next_at)
        .await
    {
        tracing::warn!(error = %e, delivery = %d.delivery.id, "cannot record an event delivery attempt");
    }
}

/// Why a receiver's URL may not be posted to: a literal private address (names
/// are filtered as they resolve).
fn refused(url: &str, deny_private: bool) -> Option<String> {
    let policy = crate::connect::OutboundPolicy {
        allow_hosts: Vec::new(),
        deny_private,
    };
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("`{url}` is not a URL: {e}")),
    };
    policy
        .check(&parsed)
        .err()
        .map(|why| format!("{why} (subscriptions_deny_private)"))
}

fn failed(number: u32, at: Micros, why: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        number,
        at,
        status: None,
        headers: Vec::new(),
        body: String::new(),
        error: Some(why.to_owned()),
    }
}

async fn post(
    client: &reqwest::Client,
    s: &Subscription,
    d: &DeliveryView,
    number: u32,
    at: Micros,
) -> DeliveryAttempt {
    let timestamp = (at / 1_000_000).to_string();
    let mut req = client
        .post(&s.url)
        .header("content-type", "application/json")
        .header("user-agent", "flowgate")
        .header("x-flowgate-event", &d.delivery.event)
        .header("x-flowgate-delivery", d.delivery.id.to_string())
        .header("x-flowgate-timestamp", &timestamp)
        .body(d.delivery.payload.clone());
    if let Some(secret) = &s.secret {
        req = req.header(
            "x-flowgate-signature",
            signature(secret, &timestamp, &d.delivery.payload),
        );
    }
    if let Some((user, password)) = &s.basic_auth {
        req = req.basic_auth(user, Some(password));
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let headers = crate::domain::header_pairs(res.headers());
            let body = res.text().await.unwrap_or_default();
            DeliveryAttempt {
                number,
                at,
                status: Some(status),
                headers,
                body: excerpt(&body),
                error: None,
            }
        }
        Err(e) => failed(number, at, &crate::domain::chain::describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_timestamp_and_body() {
        // `printf '1.{}' | openssl dgst -sha256 -hmac key`
        let s = signature("key", "1", "{}");
        assert_eq!(
            s,
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(s, signature("key", "2", "{}"));
        assert_ne!(s, signature("other", "1", "{}"));
    }

    /// docs/events.md gives receivers a worked example: its numbers are what
    /// this code signs, read from the page itself, so an edit that breaks them
    /// fails here.
    #[test]
    fn the_worked_example_for_receivers_is_what_is_signed() {
        let page = include_str!("../../docs/events.md");
        let block = page
            .split("```text worked-example\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("docs/events.md has a ```text worked-example block");
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .unwrap_or_else(|| panic!("the worked example has no `{name}:` line"))
        };
        let (secret, timestamp, body) = (field("secret"), field("timestamp"), field("body"));
        assert_eq!(signature(secret, timestamp, body), field("signature"));
        // The body is one a subscription could be sent, at that timestamp.
        let doc: serde_json::Value = serde_json::from_str(body).expect("the body is JSON");
        let at = crate::domain::format_rfc3339(timestamp.parse::<i64>().unwrap() * 1_000_000);
        assert_eq!(doc["created_at"], at.as_str());
        // The signed string the page spells out.
        assert!(page.contains(&format!("`{timestamp}.` followed by the body")));
    }
}
