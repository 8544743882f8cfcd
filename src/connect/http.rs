//! Outbound HTTP: one client for the whole server (connection reuse across flows),
//! the outbound policy (allow-listed hosts, no private addresses) and the `http:`
//! connections of `_tenant.yaml`.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use super::Secrets;
use super::address::{client_builder, is_public};

/// Used when neither the step nor its connection sets a timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

/// Which hosts flows may call. The default allows every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Host names (`api.example.com`) or suffix patterns (`*.example.com`); empty
    /// means any host.
    pub allow_hosts: Vec<String>,
    /// Refuse loopback, private (RFC 1918, unique local), link-local and other
    /// non-public addresses, whether written in the URL or resolved from a name.
    pub deny_private: bool,
}

/// Why a URL may not be called: the policy refuses it, or a connection's
/// request would leave its base URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("host `{0}` is not in the outbound allow-list")]
    NotAllowed(String),
    #[error("address {0} is private, and calls to private addresses are denied")]
    Private(IpAddr),
    #[error(
        "`{url}` has a `{segment}` path segment; the URL of a connection's request may not move up its path"
    )]
    DotSegment { url: String, segment: String },
    /// `why`: the URL parser's words.
    #[error("`{url}` is not a URL: {why}")]
    NotUrl { url: String, why: String },
    #[error("`{url}` is not a URL path: {why}")]
    NotUrlPath { url: String, why: String },
    #[error("`{url}` is outside the base URL of connection `{connection}`")]
    Outside { url: String, connection: String },
}

/// The outbound HTTP client could not be built (its TLS roots, most likely).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the outbound HTTP client cannot start: {0}")]
pub struct ClientError(#[source] std::sync::Arc<reqwest::Error>);

impl OutboundPolicy {
    /// Why `url` may not be called, if it may not.
    pub fn check(&self, url: &reqwest::Url) -> Result<(), UrlRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::Scheme(url.scheme().to_owned()));
        }
        let Some(raw_host) = url.host_str() else {
            return Err(UrlRefused::NoHost);
        };
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, &host))
        {
            return Err(UrlRefused::NotAllowed(host));
        }
        if self.deny_private
            && let Ok(ip) = host.parse::<IpAddr>()
            && !is_public(&ip)
        {
            return Err(UrlRefused::Private(ip));
        }
        Ok(())
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// The server's outbound HTTP client and its policy.
pub struct Outbound {
    pub policy: OutboundPolicy,
    client: OnceLock<Result<reqwest::Client, ClientError>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Outbound {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self {
            policy,
            client: OnceLock::new(),
        }
    }

    /// The client, built on first use (loading CA roots costs a few milliseconds
    /// that `flowgate check` need not pay).
    pub fn client(&self) -> Result<&reqwest::Client, ClientError> {
        self.client
            .get_or_init(|| {
                // Redirects are followed by `send`, which checks each hop.
                client_builder(self.policy.deny_private)
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| ClientError(std::sync::Arc::new(e)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// One request of an `http` step, sent by [`Outbound::send`].
pub struct OutboundRequest {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    /// The connection's headers and Basic credentials: sent to the first URL's
    /// origin only, never to another a redirect leads to.
    pub credentials: Vec<(String, String)>,
    pub basic: Option<BasicCredentials>,
    /// The step's own headers: on every hop, but for credential headers
    /// (`authorization`, cookies, `x-api-key`...) on another origin.
    pub headers: Vec<(String, String)>,
    /// The body and its content type.
    pub body: Option<(Vec<u8>, String)>,
    /// For each hop.
    pub timeout: Duration,
}

/// Why [`Outbound::send`] gave no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The policy refused a hop: sending again would be refused again.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Http(reqwest::Error),
}

impl Outbound {
    /// Sends `r`, following up to 5 redirects. Each hop is checked against the
    /// policy as the first URL was (its name resolved through the same filter);
    /// a hop to another origin (scheme, host or port) carries no credentials;
    /// 303, and 301/302 after a POST, go on as a GET without the body.
    pub async fn send(&self, r: &OutboundRequest) -> Result<reqwest::Response, SendError> {
        let client = self
            .client()
            .map_err(|e| SendError::Refused(e.to_string()))?;
        let origin = r.url.origin();
        let mut url = r.url.clone();
        let mut method = r.method.clone();
        let mut body = r.body.as_ref();
        for hop in 0..=MAX_REDIRECTS {
            let home = url.origin() == origin;
            let mut req = client
                .request(method.clone(), url.clone())
                .timeout(r.timeout);
            if home {
                for (k, v) in &r.credentials {
                    if !r.headers.iter().any(|(n, _)| n == k) {
                        req = req.header(k.as_str(), v.as_str());
                    }
                }
                if let Some(b) = &r.basic {
                    req = req.basic_auth(&b.username, Some(&b.password));
                }
            }
            for (k, v) in &r.headers {
                if home || !crate::domain::SECRET_HEADERS.contains(&k.as_str()) {
                    req = req.header(k.as_str(), v.as_str());
                }
            }
            if let Some((bytes, ct)) = body {
                if !r.headers.iter().any(|(n, _)| n == "content-type") {
                    req = req.header(reqwest::header::CONTENT_TYPE, ct.as_str());
                }
                req = req.body(bytes.clone());
            }
            let res = req.send().await.map_err(SendError::Http)?;
            let status = res.status().as_u16();
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location)
            else {
                return Ok(res);
            };
            if hop == MAX_REDIRECTS {
                return Err(SendError::Refused(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let next = url
                .join(location)
                .map_err(|e| SendError::Refused(format!("a redirect to `{location}`: {e}")))?;
            self.policy
                .check(&next)
                .map_err(|why| SendError::Refused(format!("a redirect to {next}: {why}")))?;
            if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST) {
                if method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                }
                body = None;
            }
            url = next;
        }
        Err(SendError::Refused(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// Basic credentials of a connection.
#[derive(Clone)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({}, [redacted])", self.username)
    }
}

/// An `http:` connection: where relative URLs go, and what every request carries.
#[derive(Debug)]
pub struct HttpConnection {
    pub name: String,
    pub base_url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub basic: Option<BasicCredentials>,
    /// Values of this connection that never appear in traces or results.
    pub secrets: Secrets,
}

impl HttpConnection {
    /// `url` resolved against the base URL. A relative path is appended to the
    /// base path: `https://h/api` + `items/1` or `/items/1` gives
    /// `https://h/api/items/1`. The result never leaves the base URL, since the
    /// connection's credentials go with it: a `.` or `..` segment (also written
    /// `%2e`) is refused before anything is sent, and so is an absolute URL on
    /// another origin or outside the base path.
    pub fn resolve(&self, url: &str) -> Result<reqwest::Url, UrlRefused> {
        if let Some(segment) = dot_segment(url) {
            return Err(UrlRefused::DotSegment {
                url: url.to_owned(),
                segment,
            });
        }
        let resolved = if url.starts_with("http://") || url.starts_with("https://") {
            reqwest::Url::parse(url).map_err(|e| UrlRefused::NotUrl {
                url: url.to_owned(),
                why: e.to_string(),
            })?
        } else {
            let base = self.base_url.as_str().trim_end_matches('/');
            let joined = if url.is_empty() {
                base.to_owned()
            } else if url.starts_with('?') {
                format!("{base}{url}")
            } else {
                format!("{base}/{}", url.trim_start_matches(['/', '\\']))
            };
            reqwest::Url::parse(&joined).map_err(|e| UrlRefused::NotUrlPath {
                url: url.to_owned(),
                why: e.to_string(),
            })?
        };
        let base_path = self.base_url.path().trim_end_matches('/');
        let path = resolved.path();
        let under = path == base_path
            || path
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'));
        if resolved.origin() != self.base_url.origin() || !under {
            return Err(UrlRefused::Outside {
                url: url.to_owned(),
                connection: self.name.clone(),
            });
        }
        Ok(resolved)
    }
}

/// The first `.` or `..` segment of `url`'s path, however it is written: `%2e`
/// for a dot, and `\`, `%2f` or `%5c` as a separator (as URL parsers, or the
/// servers behind them, read them).
fn dot_segment(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
        .map_or(path, |rest| {
            rest.find(['/', '\\']).map_or("", |i| &rest[i..])
        });
    let path = path
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace(['\\'], "/")
        .replace("%2f", "/")
        .replace("%5c", "/");
    path.split('/')
        .find(|seg| *seg == "." || *seg == "..")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allow_list_and_private_addresses() {
        let p = OutboundPolicy {
            allow_hosts: vec!["api.example.com".into(), "*.duro.example".into()],
            deny_private: true,
        };
        let ok = |u: &str| p.check(&reqwest::Url::parse(u).unwrap());
        assert!(ok("https://api.example.com/x").is_ok());
        assert!(ok("https://eu.duro.example/x").is_ok());
        assert!(ok("https://duro.example/x").is_err());
        assert!(
            ok("https://evil.com/")
                .unwrap_err()
                .to_string()
                .contains("allow-list")
        );
        let open = OutboundPolicy {
            allow_hosts: vec![],
            deny_private: true,
        };
        for u in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://[fd00::1]/",
        ] {
            assert!(open.check(&reqwest::Url::parse(u).unwrap()).is_err(), "{u}");
        }
        assert!(
            open.check(&reqwest::Url::parse("http://93.184.216.34/").unwrap())
                .is_ok()
        );
        assert!(
            OutboundPolicy::default()
                .check(&reqwest::Url::parse("http://127.0.0.1/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn relative_urls_join_the_base_path() {
        let c = HttpConnection {
            name: "c".into(),
            base_url: reqwest::Url::parse("https://h.example/api/").unwrap(),
            headers: vec![],
            timeout: None,
            basic: None,
            secrets: Secrets::default(),
        };
        assert_eq!(
            c.resolve("/items/1").unwrap().as_str(),
            "https://h.example/api/items/1"
        );
        assert_eq!(
            c.resolve("items?x=1").unwrap().as_str(),
            "https://h.example/api/items?x=1"
        );
        assert_eq!(
            c.resolve("https://h.example/api/z").unwrap().as_str(),
            "https://h.example/api/z"
        );
        for outside in [
            "http://o.example/z",
            "http://h.example/api/z",
            "https://h.example/apis/z",
            "https://h.example/",
            "https://h.example:444/api/z",
        ] {
            assert!(
                c.resolve(outside)
                    .unwrap_err()
                    .to_string()
                    .contains("outside the base URL"),
                "{outside}"
            );
        }
        for dots in [
            "..",
            "/items/..",
            "items/./x",
            "%2e%2e/x",
            "%2E%2e",
            ".%2E",
            "..\\x",
            "https://h.example/api/../x",
            "/a/..?q=1",
        ] {
            assert!(
                c.resolve(dots)
                    .unwrap_err()
                    .to_string()
                    .contains("path segment"),
                "{dots}"
            );
        }
        // Dots that are not whole segments, and dots in the query, are fine.
        for fine in ["/a..b/c", "/v1.2/x", "/x?path=../y", "/.well-known/x"] {
            assert!(c.resolve(fine).is_ok(), "{fine}");
        }
    }
}
