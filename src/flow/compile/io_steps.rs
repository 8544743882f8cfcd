//! The steps that reach other systems: `http` (through a tenant's connection
//! or to an absolute URL) and `sql` (through a postgres connection), and the
//! `retry:` both take.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::connect::{Connection, PgConnection};
use crate::flow::model::{BodyEncoding, HttpStep, SqlStep, Tenant};
use crate::flow::raw::{RawHttpStep, RawSqlStep};

use super::cx::{FileCx, is_header_name, is_variable_name};

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
    if is_variable_name(&i.value) {
        Some(i.value)
    } else {
        cx.error(
            i.referenced,
            format!("`into`: `{}` is not a variable name", i.value),
        );
        None
    }
}

pub(super) fn compile_retry(
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

pub(super) fn compile_http_step(
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

/// The postgres connection `name` of the tenant, for `user` (a step kind).
pub(super) fn pg_connection(
    cx: &mut FileCx<'_>,
    tenant: &Tenant,
    name: &Spanned<String>,
    user: &str,
) -> Option<Arc<PgConnection>> {
    match tenant.connections.get(&name.value) {
        Some(Connection::Postgres(p)) => Some(p.clone()),
        Some(other) => {
            cx.error(
                name.referenced,
                format!(
                    "connection `{}` is an {} connection; {user} needs a postgres one ({})",
                    name.value,
                    other.kind(),
                    known(tenant, "postgres")
                ),
            );
            None
        }
        None => {
            cx.error(
                name.referenced,
                format!(
                    "unknown connection `{}` (postgres connections in {}/_tenant.yaml: {})",
                    name.value,
                    tenant.name,
                    known(tenant, "postgres")
                ),
            );
            None
        }
    }
}

pub(super) fn compile_sql_step(
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
    let connection = pg_connection(cx, tenant, &raw.connection, "a `sql` step");
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
