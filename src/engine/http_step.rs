//! The `http` step: one outbound request, retried on transient failures only
//! (connect errors, timeouts, 5xx, 429 with `Retry-After`), with an
//! `Idempotency-Key` that is the same on every try and every re-run of the
//! execution, so receivers that honour it apply the call once.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::connect::http::{DEFAULT_TIMEOUT, UrlRefused};
use crate::connect::{OutboundRequest, SendError};
use crate::domain::{REDACTED, SECRET_HEADERS};
use crate::flow::model::{BodyEncoding, HttpStep};

/// Largest response body read into the flow.
const MAX_RESPONSE: usize = 10 * 1024 * 1024;
/// A `Retry-After` longer than this is not waited for: the step fails instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Everything the step needs, evaluated from the flow's context before any I/O.
pub struct Prepared {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub idempotency_key: String,
}

/// What went wrong, already redacted, and whether another run of the message
/// could go otherwise: a 4xx answer (but 408 and 429) or a refused URL would not.
pub struct Failure {
    pub message: String,
    pub retryable: bool,
}

/// Statuses that say the request itself is wrong: sending it again, now or on a
/// later run, gets the same answer.
fn refused_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

pub struct Outcome {
    pub result: Value,
    pub detail: String,
}

/// Why a step's body could not be written in its encoding.
#[derive(Debug, thiserror::Error)]
enum EncodeError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("a form body must be an object")]
    FormNotObject,
    #[error(transparent)]
    Form(#[from] serde_urlencoded::ser::Error),
}

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("the response body is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("reading the response: {0}")]
    Read(#[source] reqwest::Error),
}

fn encode_body(enc: &BodyEncoding, body: &Value) -> Result<(Vec<u8>, String), EncodeError> {
    match enc {
        BodyEncoding::Json => Ok((serde_json::to_vec(body)?, "application/json".into())),
        BodyEncoding::Form => {
            let Value::Object(map) = body else {
                return Err(EncodeError::FormNotObject);
            };
            let pairs: Vec<(&str, String)> = map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.as_str(), v)
                })
                .collect();
            Ok((
                serde_urlencoded::to_string(pairs)?.into_bytes(),
                "application/x-www-form-urlencoded".into(),
            ))
        }
        BodyEncoding::Text(ct) => {
            let text = match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok((text.into_bytes(), ct.clone()))
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

fn response_headers(headers: &reqwest::header::HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let value = if SECRET_HEADERS.contains(&name) {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        match out.get_mut(name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                out.insert(name.to_owned(), Value::String(value));
            }
        }
    }
    out
}

async fn read_body(mut res: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if res
        .content_length()
        .is_some_and(|n| n as usize > MAX_RESPONSE)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(ReadError::Read)? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn decode(content_type: Option<&str>, body: &[u8]) -> Value {
    crate::codec::input::decode_body(content_type, body).unwrap_or_else(|_| {
        match std::str::from_utf8(body) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => crate::codec::input::decode_body(Some("application/octet-stream"), body)
                .unwrap_or(Value::Null),
        }
    })
}

/// Sends the request, retrying as the step says.
pub async fn run(step: &HttpStep, p: Prepared) -> Result<Outcome, Failure> {
    let secrets = &step.secrets;
    let fail = |m: String| Failure {
        message: secrets.redact(&m).into_owned(),
        retryable: true,
    };
    let refuse = |m: String| Failure {
        message: secrets.redact(&m).into_owned(),
        retryable: false,
    };
    let url = match &step.connection {
        Some(c) => c.resolve(&p.url),
        None => reqwest::Url::parse(&p.url).map_err(|e| UrlRefused::NotUrl {
            url: p.url.clone(),
            why: e.to_string(),
        }),
    }
    .map_err(|e| refuse(e.to_string()))?;
    step.outbound
        .policy
        .check(&url)
        .map_err(|e| refuse(e.to_string()))?;
    let body = match &p.body {
        Some(b) => Some(encode_body(&step.encoding, b).map_err(|e| fail(e.to_string()))?),
        None => None,
    };
    let timeout = step
        .timeout
        .or(step.connection.as_ref().and_then(|c| c.timeout))
        .unwrap_or(DEFAULT_TIMEOUT);
    let shown = {
        let mut u = url.clone();
        u.set_query(None);
        let _ = u.set_password(None);
        secrets.redact(u.as_str()).into_owned()
    };
    let mut headers = p.headers.clone();
    headers.push(("idempotency-key".into(), p.idempotency_key.clone()));
    let request = OutboundRequest {
        method: step.method.clone(),
        url: url.clone(),
        credentials: step
            .connection
            .as_ref()
            .map(|c| c.headers.clone())
            .unwrap_or_default(),
        basic: step.connection.as_ref().and_then(|c| c.basic.clone()),
        headers,
        body,
        timeout,
    };
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        let wait = step.retry.get(attempt - 1).copied();
        let (why, retry_wait) = match step.outbound.send(&request).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let accepted = res.status().is_success() || step.accept_status.contains(&status);
                let transient = status >= 500 || status == 429 || status == 408;
                if accepted || !transient || wait.is_none() {
                    let headers = response_headers(res.headers());
                    let ct = res
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let bytes = read_body(res).await.map_err(|e| fail(e.to_string()))?;
                    if !accepted {
                        let excerpt =
                            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                        let message = format!(
                            "{} {shown} answered {status} after {attempt} attempt(s): {excerpt}",
                            step.method
                        );
                        return Err(if refused_status(status) {
                            refuse(message)
                        } else {
                            fail(message)
                        });
                    }
                    let mut result = json!({
                        "status": status,
                        "headers": Value::Object(headers),
                        "body": decode(ct.as_deref(), &bytes),
                    });
                    secrets.redact_json(&mut result);
                    return Ok(Outcome {
                        result,
                        detail: secrets
                            .redact(&format!(
                                "{} {shown} -> {status} ({attempt} attempt(s))",
                                step.method
                            ))
                            .into_owned(),
                    });
                }
                let after = retry_after(res.headers());
                (format!("answered {status}"), after.or(wait))
            }
            Err(SendError::Refused(why)) => {
                return Err(refuse(format!("{} {shown}: {why}", step.method)));
            }
            Err(SendError::Http(e)) => {
                let transient = e.is_connect() || e.is_timeout() || e.is_request();
                let why = if e.is_timeout() {
                    format!("no answer within {timeout:?}")
                } else {
                    crate::domain::chain::describe(&e)
                };
                if !transient || wait.is_none() {
                    return Err(fail(format!(
                        "{} {shown} failed after {attempt} attempt(s): {why}",
                        step.method
                    )));
                }
                (why, wait)
            }
        };
        match retry_wait {
            Some(d) if d <= MAX_RETRY_AFTER => tokio::time::sleep(d).await,
            _ => {
                return Err(fail(format!(
                    "{} {shown} {why}; Retry-After is longer than {MAX_RETRY_AFTER:?}",
                    step.method
                )));
            }
        }
    }
}
