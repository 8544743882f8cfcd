//! What a signing caller's signature looks like: the rule a trigger's
//! `auth: hmac:` compiles to and the HTTP edge checks requests against.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// How a signing sender lays out its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// The header holds `<prefix><signature>` of the body (or of
    /// `<timestamp>.<body>` when a timestamp header is configured).
    Plain,
    /// Stripe: `t=<unix>,v1=<hex>[,v1=...]`, signed over `<t>.<body>`.
    Stripe,
}

/// A trigger's `auth: hmac:` after presets and `${VAR}` are applied.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacRule {
    pub scheme: SignatureScheme,
    /// Lower case.
    pub header: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    pub prefix: String,
    pub secret: Vec<u8>,
    /// Lower case; for `Plain`, the header with the unix time that is signed too.
    pub timestamp_header: Option<String>,
    /// How old a signed timestamp may be (either way) before the request is a replay.
    pub tolerance: Duration,
}

impl std::fmt::Debug for HmacRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacRule")
            .field("scheme", &self.scheme)
            .field("header", &self.header)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("prefix", &self.prefix)
            .field("secret", &super::REDACTED)
            .field("timestamp_header", &self.timestamp_header)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}
