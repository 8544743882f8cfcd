//! An error shown with its causes, for people: logs and the command line.
//!
//! Errors keep what happened underneath as `source()` links. Many a driver's
//! message already repeats its cause ("error performing TLS handshake:
//! invalid peer certificate: ..."), and often only the cause says what went
//! wrong: each link is shown once, after the ones that do not already say it.

use std::error::Error;
use std::fmt;

/// Shows an error and every cause its message leaves out, joined by `: `.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self.0))
    }
}

/// The text of [`Chain`].
pub fn describe(e: &(dyn Error + '_)) -> String {
    let mut links = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        links.push(c.to_string());
        cause = c.source();
    }
    describe_links(links)
}

/// Joins the messages of a chain's links (outermost first), leaving out each
/// one that what is said already says.
pub fn describe_links(links: impl IntoIterator<Item = String>) -> String {
    let mut text = String::new();
    for said in links {
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Link(&'static str, #[source] Option<Box<Link>>);

    #[test]
    fn each_cause_is_said_once() {
        let e = Link(
            "error performing TLS handshake",
            Some(Box::new(Link(
                "invalid peer certificate: UnknownIssuer",
                Some(Box::new(Link("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            describe(&e),
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(Chain(&Link("alone", None)).to_string(), "alone");
    }

    /// An error that writes its source into its own message, as
    /// `#[error("...: {source}")]` does, is still said once with its chain.
    #[test]
    fn a_source_in_the_message_is_not_said_again() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on {addr}: {source}")]
        struct Listen {
            addr: &'static str,
            source: std::io::Error,
        }
        let e = Listen {
            addr: "0.0.0.0:8080",
            source: std::io::Error::from_raw_os_error(98),
        };
        let said = describe(&e);
        assert_eq!(said.matches("(os error 98)").count(), 1, "{said}");
        assert!(
            said.starts_with("cannot listen on 0.0.0.0:8080: "),
            "{said}"
        );
        // The same through anyhow's chain, as `main` prints it.
        let e = anyhow::Error::new(e).context("server stopped");
        let said = describe_links(e.chain().map(|c| c.to_string()));
        assert_eq!(said.matches("(os error 98)").count(), 1, "{said}");
        // A cause that adds something is kept.
        let e = Link(
            "error sending request",
            Some(Box::new(Link("connection refused", None))),
        );
        assert_eq!(describe(&e), "error sending request: connection refused");
    }
}
