//! An outbound event webhook of a tenant, whether `_tenant.yaml` declares it or
//! the admin API stores it, and the rules both are checked by: the loader
//! reports a broken one with its file position, the API answers 400 naming the
//! field. One set of rules, so a subscription the API takes is one a file could
//! declare, and the other way round.

use std::fmt;
use std::time::Duration;

use super::{EventKind, Micros, TenantName};

/// The first part of the events flowgate itself produces: a subscriber may only
/// name those of them that exist. Other names are business events of flows.
pub const RESERVED_PREFIXES: [&str; 4] = ["message", "lane", "flow", "key"];

/// Events flowgate produces besides [`EventKind`]s: the test payload, and the
/// warning before a key expires.
pub const OTHER_EVENTS: [&str; 2] = ["ping", "key.expiring"];

/// A retry schedule longer than this is a mistake, not a plan.
/// The most subscriptions a tenant may make through the admin API.
pub const MAX_API_SUBSCRIPTIONS: usize = 100;
pub const MAX_RETRIES: usize = 32;
/// Nor is a wait between two attempts longer than a week.
/// The shortest wait in a `retry` schedule: a receiver down for a moment must
/// not use up the whole schedule.
pub const MIN_RETRY_WAIT: Duration = Duration::from_secs(1);
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a payload carries besides the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Include {
    /// "ping then pull": ids only, the receiver asks for the rest.
    #[default]
    Ids,
    /// The event's data in the body.
    Full,
}

impl Include {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ids => "ids",
            Self::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Result<Self, SubscriptionError> {
        match s {
            "ids" => Ok(Self::Ids),
            "full" => Ok(Self::Full),
            other => Err(SubscriptionError::Include(other.to_owned())),
        }
    }
}

/// Where a subscription comes from: only the admin API's can be changed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionSource {
    File,
    Api,
}

impl SubscriptionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

/// One entry of a subscription's `events`: an event's name, or `prefix.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    Exact(String),
    /// The prefix with its trailing dot: `message.` for `message.*`.
    Prefix(String),
}

impl EventPattern {
    /// Checks one entry of `events`: a reserved name must exist; any other name
    /// (a business event a flow emits) must look like `word.word`.
    pub fn parse(s: &str) -> Result<Self, SubscriptionError> {
        let unknown = || SubscriptionError::Event(s.to_owned());
        if let Some(prefix) = s.strip_suffix(".*") {
            if !dotted(prefix, 1) {
                return Err(unknown());
            }
            let first = prefix.split('.').next().unwrap_or_default();
            if RESERVED_PREFIXES.contains(&first) && prefix != first {
                return Err(unknown());
            }
            return Ok(Self::Prefix(format!("{prefix}.")));
        }
        if s == "ping" {
            return Ok(Self::Exact(s.to_owned()));
        }
        if !dotted(s, 2) {
            return Err(unknown());
        }
        let first = s.split('.').next().unwrap_or_default();
        let own = EventKind::ALL.iter().any(|k| k.as_str() == s) || OTHER_EVENTS.contains(&s);
        if RESERVED_PREFIXES.contains(&first) && !own {
            return Err(unknown());
        }
        Ok(Self::Exact(s.to_owned()))
    }

    /// Whether it can match a business event (one a flow emits): it names no
    /// reserved prefix and is not `ping`.
    pub fn may_match_business(&self) -> bool {
        let (Self::Exact(name) | Self::Prefix(name)) = self;
        let first = name.split('.').next().unwrap_or_default();
        name != "ping" && !RESERVED_PREFIXES.contains(&first)
    }

    pub fn matches(&self, event: &str) -> bool {
        match self {
            Self::Exact(name) => name == event,
            Self::Prefix(prefix) => event.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// `[a-z0-9_]+(\.[a-z0-9_]+)*` with at least `parts` parts.
fn dotted(s: &str, parts: usize) -> bool {
    let mut n = 0;
    for part in s.split('.') {
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return false;
        }
        n += 1;
    }
    n >= parts
}

/// A subscription's mistake, naming the field it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("subscription name `{0}` may only contain letters, digits, `_` and `-` (1 to 64)")]
    Name(String),
    #[error(
        "url must start with https:// (or http:// where the settings allow it) and name a host: `{0}`"
    )]
    Url(String),
    #[error("url `{0}`: http:// URLs need the setting subscriptions_allow_http = true")]
    Http(String),
    #[error(
        "unknown event `{0}` (one of {known}, `message.*`, `lane.*`, `flow.*`, `key.*`, or a business event named like `order.created` or `order.*`)",
        known = known_events()
    )]
    Event(String),
    #[error("`events` lists no event")]
    NoEvents,
    #[error("trigger `{0}` in `triggers` is not a trigger name")]
    Trigger(String),
    #[error("include `{0}`: expected `ids` or `full`")]
    Include(String),
    #[error("retry `{0}` is not a duration like 5s, 30s, 2m or 1h")]
    Retry(String),
    #[error("retry: waits must be between 1s and 7 days, at most {MAX_RETRIES} of them")]
    RetryBounds,
    #[error("description: at most {MAX_DESCRIPTION} characters")]
    Description,
}

impl SubscriptionError {
    /// The field of the subscription the mistake is in.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Name(_) => "name",
            Self::Url(_) | Self::Http(_) => "url",
            Self::Event(_) | Self::NoEvents => "events",
            Self::Trigger(_) => "triggers",
            Self::Include(_) => "include",
            Self::Retry(_) | Self::RetryBounds => "retry",
            Self::Description => "description",
        }
    }
}

fn known_events() -> String {
    EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .chain(OTHER_EVENTS)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest a subscription's description may be, in characters.
pub const MAX_DESCRIPTION: usize = 1000;

pub fn check_description(description: &str) -> Result<(), SubscriptionError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(SubscriptionError::Description);
    }
    Ok(())
}

pub fn check_name(name: &str) -> Result<(), SubscriptionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(SubscriptionError::Name(name.to_owned()))
    }
}

/// `https://host...`, or `http://` where `allow_http` (`subscriptions_allow_http`).
pub fn check_url(url: &str, allow_http: bool) -> Result<(), SubscriptionError> {
    let (rest, http) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        (None, None) => return Err(SubscriptionError::Url(url.to_owned())),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubscriptionError::Url(url.to_owned()));
    }
    if http && !allow_http {
        return Err(SubscriptionError::Http(url.to_owned()));
    }
    Ok(())
}

/// `events` as listed: every entry checked, none twice.
pub fn parse_events<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<EventPattern>, SubscriptionError> {
    let mut out: Vec<EventPattern> = Vec::new();
    for name in names {
        let p = EventPattern::parse(name)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(SubscriptionError::NoEvents);
    }
    Ok(out)
}

/// A `retry` schedule: the waits before each attempt after the first.
pub fn parse_retry<'a>(
    waits: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Duration>, SubscriptionError> {
    let mut out = Vec::new();
    for w in waits {
        let d = humantime::parse_duration(w.trim())
            .map_err(|_| SubscriptionError::Retry(w.to_owned()))?;
        if d < MIN_RETRY_WAIT || d > MAX_RETRY_WAIT {
            return Err(SubscriptionError::RetryBounds);
        }
        out.push(d);
    }
    if out.len() > MAX_RETRIES {
        return Err(SubscriptionError::RetryBounds);
    }
    Ok(out)
}

/// A retry schedule as it is written: `["5s", "2m"]`.
pub fn format_retry(waits: &[Duration]) -> Vec<String> {
    waits
        .iter()
        .map(|d| humantime::format_duration(*d).to_string().replace(' ', ""))
        .collect()
}

/// A new signing secret: 32 random bytes, hex, with a prefix that says what it is.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(6 + 64);
    s.push_str("whsec_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The id of a subscription of `_tenant.yaml`: made from its tenant and name,
/// so it stays the same across reloads and on every node.
pub fn file_subscription_id(tenant: &TenantName, name: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"flowgate subscription\0");
    h.update(tenant.as_str().as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One outbound event webhook of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: uuid::Uuid,
    pub tenant: TenantName,
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    pub events: Vec<EventPattern>,
    /// Only events of these triggers; `None`: of every trigger (and of none).
    pub triggers: Option<Vec<String>>,
    /// Basic auth user and password.
    pub basic_auth: Option<(String, String)>,
    /// The HMAC-SHA256 signing secret.
    pub secret: Option<String>,
    pub include: Include,
    /// The waits between attempts; `None`: the server's (`subscriptions_retry`).
    pub retry: Option<Vec<Duration>>,
    pub enabled: bool,
    pub source: SubscriptionSource,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Subscription {
    /// Whether this subscription wants `event` (of `trigger`, if of one): it is
    /// on, lists the event, and its `triggers` filter lets the trigger through.
    pub fn wants(&self, event: &str, trigger: Option<&str>) -> bool {
        self.enabled
            && self.events.iter().any(|p| p.matches(event))
            && match (&self.triggers, trigger) {
                (None, _) => true,
                (Some(only), Some(t)) => only.iter().any(|o| o == t),
                (Some(_), None) => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_reserved_known_or_business() {
        for ok in [
            "message.failed",
            "message.*",
            "lane.*",
            "key.expiring",
            "ping",
            "order.created",
            "item.stock.updated",
            "order.*",
        ] {
            assert!(EventPattern::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "message.exploded",
            "lane.sideways",
            "key.lost",
            "flow.*.x",
            "Order.created",
            "order",
            "order.",
            ".order",
            "order..created",
            "*",
            "message.failed.*",
        ] {
            assert!(EventPattern::parse(bad).is_err(), "{bad}");
        }
        let star = EventPattern::parse("message.*").unwrap();
        assert!(star.matches("message.dead"));
        assert!(!star.matches("lane.blocked"));
        assert!(!star.matches("messages.x"));
        assert_eq!(star.to_string(), "message.*");
    }

    #[test]
    fn urls_need_https_unless_allowed() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert_eq!(
            check_url("http://example.com/", false).unwrap_err().field(),
            "url"
        );
        assert!(matches!(
            check_url("http://example.com/", false),
            Err(SubscriptionError::Http(_))
        ));
        assert!(check_url("http://example.com/", true).is_ok());
        assert!(check_url("ftp://x", true).is_err());
        assert!(check_url("https:///path", true).is_err());
    }

    #[test]
    fn retry_schedules_are_bounded() {
        assert_eq!(
            parse_retry(["5s", "2m"]).unwrap(),
            vec![Duration::from_secs(5), Duration::from_secs(120)]
        );
        assert_eq!(format_retry(&[Duration::from_secs(120)]), vec!["2m"]);
        assert_eq!(parse_retry(["soon"]).unwrap_err().field(), "retry");
        assert!(parse_retry(["0s"]).is_err());
        assert!(parse_retry(["30d"]).is_err());
        assert!(parse_retry(vec!["1s"; 33]).is_err());
    }

    #[test]
    fn file_ids_are_stable_per_tenant_and_name() {
        let t = TenantName::parse("acme").unwrap();
        let u = TenantName::parse("other").unwrap();
        assert_eq!(file_subscription_id(&t, "a"), file_subscription_id(&t, "a"));
        assert_ne!(file_subscription_id(&t, "a"), file_subscription_id(&t, "b"));
        assert_ne!(file_subscription_id(&t, "a"), file_subscription_id(&u, "a"));
        assert!(new_secret().starts_with("whsec_"));
        assert_ne!(new_secret(), new_secret());
    }
}
