//! Sends stored event deliveries: signed POSTs, 2xx is success, anything else is
//! tried again on the subscription's schedule (or the server's) until it runs
//! out. Every attempt is recorded with the URL, how long it took, the receiver's
//! status, headers and the start of its body, or why it failed (`outcome`).
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

use crate::domain::{MessageId, Micros, Subscription};
use crate::ops::deliveries::DeliveryMetrics;
use crate::store::{DeliveryAttempt, DeliveryStatus, DeliveryView, NewDelivery, Store, StoreError};

use super::outcome::{Failure, FailureKind};
use super::{Events, Subscribers};

/// How much of a receiver's answer is kept.
const BODY_EXCERPT: usize = 1024;
const PARALLEL: usize = 8;
/// Deliveries claimed at a time: as many as are sent at once.
const BATCH: usize = PARALLEL;

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

/// Sends deliveries: the background loop over due ones, and a test ping on
/// demand. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    store: Store,
    subscribers: Subscribers,
    wake: Arc<Notify>,
    settings: SenderSettings,
    metrics: DeliveryMetrics,
}

/// The sender's HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the event webhooks' HTTP client")]
pub struct SenderError(#[source] reqwest::Error);

impl Sender {
    pub fn new(
        events: &Events,
        store: Store,
        settings: SenderSettings,
    ) -> Result<Self, SenderError> {
        // Names resolve through the address filter: what is checked is what is
        // connected to.
        let client = crate::connect::address::client_builder(settings.deny_private)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SenderError)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                store,
                subscribers: events.subscribers().clone(),
                wake: events.sender_wake(),
                settings,
                metrics: DeliveryMetrics::default(),
            }),
        })
    }

    /// Attempts by tenant, subscription and outcome, for `/_metrics`.
    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.inner.metrics
    }

    /// Starts the loop that sends due deliveries.
    pub fn start(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let me = &this.inner;
            loop {
                let now = me.store.now();
                // A batch is sent at once (BATCH = PARALLEL), each attempt within
                // `timeout`: the lease outlasts it, so another node takes none of
                // it back meanwhile, and a crashed node's are taken back soon.
                let lease = now + 2 * me.settings.timeout.as_micros() as i64 + 1_000_000;
                match me.store.claim_deliveries(now, lease, BATCH as u32).await {
                    Ok(due) if !due.is_empty() => {
                        let n = due.len();
                        futures_util::stream::iter(due)
                            .for_each_concurrent(PARALLEL, |d| this.send_one(d))
                            .await;
                        if n == BATCH {
                            continue;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read due event deliveries"),
                }
                let _ = tokio::time::timeout(me.settings.poll, me.wake.notified()).await;
            }
        });
    }

    /// Sends a `ping` to `sub` now (on or off), records it in the delivery log
    /// as a delivery of one attempt, and answers that attempt.
    pub async fn test(
        &self,
        sub: &Subscription,
    ) -> Result<(MessageId, DeliveryAttempt), StoreError> {
        let d = super::ping(sub);
        let attempt = self.attempt(Some(sub), &d, 1, true).await;
        let status = if attempt.error.is_none() {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Failed
        };
        let id = d.id;
        self.inner
            .store
            .add_sent_delivery(d, attempt.clone(), status)
            .await?;
        Ok((id, attempt))
    }

    async fn send_one(&self, d: DeliveryView) {
        let me = &self.inner;
        let number = d.attempts.len() as u32 + 1;
        let find = || {
            me.subscribers
                .named(d.delivery.tenant.as_str(), &d.delivery.subscription)
        };
        let mut sub = find();
        if !sub.as_ref().is_some_and(|s| s.enabled) {
            // Another node may have made or switched it on within the last
            // second: read the stored ones again before calling it off.
            if let Err(e) = me.subscribers.refresh().await {
                tracing::warn!(error = %e, "cannot read the stored event subscriptions");
            }
            sub = find();
        }
        let attempt = self
            .attempt(sub.as_deref(), &d.delivery, number, false)
            .await;
        let ok = attempt.error.is_none();
        let schedule = sub
            .as_ref()
            .and_then(|s| s.retry.as_ref())
            .unwrap_or(&me.settings.retry);
        let now = me.store.now();
        let (status, next_at): (DeliveryStatus, Micros) = if ok {
            (DeliveryStatus::Succeeded, now)
        } else {
            match schedule.get(number as usize - 1) {
                Some(delay) => (DeliveryStatus::Pending, now + delay.as_micros() as i64),
                None => (DeliveryStatus::Failed, now),
            }
        };
        if !ok {
            tracing::info!(delivery = %d.delivery.id, subscription = d.delivery.subscription, attempt = number, status = ?attempt.status, error = ?attempt.error, "event delivery failed");
        }
        if let Err(e) = me
            .store
            .record_delivery_attempt(d.delivery.id, attempt, status, next_at)
            .await
        {
            tracing::warn!(error = %e, delivery = %d.delivery.id, "cannot record an event delivery attempt");
        }
    }

    /// One attempt at sending `d` to `sub`, measured and counted.
    /// `even_off`: a disabled subscription is sent to too (a test ping).
    async fn attempt(
        &self,
        sub: Option<&Subscription>,
        d: &NewDelivery,
        number: u32,
        even_off: bool,
    ) -> DeliveryAttempt {
        let me = &self.inner;
        let at = me.store.now();
        let started = std::time::Instant::now();
        let url = sub.map(|s| s.url.clone()).unwrap_or_default();
        let result = match sub {
            None => Err(policy("the subscription no longer exists")),
            Some(s) if !s.enabled && !even_off => Err(policy("the subscription is disabled")),
            Some(s) if s.url.starts_with("http://") && !me.settings.allow_http => Err(policy(
                "http:// URLs need the setting subscriptions_allow_http = true",
            )),
            Some(s) => match refused(&s.url, me.settings.deny_private) {
                Some(why) => Err(policy(&why)),
                None => post(&me.client, s, d, at).await,
            },
        };
        let duration_us = started.elapsed().as_micros() as i64;
        let (status, headers, body, failure) = match result {
            Ok(answer) => answer,
            Err(f) => (None, Vec::new(), String::new(), Some(f)),
        };
        let outcome = failure.as_ref().map_or("succeeded", |f| f.kind.as_str());
        me.metrics
            .attempt(d.tenant.as_str(), &d.subscription, outcome, duration_us);
        DeliveryAttempt {
            number,
            at,
            url,
            duration_us,
            kind: failure.as_ref().map(|f| f.kind.as_str().to_owned()),
            status,
            headers,
            body,
            error: failure.map(|f| f.message),
        }
    }
}

/// The start of a receiver's answer, as stored: NUL characters, which a
/// PostgreSQL JSON document cannot hold, are dropped.
fn excerpt(s: &str) -> String {
    s[..s.floor_char_boundary(BODY_EXCERPT)].replace('\0', "")
}

fn policy(why: &str) -> Failure {
    Failure::new(FailureKind::Policy, why)
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

/// What an answer leaves in the log: its status, headers, the start of its
/// body, and why it counts as failed if it does.
type Answer = (Option<u16>, Vec<(String, String)>, String, Option<Failure>);

async fn post(
    client: &reqwest::Client,
    s: &Subscription,
    d: &NewDelivery,
    at: Micros,
) -> Result<Answer, Failure> {
    let timestamp = (at / 1_000_000).to_string();
    let mut req = client
        .post(&s.url)
        .header("content-type", "application/json")
        .header("user-agent", "flowgate")
        .header("x-flowgate-event", &d.event)
        .header("x-flowgate-delivery", d.id.to_string())
        .header("x-flowgate-timestamp", &timestamp)
        .body(d.payload.clone());
    if let Some(secret) = &s.secret {
        req = req.header(
            "x-flowgate-signature",
            signature(secret, &timestamp, &d.payload),
        );
    }
    if let Some((user, password)) = &s.basic_auth {
        req = req.basic_auth(user, Some(password));
    }
    let host = reqwest::Url::parse(&s.url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(443)))
        })
        .unwrap_or_else(|| s.url.clone());
    let mut res = req
        .send()
        .await
        .map_err(|e| Failure::of_request(&e, &host))?;
    let status = res.status().as_u16();
    let headers = crate::domain::header_pairs(res.headers());
    let location = res
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    // Only the excerpt is read: a receiver's long answer is not held.
    let mut body = Vec::new();
    while body.len() < BODY_EXCERPT {
        match res.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let failure =
        (!(200..300).contains(&status)).then(|| Failure::status(status, location.as_deref()));
    Ok((
        Some(status),
        headers,
        excerpt(&String::from_utf8_lossy(&body)),
        failure,
    ))
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
