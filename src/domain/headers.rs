//! Headers as flowgate keeps them. Those that carry credentials: request
//! decoding, flow compilation, outbound HTTP steps and connections all keep
//! them out of documents, traces and the store, so the list lives here, below
//! all of them. And the `(name, value)` text pairs that input documents,
//! stored answers and the delivery log hold, whichever HTTP crate read them.

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

/// The pairs of a header map: names as the map holds them (lower case),
/// values decoded as UTF-8, lossily.
pub fn header_pairs<'a, N, V>(
    headers: impl IntoIterator<Item = (&'a N, &'a V)>,
) -> Vec<(String, String)>
where
    N: AsRef<str> + ?Sized + 'a,
    V: AsRef<[u8]> + ?Sized + 'a,
{
    headers
        .into_iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_ref());
            (k.as_ref().to_owned(), value.into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_are_not_utf8_are_decoded_lossily() {
        let raw: Vec<(&str, &[u8])> = vec![("x-a", b"ok"), ("x-b", b"\xff!")];
        let pairs = header_pairs(raw.iter().map(|(k, v)| (*k, *v)));
        assert_eq!(
            pairs,
            vec![
                ("x-a".to_owned(), "ok".to_owned()),
                ("x-b".to_owned(), "\u{fffd}!".to_owned())
            ]
        );
    }
}
