//! Why a connection string or its TLS files were not taken.

use std::path::PathBuf;

use rustls::pki_types::pem;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("not a PostgreSQL connection string: {0}")]
    NotConnInfo(#[source] tokio_postgres::Error),
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error(
        "`channel_binding=require` binds to the server's TLS certificate, so it cannot be used with `sslmode=disable`"
    )]
    BindingWithoutTls,
    #[error("`sslrootcert=system` trusts every public CA, so it needs `sslmode=verify-full`")]
    SystemRootsNeedVerifyFull,
    #[error("sslmode `{0}` needs `sslrootcert`: a PEM file of the CA certificates to trust")]
    NeedsRootCert(String),
    #[error(
        "`sslcrl` and `sslcrldir` need the server's certificate checked: `sslmode=verify-ca` or `verify-full`"
    )]
    CrlWithoutCheck,
    #[error("`sslcert` and `sslkey` go together: the client certificate and its key")]
    CertWithoutKey,
    #[error("`sslpassword` is not supported: `sslkey` must name an unencrypted key")]
    SslPassword,
    #[error("bad percent-encoding in connection URL near `{0}`")]
    PercentEncoding(String),
    #[error("connection URL option is not UTF-8")]
    NotUtf8,
    #[error("connection string: `{0}` has no `=value`")]
    NoValue(String),
    #[error("connection string: `{0}` has an unclosed quote")]
    UnclosedQuote(String),
    /// `why`: what the machine's CA store said, each of its errors.
    #[error("sslrootcert=system: no CA certificates found on this machine ({why})")]
    NoSystemRoots { why: String },
    #[error("sslrootcert `{0}` holds no usable certificate")]
    NoUsableRoot(String),
    /// A PEM file that could not be read, named by its option.
    #[error("{option} `{}`: {error}", path.display())]
    Pem {
        option: &'static str,
        path: PathBuf,
        #[source]
        error: pem::Error,
    },
    #[error("sslcrldir `{dir}`: {error}")]
    CrlDir {
        dir: String,
        #[source]
        error: std::io::Error,
    },
    #[error("sslcrldir `{0}` holds no files")]
    EmptyCrlDir(String),
    #[error("`{}` holds no PEM revocation list (X509 CRL)", .0.display())]
    NoCrl(PathBuf),
    #[error("sslcert `{0}` holds no certificate")]
    NoCert(String),
    #[error("sslkey `{path}`: {error} (a PEM private key, unencrypted, is expected)")]
    Key {
        path: String,
        #[source]
        error: pem::Error,
    },
    #[error("sslrootcert or revocation lists: {0}")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
    #[error("TLS: {0}")]
    Protocol(#[source] rustls::Error),
    #[error("sslcert and sslkey: {0}")]
    ClientCert(#[source] rustls::Error),
}
