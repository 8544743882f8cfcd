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

mod certs;
mod conninfo;
mod error;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use error::TlsConfigError;

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Issuer,
    IssuerAndName,
}

/// Parses a connection string (`postgres://` URL or `key=value` words) into the
/// driver's configuration and the TLS connector its `sslmode` asks for.
pub fn parse(conninfo: &str) -> Result<(tokio_postgres::Config, MakeRustls), TlsConfigError> {
    let (rest, ssl) = conninfo::take_ssl_options(conninfo)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(TlsConfigError::NotConnInfo)?;
    let (mode, check) = match ssl.mode.as_deref() {
        None | Some("prefer") => (SslMode::Prefer, Check::Nothing),
        Some("disable") => (SslMode::Disable, Check::Nothing),
        Some("require") if ssl.root_cert.is_some() => (SslMode::Require, Check::Issuer),
        Some("require") => (SslMode::Require, Check::Nothing),
        Some("verify-ca") => (SslMode::Require, Check::Issuer),
        Some("verify-full") => (SslMode::Require, Check::IssuerAndName),
        Some(other) => return Err(TlsConfigError::SslMode(other.to_owned())),
    };
    config.ssl_mode(mode);
    if config.get_channel_binding() == tokio_postgres::config::ChannelBinding::Require
        && config.get_ssl_mode() == SslMode::Disable
    {
        return Err(TlsConfigError::BindingWithoutTls);
    }
    if ssl.root_cert.as_deref() == Some("system") && check != Check::IssuerAndName {
        return Err(TlsConfigError::SystemRootsNeedVerifyFull);
    }
    let roots = match (&ssl.root_cert, check) {
        (Some(path), Check::Issuer | Check::IssuerAndName) => Some(certs::load_roots(path)?),
        (None, Check::Issuer | Check::IssuerAndName) => {
            return Err(TlsConfigError::NeedsRootCert(
                ssl.mode.clone().unwrap_or_default(),
            ));
        }
        _ => None,
    };
    let crls = certs::load_crls(&ssl)?;
    if !crls.is_empty() && roots.is_none() {
        return Err(TlsConfigError::CrlWithoutCheck);
    }
    let client = match (&ssl.cert, &ssl.key) {
        (Some(cert), Some(key)) => Some(certs::load_client_identity(cert, key)?),
        (None, None) => None,
        _ => return Err(TlsConfigError::CertWithoutKey),
    };
    let tls = certs::client_config(check, roots, crls, client)?;
    Ok((config, MakeRustls(MakeRustlsConnect::new(tls))))
}

/// Makes TLS connections to PostgreSQL for tokio-postgres and deadpool:
/// tokio-postgres-rustls's connector (its stream gives SCRAM the server's
/// `tls-server-end-point` binding) over the configuration `parse` built,
/// shown without its keys.
#[derive(Clone)]
pub struct MakeRustls(MakeRustlsConnect);

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        MakeTlsConnect::<S>::make_tls_connect(&mut self.0, domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_maps_to_the_driver_and_verification_needs_a_ca_file() {
        let mode = |s: &str| parse(s).ok().map(|(c, _)| c.get_ssl_mode());
        let refused = |s: &str, says: &str| {
            let e = parse(s).unwrap_err().to_string();
            assert!(e.contains(says), "{s}: {e}");
        };
        assert_eq!(mode("postgres://h/db"), Some(SslMode::Prefer));
        assert_eq!(
            mode("postgres://h/db?sslmode=disable"),
            Some(SslMode::Disable)
        );
        assert_eq!(mode("host=h sslmode=require"), Some(SslMode::Require));
        refused("postgres://h/db?sslmode=verify-full", "sslrootcert");
        refused(
            "postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        );
        refused("postgres://h/db?sslmode=allow", "`allow`");
        refused(
            "postgres://h/db?sslmode=require&sslrootcert=system",
            "verify-full",
        );
        refused(
            "postgres://h/db?sslmode=disable&channel_binding=require",
            "sslmode=disable",
        );
        assert!(parse("postgres://h/db?sslmode=require&channel_binding=require").is_ok());
        refused("postgres://h/db?sslcert=/c.pem", "go together");
        refused(
            "postgres://h/db?sslcert=/nonexistent/c.pem&sslkey=/k.pem",
            "/nonexistent/c.pem",
        );
        let (_, ssl) =
            conninfo::take_ssl_options("host=h sslcert=/c.pem sslkey='/my key.pem'").unwrap();
        assert_eq!(ssl.cert.as_deref(), Some("/c.pem"));
        assert_eq!(ssl.key.as_deref(), Some("/my key.pem"));
        refused("postgres://h/db?sslpassword=x", "not supported");
        refused(
            "postgres://h/db?sslcrl=/nonexistent/crl.pem",
            "/nonexistent/crl.pem",
        );
        refused("postgres://h/db?sslcrldir=/nonexistent", "/nonexistent");
    }
}
