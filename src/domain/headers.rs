//! Headers that carry credentials. Request decoding, flow compilation, outbound
//! HTTP steps and connections all keep them out of documents, traces and the
//! store, so the list lives here, below all of them.

/// Headers whose values never reach a flow, a trace or the store.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
];

/// What stands in for a secret header's value.
pub const REDACTED: &str = "[redacted]";
