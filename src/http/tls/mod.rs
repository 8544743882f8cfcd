//! HTTPS: the rustls server configuration over `tls_cert` and `tls_key`, and
//! the certificate swapped while serving when its files change (renewals
//! without a restart; the files are read every `tls_reload_interval`). New
//! connections get the current pair; open ones keep the one they started with.

mod load;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::domain::chain::Chain;
use load::Files;

pub use load::TlsError;

/// The certificate every new handshake is answered with.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The certificate and key files, the pair read from them last, and the
/// configuration that serves it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    /// The files as last read (none while they cannot be read): a change to
    /// either is a renewal.
    seen: Option<Files>,
}

impl Tls {
    /// Reads and checks the pair: a start-up error names the file and why.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let files = Files::read(&cert, &key)?;
        let pair = files.certified_key(&cert, &key, &provider)?;
        Ok(Self {
            cert,
            key,
            provider,
            current: Arc::new(Current(RwLock::new(Arc::new(pair)))),
            seen: Some(files),
        })
    }

    /// The server configuration, always answering with the current pair.
    /// ALPN (`h2`, `http/1.1`) is added by the HTTP server that takes it.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        Ok(ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.current.clone()))
    }

    /// Reads the files again and, when either changed since last read, swaps
    /// in their pair if both parse and match; a bad pair (or files that cannot
    /// be read) is logged once and the pair in use kept. Returns whether a new
    /// pair was swapped in.
    pub fn reload_if_changed(&mut self) -> bool {
        let files = match Files::read(&self.cert, &self.key) {
            Ok(files) => files,
            Err(e) => {
                if self.seen.take().is_some() {
                    tracing::warn!(error = %Chain(&e), "TLS certificate not reloaded; keeping the one in use");
                }
                return false;
            }
        };
        if self.seen.as_ref() == Some(&files) {
            return false;
        }
        let loaded = files.certified_key(&self.cert, &self.key, &self.provider);
        self.seen = Some(files);
        match loaded {
            Ok(pair) => {
                *self
                    .current
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "TLS certificate not reloaded; keeping the one in use");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
