//! Outbound HTTP: one client for the whole server (connection reuse across flows),
//! the outbound policy (allow-listed hosts, no private addresses) and the `http:`
//! connections of `_tenant.yaml`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::Secrets;

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

impl OutboundPolicy {
    /// Why `url` may not be called, if it may not.
    pub fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme `{}` is not http or https", url.scheme()));
        }
        let Some(raw_host) = url.host_str() else {
            return Err("the URL has no host".into());
        };
        let host = raw_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, &host))
        {
            return Err(format!("host `{host}` is not in the outbound allow-list"));
        }
        if self.deny_private
            && let Ok(ip) = host.parse::<IpAddr>()
            && !is_public(&ip)
        {
            return Err(format!(
                "address {ip} is private and outbound calls to private addresses are denied"
            ));
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

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared address space
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

/// Resolves names and, under `deny_private`, keeps only public addresses: the
/// check happens on the addresses actually connected to, so a name that resolves
/// to an internal address (or changes to one) cannot be used to reach it.
struct PolicyResolver {
    deny_private: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let deny_private = self.deny_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !deny_private || is_public(&a.ip()))
                .collect();
            if addrs.is_empty() {
                let why = if deny_private {
                    format!(
                        "`{host}` resolves only to private addresses, and outbound calls to private addresses are denied"
                    )
                } else {
                    format!("`{host}` has no address")
                };
                return Err(why.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The server's outbound HTTP client and its policy.
pub struct Outbound {
    pub policy: OutboundPolicy,
    client: OnceLock<Result<reqwest::Client, String>>,
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
    pub fn client(&self) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                let policy = self.policy.clone();
                reqwest::Client::builder()
                    .dns_resolver(Arc::new(PolicyResolver {
                        deny_private: policy.deny_private,
                    }))
                    .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                        if attempt.previous().len() >= MAX_REDIRECTS {
                            return attempt.error("too many redirects");
                        }
                        match policy.check(attempt.url()) {
                            Ok(()) => attempt.follow(),
                            Err(why) => attempt.error(why),
                        }
                    }))
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| format!("the outbound HTTP client cannot start: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
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
    /// `url` resolved against the base URL (an absolute URL stays as it is). A
    /// relative path is appended to the base path: `https://h/api` + `items/1`
    /// or `/items/1` gives `https://h/api/items/1`.
    pub fn resolve(&self, url: &str) -> Result<reqwest::Url, String> {
        if url.starts_with("http://") || url.starts_with("https://") {
            return reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"));
        }
        let base = self.base_url.as_str().trim_end_matches('/');
        let joined = if url.is_empty() {
            base.to_owned()
        } else if url.starts_with('?') {
            format!("{base}{url}")
        } else {
            format!("{base}/{}", url.trim_start_matches('/'))
        };
        reqwest::Url::parse(&joined).map_err(|e| format!("`{url}` is not a URL path: {e}"))
    }
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
        assert!(ok("https://evil.com/").unwrap_err().contains("allow-list"));
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
            c.resolve("http://o.example/z").unwrap().as_str(),
            "http://o.example/z"
        );
    }
}
