//! Why a delivery attempt failed, in a word a receiver's operator can act on
//! (`connect`, `tls`, `timeout`, `status`, `redirect`, `policy`) and a sentence
//! that says what happened underneath: a refused connection and a certificate
//! the receiver's server presents that is not trusted read differently.

use std::error::Error;

/// The kind of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection: refused, unreachable, no address for the name.
    Connect,
    /// The TLS handshake failed (a certificate, a protocol).
    Tls,
    /// No answer in time (`subscriptions_timeout`).
    Timeout,
    /// An answer, but not 2xx.
    Status,
    /// A 3xx answer: receivers are not followed elsewhere.
    Redirect,
    /// Not sent: the settings or the subscription forbid it.
    Policy,
}

impl FailureKind {
    pub const ALL: [Self; 6] = [
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Status,
        Self::Redirect,
        Self::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Redirect => "redirect",
            Self::Policy => "policy",
        }
    }
}

/// A failed attempt: its kind and what to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The failure of an answer with `status` (not 2xx).
    pub fn status(status: u16, location: Option<&str>) -> Self {
        if (300..400).contains(&status) {
            let to = location.map(|l| format!(" to {l}")).unwrap_or_default();
            return Self::new(
                FailureKind::Redirect,
                format!(
                    "the receiver answered {status}, a redirect{to}; redirects are not followed"
                ),
            );
        }
        Self::new(
            FailureKind::Status,
            format!("the receiver answered {status}"),
        )
    }

    /// The failure of a request that got no answer, from its error's causes.
    pub fn of_request(e: &reqwest::Error, host: &str) -> Self {
        let causes = crate::domain::chain::describe(e);
        if e.is_timeout() {
            return Self::new(
                FailureKind::Timeout,
                format!("no answer from {host} in time: {causes}"),
            );
        }
        if e.is_redirect() {
            return Self::new(FailureKind::Redirect, causes);
        }
        let mut link: Option<&(dyn Error + 'static)> = Some(e);
        let (mut tls, mut refused, mut denied) = (false, false, false);
        while let Some(l) = link {
            if l.downcast_ref::<rustls::Error>().is_some() {
                tls = true;
            }
            if let Some(io) = l.downcast_ref::<std::io::Error>() {
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                {
                    tls = true;
                }
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    refused = true;
                }
            }
            let text = l.to_string().to_ascii_lowercase();
            if text.contains("certificate") || text.contains("handshake") {
                tls = true;
            }
            if text.contains("private addresses are denied") {
                denied = true;
            }
            link = l.source();
        }
        if denied {
            return Self::new(
                FailureKind::Policy,
                format!("{causes} (subscriptions_deny_private)"),
            );
        }
        if tls {
            return Self::new(
                FailureKind::Tls,
                format!("TLS handshake with {host} failed: {causes}"),
            );
        }
        if refused {
            return Self::new(
                FailureKind::Connect,
                format!("{host} refused the connection: {causes}"),
            );
        }
        Self::new(
            FailureKind::Connect,
            format!("cannot reach {host}: {causes}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_statuses_read_apart() {
        let r = Failure::status(302, Some("https://elsewhere/"));
        assert_eq!(r.kind, FailureKind::Redirect);
        assert!(r.message.contains("https://elsewhere/"));
        assert_eq!(Failure::status(500, None).kind, FailureKind::Status);
        assert_eq!(
            Failure::status(404, None).message,
            "the receiver answered 404"
        );
    }
}
