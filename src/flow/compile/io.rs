//! The parts of the files that reach other systems: `connections:` of
//! `_tenant.yaml`, the `http` and `sql` steps, and the `auth:` methods of signing
//! callers. `${VAR}` is expanded here and only here.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::{Location, Spanned};

use crate::codec::input::SECRET_HEADERS;
use crate::connect::http::BasicCredentials;
use crate::connect::{
    Connection, EnvLookup, HttpConnection, PgOptions, Registry, Secrets, expand, postgres,
};
use crate::domain::Cidr;

use super::FileCx;
use crate::flow::model::{
    BodyEncoding, HmacAlgorithm, HmacRule, HttpStep, SignatureEncoding, SignatureScheme, SqlStep,
    Tenant,
};
use crate::flow::raw::{RawConnection, RawHmac, RawHttpStep, RawSqlStep};

/// How old a signed timestamp may be by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

impl FileCx<'_> {
    /// `${VAR}` expansion of a field; the values read are added to `secrets`.
    pub fn expand(
        &mut self,
        s: &Spanned<String>,
        what: &str,
        env: &EnvLookup,
        secrets: &mut Secrets,
    ) -> Option<String> {
        match expand(&s.value, env) {
            Ok(e) => {
                for v in &e.from_env {
                    secrets.add(v);
                }
                Some(e.value)
            }
            Err(e) => {
                self.error(s.referenced, format!("{what}: {e}"));
                None
            }
        }
    }

    fn positive_duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match self.duration(s, what) {
            Some(d) if d.is_zero() => {
                self.error(s.referenced, format!("`{what}` must be greater than zero"));
                None
            }
            d => d,
        }
    }
}

pub fn is_header_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `connections:` -> named connections; their secrets go into `secrets`.
pub fn compile_connections(
    cx: &mut FileCx<'_>,
    raw: IndexMap<String, Spanned<RawConnection>>,
    secret_headers: &[String],
    registry: &Registry,
    secrets: &mut Secrets,
) -> IndexMap<String, Connection> {
    let env = registry.env().clone();
    let mut out = IndexMap::new();
    for (name, c) in raw {
        let loc = c.referenced;
        let c = c.value;
        if !is_identifier(&name) {
            cx.error(
                loc,
                format!("connection name `{name}` may only contain letters, digits, `_` and `-`"),
            );
        }
        let conn = match (c.postgres, c.http) {
            (Some(url), None) => compile_postgres(
                cx,
                &name,
                url,
                c.pool_size,
                c.connect_timeout,
                c.statement_timeout,
                registry,
                secrets,
            ),
            (None, Some(http)) => {
                for (key, l) in [
                    ("pool_size", c.pool_size.as_ref().map(|p| p.referenced)),
                    (
                        "connect_timeout",
                        c.connect_timeout.as_ref().map(|p| p.referenced),
                    ),
                    (
                        "statement_timeout",
                        c.statement_timeout.as_ref().map(|p| p.referenced),
                    ),
                ] {
                    if let Some(l) = l {
                        cx.error(l, format!("`{key}` belongs to `postgres` connections"));
                    }
                }
                compile_http_connection(cx, &name, http, secret_headers, &env, secrets)
            }
            (Some(_), Some(_)) => {
                cx.error(
                    loc,
                    format!("connection `{name}` has both `postgres` and `http`; choose one"),
                );
                None
            }
            (None, None) => {
                cx.error(
                    loc,
                    format!(
                        "connection `{name}` needs `postgres: URL` or `http: {{base_url: ...}}`"
                    ),
                );
                None
            }
        };
        if let Some(conn) = conn {
            out.insert(name, conn);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn compile_postgres(
    cx: &mut FileCx<'_>,
    name: &str,
    url: Spanned<String>,
    pool_size: Option<Spanned<i64>>,
    connect_timeout: Option<Spanned<String>>,
    statement_timeout: Option<Spanned<String>>,
    registry: &Registry,
    secrets: &mut Secrets,
) -> Option<Connection> {
    let mut own = Secrets::default();
    let expanded = cx.expand(
        &url,
        &format!("connection `{name}`"),
        registry.env(),
        &mut own,
    );
    let config = expanded
        .as_ref()
        .and_then(|u| match crate::pgtls::parse(u) {
            Ok(c) => Some(c),
            Err(e) => {
                cx.error(url.referenced, format!("connection `{name}`: {e}"));
                None
            }
        });
    if let Some(pw) = config.as_ref().and_then(|(c, _)| c.get_password()) {
        own.add(&String::from_utf8_lossy(pw));
    }
    let pool_size = match pool_size {
        None => postgres::DEFAULT_POOL_SIZE,
        Some(p) if (1..=1000).contains(&p.value) => p.value as usize,
        Some(p) => {
            cx.error(
                p.referenced,
                format!("`pool_size` must be between 1 and 1000, not {}", p.value),
            );
            postgres::DEFAULT_POOL_SIZE
        }
    };
    let connect_timeout = connect_timeout
        .and_then(|t| cx.positive_duration(&t, "connect_timeout"))
        .unwrap_or(postgres::DEFAULT_CONNECT_TIMEOUT);
    let statement_timeout = statement_timeout
        .and_then(|t| cx.positive_duration(&t, "statement_timeout"))
        .unwrap_or(postgres::DEFAULT_STATEMENT_TIMEOUT);
    secrets.extend(&own);
    let (config, tls) = config?;
    let options = PgOptions {
        url: expanded?,
        config,
        tls,
        pool_size,
        connect_timeout,
        statement_timeout,
        secrets: own,
    };
    Some(Connection::Postgres(registry.postgres(name, options)))
}

fn compile_http_connection(
    cx: &mut FileCx<'_>,
    name: &str,
    raw: Spanned<crate::flow::raw::RawHttpConnection>,
    secret_headers: &[String],
    env: &EnvLookup,
    secrets: &mut Secrets,
) -> Option<Connection> {
    let raw = raw.value;
    let mut own = Secrets::default();
    let what = format!("connection `{name}`");
    let base = cx.expand(&raw.base_url, &what, env, &mut own);
    let base_url = base.and_then(|b| match reqwest::Url::parse(&b) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Ok(_) | Err(_) => {
            cx.error(
                raw.base_url.referenced,
                format!("{what}: `base_url` must be an absolute http:// or https:// URL"),
            );
            None
        }
    });
    let mut headers = Vec::new();
    for (k, v) in &raw.headers {
        if !is_header_name(k) {
            cx.error(v.referenced, format!("`{k}` is not a valid header name"));
            continue;
        }
        let lower = k.to_ascii_lowercase();
        if let Some(value) = cx.expand(v, &format!("{what} header {k}"), env, &mut own) {
            if SECRET_HEADERS.contains(&lower.as_str()) || secret_headers.contains(&lower) {
                own.add(&value);
                // `Bearer <token>`: the token alone too.
                if let Some((_, token)) = value.split_once(' ') {
                    own.add(token);
                }
            }
            headers.push((lower, value));
        }
    }
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| cx.positive_duration(t, "timeout"));
    let basic = raw.basic.and_then(|b| {
        let user = cx.expand(&b.value.username, &what, env, &mut own)?;
        let password = cx.expand(&b.value.password, &what, env, &mut own)?;
        own.add(&password);
        use base64::Engine;
        own.add(&base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        Some(BasicCredentials {
            username: user,
            password,
        })
    });
    secrets.extend(&own);
    Some(Connection::Http(Arc::new(HttpConnection {
        name: name.to_owned(),
        base_url: base_url?,
        headers,
        timeout,
        basic,
        secrets: own,
    })))
}

fn known(tenant: &Tenant, kind: &str) -> String {
    let names: Vec<&str> = tenant
        .connections
        .iter()
        .filter(|(_, c)| c.kind() == kind)
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn into_name(cx: &mut FileCx<'_>, into: Option<Spanned<String>>) -> Option<String> {
    let i = into?;
    if is_identifier(&i.value) && !i.value.contains('-') {
        Some(i.value)
    } else {
        cx.error(
            i.referenced,
            format!("`into`: `{}` is not a variable name", i.value),
        );
        None
    }
}

pub fn compile_retry(
    cx: &mut FileCx<'_>,
    raw: Option<Spanned<Vec<Spanned<String>>>>,
) -> Vec<Duration> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.value.len() > 20 {
        cx.error(raw.referenced, "`retry` has more than 20 waits");
    }
    raw.value
        .iter()
        .filter_map(|d| cx.duration(d, "retry"))
        .collect()
}

pub fn compile_http_step(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Spanned<RawHttpStep>,
    retry: Vec<Duration>,
) -> Option<HttpStep> {
    let loc = raw.referenced;
    let raw = raw.value;
    let before = cx.diagnostics.len();
    let method = match &raw.method {
        None => reqwest::Method::GET,
        Some(m) => match m.value.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            "HEAD" => reqwest::Method::HEAD,
            "OPTIONS" => reqwest::Method::OPTIONS,
            other => {
                cx.error(m.referenced, format!("unknown method `{other}`: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"));
                reqwest::Method::GET
            }
        },
    };
    let connection = match &raw.connection {
        None => None,
        Some(c) => {
            match tenant.connections.get(&c.value) {
                Some(Connection::Http(h)) => Some(h.clone()),
                Some(other) => {
                    cx.error(c.referenced, format!("connection `{}` is a {} connection; an `http` step needs an http one ({})", c.value, other.kind(), known(tenant, "http")));
                    None
                }
                None => {
                    cx.error(
                        c.referenced,
                        format!(
                            "unknown connection `{}` (http connections in {}/_tenant.yaml: {})",
                            c.value,
                            tenant.name,
                            known(tenant, "http")
                        ),
                    );
                    None
                }
            }
        }
    };
    let url_text = raw.url.value.trim_start();
    if raw.connection.is_none()
        && !(url_text.starts_with("http://")
            || url_text.starts_with("https://")
            || url_text.starts_with("{{"))
    {
        cx.error(
            raw.url.referenced,
            "`url` is relative: give an absolute http(s):// URL or a `connection:` with a base_url",
        );
    }
    let url = cx.template(&raw.url, "url");
    let mut headers = Vec::new();
    for (k, v) in &raw.headers {
        if !is_header_name(k) {
            cx.error(v.referenced, format!("`{k}` is not a valid header name"));
            continue;
        }
        if let Some(t) = cx.template(v, &format!("header {k}")) {
            headers.push((k.to_ascii_lowercase(), t));
        }
    }
    let body = raw.body.as_ref().and_then(|b| cx.expr(b, "body"));
    let encoding = match raw
        .content_type
        .as_ref()
        .map(|c| c.value.trim().to_ascii_lowercase())
    {
        None => BodyEncoding::Json,
        Some(ct) if ct == "application/json" || ct.ends_with("+json") => BodyEncoding::Json,
        Some(ct) if ct == "application/x-www-form-urlencoded" => BodyEncoding::Form,
        Some(ct) if ct.contains('/') => BodyEncoding::Text(ct),
        Some(ct) => {
            if let Some(c) = &raw.content_type {
                cx.error(
                    c.referenced,
                    format!("`{ct}` is not a content type like application/json"),
                );
            }
            BodyEncoding::Json
        }
    };
    if raw.content_type.is_some() && raw.body.is_none() {
        cx.error(loc, "`content_type` describes `body`, which is missing");
    }
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| cx.positive_duration(t, "timeout"));
    let into = into_name(cx, raw.into);
    let mut accept_status = Vec::new();
    for s in raw.accept_status.iter().flatten() {
        if (100..=599).contains(&s.value) {
            accept_status.push(s.value as u16);
        } else {
            cx.error(
                s.referenced,
                format!("`accept_status`: {} is not an HTTP status", s.value),
            );
        }
    }
    if cx.diagnostics.len() != before {
        return None;
    }
    Some(HttpStep {
        method,
        url: url?,
        connection,
        headers,
        body,
        encoding,
        timeout,
        into,
        accept_status,
        retry,
        outbound: tenant.outbound.clone(),
        secrets: tenant.secrets.clone(),
    })
}

/// The highest `$n` of a query, outside quoted strings and identifiers.
fn highest_param(query: &str) -> usize {
    let b = query.as_bytes();
    let (mut i, mut highest) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start {
                    highest = highest.max(query[start..end].parse().unwrap_or(0));
                }
                i = end.max(i + 1) - 1;
            }
            _ => {}
        }
        i += 1;
    }
    highest
}

pub fn compile_sql_step(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    raw: Spanned<RawSqlStep>,
    retry: Vec<Duration>,
    name: Option<&str>,
) -> Option<SqlStep> {
    let raw = raw.value;
    let before = cx.diagnostics.len();
    let once = raw.once.as_ref().is_some_and(|o| o.value);
    if let Some(o) = raw.once.as_ref().filter(|o| o.value) {
        match name {
            None => cx.error(
                o.referenced,
                "`once: true` needs the step to have a `name:`: its effect is recorded under the message id and that name, which must not change when the file is edited",
            ),
            Some(n) if !cx.once_steps.insert(n.to_owned()) => cx.error(
                o.referenced,
                format!("another `once: true` step is named `{n}`: each records its effect under its own name"),
            ),
            Some(_) => {}
        }
    }
    let connection = match tenant.connections.get(&raw.connection.value) {
        Some(Connection::Postgres(p)) => Some(p.clone()),
        Some(other) => {
            cx.error(
                raw.connection.referenced,
                format!(
                    "connection `{}` is an {} connection; a `sql` step needs a postgres one ({})",
                    raw.connection.value,
                    other.kind(),
                    known(tenant, "postgres")
                ),
            );
            None
        }
        None => {
            cx.error(
                raw.connection.referenced,
                format!(
                    "unknown connection `{}` (postgres connections in {}/_tenant.yaml: {})",
                    raw.connection.value,
                    tenant.name,
                    known(tenant, "postgres")
                ),
            );
            None
        }
    };
    if raw.query.value.trim().is_empty() {
        cx.error(raw.query.referenced, "`query` is empty");
    }
    let highest = highest_param(&raw.query.value);
    if highest != raw.params.len() {
        cx.error(raw.query.referenced, format!("the query uses ${highest} as its highest parameter but `params` has {} expression(s); bind every value with `$n` and one `params` entry each", raw.params.len()));
    }
    let params: Vec<_> = raw
        .params
        .iter()
        .enumerate()
        .filter_map(|(i, p)| cx.expr(p, &format!("params[{i}]")))
        .collect();
    let timeout = raw
        .timeout
        .as_ref()
        .and_then(|t| cx.positive_duration(t, "timeout"));
    let into = into_name(cx, raw.into);
    let connection = connection?;
    (cx.diagnostics.len() == before).then(|| SqlStep {
        timeout: timeout.unwrap_or_else(|| connection.statement_timeout()),
        connection,
        query: raw.query.value.into(),
        params,
        into,
        single: raw.single,
        retry,
        once,
    })
}

/// `auth: hmac:` with its preset applied.
pub fn compile_hmac(
    cx: &mut FileCx<'_>,
    raw: Spanned<RawHmac>,
    env: &EnvLookup,
) -> Option<HmacRule> {
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

pub fn compile_allow_ips(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_highest_parameter_outside_strings() {
        assert_eq!(highest_param("select * from t where a = $1 and b = $2"), 2);
        assert_eq!(highest_param("select '$5', \"$7\" from t where a = $1"), 1);
        assert_eq!(highest_param("select 1"), 0);
        assert_eq!(highest_param("select $10"), 10);
    }
}
