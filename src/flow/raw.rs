//! The flow files exactly as written: serde structs that mirror the YAML, reject
//! unknown keys and keep each value's position for error messages. Nothing here is
//! validated beyond its YAML shape; `compile` does the rest. A key left out is
//! `None` in an `Option` field (serde's rule); `#[serde(default)]` marks the other
//! fields that may be left out.

use std::fmt;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

/// `_tenant.yaml`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// label -> a pasted key's hash, or the label's keys with ids
    #[serde(default)]
    pub api_keys: IndexMap<String, Spanned<RawApiKey>>,
    /// user -> argon2id PHC string, for callers using HTTP Basic auth
    #[serde(default)]
    pub basic_users: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub connections: IndexMap<String, Spanned<RawConnection>>,
    /// Request headers redacted like `authorization` (besides the built-in ones).
    #[serde(default)]
    pub secret_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub subscriptions: Vec<Spanned<RawSubscription>>,
}

/// An entry of `api_keys:`: `label: "<hash>"` (a key without an id), or
/// `label: { keys: [...] }`.
#[derive(Debug)]
pub enum RawApiKey {
    Hash(String),
    Consumer(Box<RawConsumer>),
}

impl<'de> Deserialize<'de> for RawApiKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawApiKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an argon2id hash, or a mapping with `keys:`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawApiKey, E> {
                Ok(RawApiKey::Hash(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawApiKey, E> {
                Ok(RawApiKey::Hash(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawApiKey, A::Error> {
                RawConsumer::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|c| RawApiKey::Consumer(Box::new(c)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `label: { keys: [...] }`: a consumer's keys with ids (more than one while
/// a key is rotated).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub keys: Spanned<Vec<Spanned<RawKeyWithId>>>,
    /// `100/s`, `/min` or `/h`: per node. Read as any value, so that a
    /// number or a typo is a diagnostic that says what is expected.
    pub rate: Option<Spanned<serde_json::Value>>,
    /// Requests at once (default: one second of `rate`).
    pub burst: Option<Spanned<serde_json::Value>>,
    /// `N/day`: a UTC day, counted in the store.
    pub quota: Option<Spanned<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyWithId {
    pub id: Spanned<String>,
    pub hash: Spanned<String>,
    /// RFC 3339
    pub expires: Option<Spanned<String>>,
}

/// An entry of `subscriptions:`: an outbound event webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    pub name: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub url: Spanned<String>,
    pub events: Vec<Spanned<String>>,
    /// Only events of these triggers.
    pub triggers: Option<Vec<Spanned<String>>>,
    pub basic_auth: Option<RawBasicAuth>,
    pub secret: Option<Spanned<String>>,
    /// `ids` (default: ping then pull) or `full` (the event's data in the body).
    pub include: Option<Spanned<String>>,
    /// The waits between attempts, like `[5s, 30s, 2m]`.
    pub retry: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: Spanned<String>,
    pub password: Spanned<String>,
}

/// `<Trigger>.yaml`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub description: Option<String>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub enabled: Option<bool>,
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub params: IndexMap<String, Spanned<RawParam>>,
    /// A JSON Schema (2020-12) the decoded request body must match.
    pub body: Option<Spanned<serde_json::Value>>,
    /// A JSON Schema (2020-12) of the body of the flow's 2xx `respond` answers.
    pub response_schema: Option<Spanned<serde_json::Value>>,
    pub delivery: Option<RawDelivery>,
    pub response: Option<RawResponse>,
    pub limits: Option<Spanned<RawLimits>>,
    /// `steps` (default) or `full`: also the variables before and after each step.
    pub trace: Option<Spanned<String>>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub api_keys: Option<Vec<Spanned<String>>>,
    pub none: Option<bool>,
    /// user names from `basic_users` in _tenant.yaml
    pub basic: Option<Vec<Spanned<String>>>,
    pub hmac: Option<Spanned<RawHmac>>,
    /// CIDR blocks the caller's address must be in
    pub allow_ips: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    pub preset: Option<Spanned<String>>,
    pub secret: Spanned<String>,
    pub header: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub encoding: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub timestamp_header: Option<Spanned<String>>,
    pub tolerance: Option<Spanned<String>>,
}

/// One entry of `connections:`: exactly one of `postgres` or `http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    pub postgres: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<i64>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub statement_timeout: Option<Spanned<String>>,
    pub http: Option<Spanned<RawHttpConnection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpConnection {
    pub base_url: Spanned<String>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub basic: Option<Spanned<RawBasicCredentials>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicCredentials {
    pub username: Spanned<String>,
    pub password: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpStep {
    pub method: Option<Spanned<String>>,
    pub url: Spanned<String>,
    pub connection: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    pub body: Option<Spanned<ExprText>>,
    pub content_type: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub into: Option<Spanned<String>>,
    pub accept_status: Option<Vec<Spanned<i64>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSqlStep {
    pub connection: Spanned<String>,
    pub query: Spanned<String>,
    #[serde(default)]
    pub params: Vec<Spanned<ExprText>>,
    pub into: Option<Spanned<String>>,
    #[serde(default)]
    pub single: bool,
    pub timeout: Option<Spanned<String>>,
    /// Run the statement once per message: a rerun returns the stored result.
    pub once: Option<Spanned<bool>>,
}

/// `transaction: { connection, steps }`: the steps' statements in one
/// database transaction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransaction {
    pub connection: Spanned<String>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    #[serde(rename = "type")]
    pub ty: Spanned<String>,
    #[serde(default)]
    pub required: bool,
    pub default: Option<Spanned<serde_json::Value>>,
    #[serde(default, rename = "enum")]
    pub allowed: Option<Spanned<Vec<serde_json::Value>>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    #[serde(default)]
    pub ordered: bool,
    pub ordering_key: Option<Spanned<ExprText>>,
    pub concurrency: Option<Spanned<i64>>,
    pub retry: Option<Vec<Spanned<String>>>,
    pub on_exhausted: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    pub mode: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub on_timeout: Option<Spanned<String>>,
}

/// `limits: { time: 30s, memory: 256MiB }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub time: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
}

/// One step: exactly one of the step keys, plus the keys that go with it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: Option<String>,
    pub set: Option<Spanned<IndexMap<String, Spanned<SetValue>>>>,
    #[serde(default, rename = "if")]
    pub if_: Option<Spanned<ExprText>>,
    pub then: Option<Spanned<Vec<Spanned<RawStep>>>>,
    #[serde(default, rename = "else")]
    pub else_: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub for_each: Option<Spanned<ExprText>>,
    #[serde(default, rename = "as")]
    pub as_: Option<Spanned<String>>,
    #[serde(default, rename = "do")]
    pub do_: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub collect: Option<Spanned<ExprText>>,
    pub into: Option<Spanned<String>>,
    pub respond: Option<Spanned<RawRespond>>,
    pub fail: Option<Spanned<RawFail>>,
    pub log: Option<Spanned<ExprText>>,
    pub http: Option<Spanned<RawHttpStep>>,
    pub sql: Option<Spanned<RawSqlStep>>,
    #[serde(default)]
    pub transaction: Option<Spanned<RawTransaction>>,
    /// `emit: { event, data }`: a business event for the tenant's subscribers.
    pub emit: Option<Spanned<RawEmit>>,
    /// For `http` and `sql`: waits before each new try of a transient failure.
    pub retry: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Option<Spanned<i64>>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
    pub body: Option<Spanned<ExprText>>,
    /// XML text to send instead of `body` when the caller's Accept asks for XML.
    pub xml: Option<Spanned<ExprText>>,
}

/// `emit: { event: order.created, data: expr }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmit {
    pub event: Spanned<String>,
    pub data: Option<Spanned<ExprText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFail {
    pub status: Option<Spanned<i64>>,
    pub message: Spanned<ExprText>,
}

/// The text of a jq expression. YAML turns `0`, `true` or `null` into scalars of
/// their own; each is also a valid jq program, so they are accepted as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprText(pub String);

impl<'de> Deserialize<'de> for ExprText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExprText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a jq expression")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExprText, E> {
                Ok(ExprText(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ExprText, E> {
                Ok(ExprText(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExprText, E> {
                Ok(ExprText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExprText, E> {
                Ok(ExprText("null".to_owned()))
            }
            fn visit_none<E: de::Error>(self) -> Result<ExprText, E> {
                Ok(ExprText("null".to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `set` value: a jq expression (a YAML string or scalar), or literal data (a
/// YAML mapping or list), taken as it is — lookup tables cost nothing per request.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Expr(ExprText),
    Data(serde_json::Value),
}

impl<'de> Deserialize<'de> for SetValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SetValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a jq expression, or a mapping or list of literal data")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText("null".to_owned())))
            }
            fn visit_none<E: de::Error>(self) -> Result<SetValue, E> {
                Ok(SetValue::Expr(ExprText("null".to_owned())))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SetValue, A::Error> {
                serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(SetValue::Data)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<SetValue, A::Error> {
                serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(SetValue::Data)
            }
        }
        d.deserialize_any(V)
    }
}
