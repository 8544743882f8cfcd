//! `connections:` of `_tenant.yaml`: named PostgreSQL and HTTP connections.
//! `${VAR}` is expanded here (and in `auth: hmac:`), and every value read from
//! the environment joins the tenant's secrets.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_saphyr::Spanned;

use crate::connect::http::BasicCredentials;
use crate::connect::{
    Connection, EnvLookup, HttpConnection, PgOptions, Registry, Secrets, postgres,
};
use crate::domain::SECRET_HEADERS;
use crate::flow::raw::{RawConnection, RawHttpConnection};

use super::cx::{FileCx, is_header_name};

fn is_connection_name(s: &str) -> bool {
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
        if !is_connection_name(&name) {
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
    raw: Spanned<RawHttpConnection>,
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
