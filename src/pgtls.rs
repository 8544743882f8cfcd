//! TLS for every PostgreSQL connection flowgate makes (the store, its LISTEN
//! connection, `sql` steps), with rustls.
//!
//! The connection string speaks libpq's language, so that a URL that works with
//! `psql` works here:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | no |
//! | `require` | always | no; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | always | issued by a CA in `sslrootcert` |
//! | `verify-full` | always | as `verify-ca`, and valid for the host name |
//!
//! `sslrootcert` names a PEM file of CA certificates, or is `system` for the
//! machine's CA store (then only with `verify-full`, as in libpq); `sslcrl` (a PEM
//! file) and `sslcrldir` (a directory of them) name revocation lists the server's
//! certificate chain is checked against. `sslcert` and `sslkey` name a client
//! certificate (PEM, with its chain) and its unencrypted key, for servers that log
//! clients in by certificate; `sslpassword` is refused with a clear error rather
//! than ignored.
//! SCRAM authentication over TLS binds to the server's certificate
//! (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) when the server offers it;
//! `channel_binding=require` in the URL insists on it, as in libpq.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Issuer,
    IssuerAndName,
}

/// Parses a connection string (`postgres://` URL or `key=value` words) into the
/// driver's configuration and the TLS connector its `sslmode` asks for.
pub fn parse(conninfo: &str) -> Result<(tokio_postgres::Config, MakeRustls), String> {
    let (rest, ssl) = take_ssl_options(conninfo)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
    let check = match ssl.mode.as_deref() {
        None | Some("prefer") => {
            config.ssl_mode(SslMode::Prefer);
            Check::Nothing
        }
        Some("disable") => {
            config.ssl_mode(SslMode::Disable);
            Check::Nothing
        }
        Some("require") => {
            config.ssl_mode(SslMode::Require);
            if ssl.root_cert.is_some() {
                Check::Issuer
            } else {
                Check::Nothing
            }
        }
        Some("verify-ca") => {
            config.ssl_mode(SslMode::Require);
            Check::Issuer
        }
        Some("verify-full") => {
            config.ssl_mode(SslMode::Require);
            Check::IssuerAndName
        }
        Some(other) => {
            return Err(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    if config.get_channel_binding() == tokio_postgres::config::ChannelBinding::Require
        && config.get_ssl_mode() == SslMode::Disable
    {
        return Err(
            "`channel_binding=require` binds to the server's TLS certificate, so it cannot be used with `sslmode=disable`".into(),
        );
    }
    if ssl.root_cert.as_deref() == Some("system") && check != Check::IssuerAndName {
        return Err(
            "`sslrootcert=system` trusts every public CA, so it needs `sslmode=verify-full`".into(),
        );
    }
    let roots = match (&ssl.root_cert, check) {
        (Some(path), Check::Issuer | Check::IssuerAndName) => Some(load_roots(path)?),
        (None, Check::Issuer | Check::IssuerAndName) => {
            return Err(format!(
                "sslmode `{}` needs `sslrootcert`: a PEM file of the CA certificates to trust",
                ssl.mode.as_deref().unwrap_or_default()
            ));
        }
        _ => None,
    };
    let crls = load_crls(&ssl)?;
    if !crls.is_empty() && roots.is_none() {
        return Err(
            "`sslcrl` and `sslcrldir` need the server's certificate checked: `sslmode=verify-ca` or `verify-full`".into(),
        );
    }
    let client = match (&ssl.cert, &ssl.key) {
        (Some(cert), Some(key)) => Some(load_client_identity(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(
                "`sslcert` and `sslkey` go together: the client certificate and its key".into(),
            );
        }
    };
    Ok((config, MakeRustls::new(check, roots, crls, client)?))
}

/// The TLS options flowgate handles itself, taken out of a connection string.
#[derive(Debug, Default, PartialEq)]
struct SslOptions {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    crl: Option<String>,
    crl_dir: Option<String>,
}

/// Splits the TLS options (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslcrl`,
/// `sslcrldir`) off a connection string; what is left is for the driver.
fn take_ssl_options(conninfo: &str) -> Result<(String, SslOptions), String> {
    let mut ssl = SslOptions::default();
    let mut keep = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => ssl.mode = Some(value),
            "sslrootcert" => ssl.root_cert = Some(value),
            "sslcert" => ssl.cert = Some(value),
            "sslkey" => ssl.key = Some(value),
            "sslcrl" => ssl.crl = Some(value),
            "sslcrldir" => ssl.crl_dir = Some(value),
            "sslpassword" => {
                return Err(
                    "`sslpassword` is not supported: `sslkey` must name an unencrypted key".into(),
                );
            }
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

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in connection URL near `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "connection URL option is not UTF-8".to_owned())
}

/// libpq's `key=value` words: spaces around `=` allowed, values optionally in
/// single quotes with `\'` and `\\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
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
            return Err(format!("connection string: `{key}` has no `=value`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!("connection string: `{key}` has an unclosed quote"));
                    }
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

/// An error with the causes its message leaves out ("error performing TLS
/// handshake: invalid peer certificate: ..."): what went wrong is often only there.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "sslrootcert=system: no CA certificates found on this machine ({})",
                why.join("; ")
            ));
        }
        return Ok(roots);
    }
    let certs = pem_items::<CertificateDer>("sslrootcert", path.as_ref())?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert `{path}` holds no usable certificate"));
    }
    Ok(roots)
}

/// Every item of one kind in the PEM file `path`, named by `option` if it cannot
/// be read.
fn pem_items<T: PemObject>(option: &str, path: &std::path::Path) -> Result<Vec<T>, String> {
    let failed = |e| format!("{option} `{}`: {e}", path.display());
    T::pem_file_iter(path)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)
}

/// The revocation lists of `sslcrl` (a PEM file) and `sslcrldir` (a directory of
/// them, as `openssl rehash` leaves it; every file in it is read).
fn load_crls(ssl: &SslOptions) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let mut files = Vec::new();
    if let Some(file) = &ssl.crl {
        files.push(std::path::PathBuf::from(file));
    }
    if let Some(dir) = &ssl.crl_dir {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("sslcrldir `{dir}`: {e}"))?;
        let mut in_dir: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        if in_dir.is_empty() {
            return Err(format!("sslcrldir `{dir}` holds no files"));
        }
        in_dir.sort();
        files.extend(in_dir);
    }
    let mut crls = Vec::new();
    for file in files {
        let found = pem_items::<CertificateRevocationListDer>("revocation list", &file)?;
        if found.is_empty() {
            let name = file.display();
            return Err(format!("`{name}` holds no PEM revocation list (X509 CRL)"));
        }
        crls.extend(found);
    }
    Ok(crls)
}

/// A client certificate (with the chain to hand to the server) and its key.
type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_identity(cert: &str, key: &str) -> Result<ClientIdentity, String> {
    let chain = pem_items::<CertificateDer>("sslcert", cert.as_ref())?;
    if chain.is_empty() {
        return Err(format!("sslcert `{cert}` holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!("sslkey `{key}`: {e} (a PEM private key, unencrypted, is expected)")
    })?;
    Ok((chain, key))
}

/// Makes TLS connections to PostgreSQL for tokio-postgres and deadpool.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls").finish_non_exhaustive()
    }
}

impl MakeRustls {
    fn new(
        check: Check,
        roots: Option<RootCertStore>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        client: Option<ClientIdentity>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = match roots {
            None => None,
            Some(roots) => {
                let mut builder =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if !crls.is_empty() {
                    // As libpq does with OpenSSL: every certificate of the chain is
                    // looked up (one whose issuer has no list here is refused), and an
                    // expired list does not count.
                    builder = builder.with_crls(crls).enforce_revocation_expiration();
                }
                Some(
                    builder
                        .build()
                        .map_err(|e| format!("sslrootcert or revocation lists: {e}"))?,
                )
            }
        };
        let verifier: Arc<dyn ServerCertVerifier> = match chain {
            Some(full) if check == Check::IssuerAndName => full,
            chain => Arc::new(Lenient {
                provider: provider.clone(),
                chain,
            }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert and sslkey: {e}"))?,
        };
        // As libpq 17 does: servers from 17 on require it for `sslnegotiation=direct`
        // and check it when given; older ones ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// The certificate checks short of `verify-full`, as libpq makes them: none
/// (`prefer`, `require`: encrypted, but any certificate is taken), or the chain
/// to a trusted CA without the host name (`verify-ca`). The handshake's
/// signatures are verified either way.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// Called for every connection, before the server is asked for TLS: a
    /// name TLS cannot use (none at all for a Unix socket, where the server
    /// never offers TLS) is an error only if a handshake is started.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_owned()).map_err(|_| domain.to_owned()),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(|domain| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{domain}` is not a host name TLS can check"),
                )
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
        })
    }
}

/// An encrypted connection to PostgreSQL.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| server_end_point(cert.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// `tls-server-end-point` (RFC 5929): the server certificate hashed with the hash
/// of its own signature algorithm, SHA-256 where that is MD5 or SHA-1. `None` for
/// algorithms without a single hash (RSA-PSS, Ed25519), where the binding is
/// undefined and SCRAM runs without it, as PostgreSQL's own server would need.
fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04]; // 1.2.840.10045.4
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (0x30, certificate, _) = der(cert)? else {
        return None;
    };
    let (0x30, _tbs, rest) = der(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    let bits = match oid {
        [p @ .., 4 | 5] if p == RSA => 256, // MD5, SHA-1
        [p @ .., 0x0e] if p == RSA => 224,
        [p @ .., 0x0b] if p == RSA => 256,
        [p @ .., 0x0c] if p == RSA => 384,
        [p @ .., 0x0d] if p == RSA => 512,
        [p @ .., 1] if p == ECDSA => 256, // ecdsa-with-SHA1
        [p @ .., 3, 1] if p == ECDSA => 224,
        [p @ .., 3, 2] if p == ECDSA => 256,
        [p @ .., 3, 3] if p == ECDSA => 384,
        [p @ .., 3, 4] if p == ECDSA => 512,
        _ => return None,
    };
    Some(match bits {
        224 => sha2::Sha224::digest(cert).to_vec(),
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// The DER element at the front of `b`: its tag, its contents and what follows.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |len, &byte| (len << 8) | usize::from(byte));
        (len, &b[n..])
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, SslOptions) {
        take_ssl_options(s).unwrap()
    }

    #[test]
    fn url_options_flowgate_handles_are_taken_out_and_the_rest_kept() {
        let (rest, ssl) = split(
            "postgres://u:p%40ss@db.example:5432/app?sslmode=verify-full&options=-csearch_path%3Dx&sslrootcert=%2Fetc%2Fca%20certs.pem",
        );
        assert_eq!(
            rest,
            "postgres://u:p%40ss@db.example:5432/app?options=-csearch_path%3Dx"
        );
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/etc/ca certs.pem"));
        let (rest, ssl) = split("postgres://u@h/db?sslmode=require");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(ssl.mode.as_deref(), Some("require"));
        assert_eq!(split("postgresql://u@h/db").1, SslOptions::default());
    }

    #[test]
    fn key_value_strings_are_split_with_quotes_and_escapes() {
        let (rest, ssl) = split(
            "host=db.example  user = app password='it\\'s secret' sslmode=verify-ca sslrootcert='/etc/my ca.pem'",
        );
        assert_eq!(
            rest,
            "host='db.example' user='app' password='it\\'s secret'"
        );
        assert_eq!(ssl.mode.as_deref(), Some("verify-ca"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/etc/my ca.pem"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's secret"[..]));
        assert!(take_ssl_options("host=x password='open").is_err());
        assert!(take_ssl_options("host").is_err());
    }

    #[test]
    fn sslmode_maps_to_the_driver_and_verification_needs_a_ca_file() {
        let mode = |s: &str| parse(s).map(|(c, _)| c.get_ssl_mode());
        assert_eq!(mode("postgres://h/db"), Ok(SslMode::Prefer));
        assert_eq!(
            mode("postgres://h/db?sslmode=disable"),
            Ok(SslMode::Disable)
        );
        assert_eq!(mode("host=h sslmode=require"), Ok(SslMode::Require));
        let needs_ca = parse("postgres://h/db?sslmode=verify-full").unwrap_err();
        assert!(needs_ca.contains("sslrootcert"), "{needs_ca}");
        let missing =
            parse("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let bad = parse("postgres://h/db?sslmode=allow").unwrap_err();
        assert!(bad.contains("`allow`"), "{bad}");
        let weak = parse("postgres://h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(weak.contains("verify-full"), "{weak}");
        let unbound = parse("postgres://h/db?sslmode=disable&channel_binding=require").unwrap_err();
        assert!(unbound.contains("sslmode=disable"), "{unbound}");
        assert!(parse("postgres://h/db?sslmode=require&channel_binding=require").is_ok());
        let alone = parse("postgres://h/db?sslcert=/c.pem").unwrap_err();
        assert!(alone.contains("go together"), "{alone}");
        let missing =
            parse("postgres://h/db?sslcert=/nonexistent/c.pem&sslkey=/k.pem").unwrap_err();
        assert!(missing.contains("/nonexistent/c.pem"), "{missing}");
        let (_, ssl) = split("host=h sslcert=/c.pem sslkey='/my key.pem'");
        assert_eq!(ssl.cert.as_deref(), Some("/c.pem"));
        assert_eq!(ssl.key.as_deref(), Some("/my key.pem"));
        let e = parse("postgres://h/db?sslpassword=x").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = parse("postgres://h/db?sslcrl=/nonexistent/crl.pem").unwrap_err();
        assert!(e.contains("/nonexistent/crl.pem"), "{e}");
        let e = parse("postgres://h/db?sslcrldir=/nonexistent").unwrap_err();
        assert!(e.contains("/nonexistent"), "{e}");
    }

    #[test]
    fn the_server_end_point_hashes_the_certificate_with_its_signature_hash() {
        // A certificate's outline: SEQUENCE { tbs SEQUENCE, algorithm SEQUENCE { OID } }.
        fn cert(oid: &[u8]) -> Vec<u8> {
            let mut algorithm = vec![0x06, oid.len() as u8];
            algorithm.extend_from_slice(oid);
            let mut body = vec![0x30, 0x01, 0x00, 0x30, algorithm.len() as u8];
            body.extend_from_slice(&algorithm);
            let mut c = vec![0x30, body.len() as u8];
            c.extend_from_slice(&body);
            c
        }
        let rsa = |last: u8| cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last]);
        let ecdsa = |tail: &[u8]| cert(&[&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04][..], tail].concat());
        let len = |c: Vec<u8>| server_end_point(&c).map(|h| h.len());
        assert_eq!(len(rsa(0x05)), Some(32), "SHA-1 is replaced by SHA-256");
        assert_eq!(len(rsa(0x0b)), Some(32));
        assert_eq!(len(rsa(0x0c)), Some(48));
        assert_eq!(len(rsa(0x0d)), Some(64));
        assert_eq!(len(ecdsa(&[3, 2])), Some(32));
        assert_eq!(len(ecdsa(&[3, 3])), Some(48));
        assert_eq!(len(rsa(0x0a)), None, "RSA-PSS has no single hash");
        assert_eq!(len(cert(&[0x2b, 0x65, 0x70])), None, "nor has Ed25519");
        assert_eq!(server_end_point(&[0x30, 0x05, 0x30]), None, "truncated");
        let c = rsa(0x0b);
        use sha2::Digest;
        assert_eq!(
            server_end_point(&c).unwrap(),
            sha2::Sha256::digest(&c).to_vec()
        );
    }
}
