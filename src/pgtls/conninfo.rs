//! libpq's connection strings, `postgres://` URLs and `key=value` words: the
//! TLS options flowgate handles itself are taken out, the rest is for the driver.

use super::TlsConfigError;

/// The TLS options flowgate handles itself, taken out of a connection string.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SslOptions {
    pub mode: Option<String>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub crl: Option<String>,
    pub crl_dir: Option<String>,
}

/// Splits the TLS options (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslcrl`,
/// `sslcrldir`) off a connection string; what is left is for the driver.
pub(super) fn take_ssl_options(conninfo: &str) -> Result<(String, SslOptions), TlsConfigError> {
    let mut ssl = SslOptions::default();
    let mut keep = |key: &str, value: String| -> Result<bool, TlsConfigError> {
        match key {
            "sslmode" => ssl.mode = Some(value),
            "sslrootcert" => ssl.root_cert = Some(value),
            "sslcert" => ssl.cert = Some(value),
            "sslkey" => ssl.key = Some(value),
            "sslcrl" => ssl.crl = Some(value),
            "sslcrldir" => ssl.crl_dir = Some(value),
            "sslpassword" => return Err(TlsConfigError::SslPassword),
            _ => return Ok(true),
        }
        Ok(false)
    };
    let rest = if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            return Ok((conninfo.to_owned(), ssl));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if keep(&percent_decode(k)?, percent_decode(v)?)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(conninfo)? {
            if keep(&k, v.clone())? {
                kept.push(format!(
                    "{k}='{}'",
                    v.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        kept.join(" ")
    };
    Ok((rest, ssl))
}

fn percent_decode(s: &str) -> Result<String, TlsConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| TlsConfigError::PercentEncoding(s.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsConfigError::NotUtf8)
}

/// libpq's `key=value` words: spaces around `=` allowed, values optionally in
/// single quotes with `\'` and `\\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, TlsConfigError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(TlsConfigError::NoValue(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(TlsConfigError::UnclosedQuote(key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, SslOptions) {
        take_ssl_options(s).unwrap()
    }

    /// Splits `s` and checks what is left and the `sslmode` and `sslrootcert` taken out.
    fn assert_split(s: &str, rest: &str, mode: &str, root_cert: &str) -> String {
        let (left, ssl) = split(s);
        assert_eq!(left, rest);
        assert_eq!(ssl.mode.as_deref(), Some(mode));
        assert_eq!(ssl.root_cert.as_deref(), Some(root_cert));
        left
    }

    #[test]
    fn url_options_flowgate_handles_are_taken_out_and_the_rest_kept() {
        assert_split(
            "postgres://u:p%40ss@db.example:5432/app?sslmode=verify-full&options=-csearch_path%3Dx&sslrootcert=%2Fetc%2Fca%20certs.pem",
            "postgres://u:p%40ss@db.example:5432/app?options=-csearch_path%3Dx",
            "verify-full",
            "/etc/ca certs.pem",
        );
        let (rest, ssl) = split("postgres://u@h/db?sslmode=require");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(ssl.mode.as_deref(), Some("require"));
        assert_eq!(split("postgresql://u@h/db").1, SslOptions::default());
    }

    #[test]
    fn key_value_strings_are_split_with_quotes_and_escapes() {
        let rest = assert_split(
            "host=db.example  user = app password='it\\'s secret' sslmode=verify-ca sslrootcert='/etc/my ca.pem'",
            "host='db.example' user='app' password='it\\'s secret'",
            "verify-ca",
            "/etc/my ca.pem",
        );
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's secret"[..]));
        assert!(take_ssl_options("host=x password='open").is_err());
        assert!(take_ssl_options("host").is_err());
    }
}
