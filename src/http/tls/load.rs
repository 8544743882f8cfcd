//! The certificate chain and key read from their PEM files, checked against
//! each other; every failure names the file and why.

use std::path::{Path, PathBuf};

use rustls::InconsistentKeys;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why the certificate or its key cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {}: cannot read the file", .path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("tls_cert {}: cannot read the certificate chain", .path.display())]
    Cert {
        path: PathBuf,
        #[source]
        error: pem::Error,
    },
    #[error("tls_cert {}: no certificate in it (a PEM file with BEGIN CERTIFICATE)", .0.display())]
    NoCert(PathBuf),
    #[error("tls_key {}: cannot read the private key", .path.display())]
    Key {
        path: PathBuf,
        #[source]
        error: pem::Error,
    },
    #[error("tls_key {}: no private key in it (a PEM file with a PKCS#8, RSA or SEC1 key)", .0.display())]
    NoKey(PathBuf),
    #[error("tls_key {}: not a key this server can sign with", .path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        error: rustls::Error,
    },
    #[error("tls_key {} does not match the certificate of tls_cert {}", .key.display(), .cert.display())]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        #[source]
        error: rustls::Error,
    },
    #[error("cannot set up TLS")]
    Config(#[source] rustls::Error),
}

/// The two files' contents: what a change is looked for in, and what is parsed.
#[derive(PartialEq, Eq)]
pub(super) struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Files {
    pub(super) fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |setting, path: &Path| {
            std::fs::read(path).map_err(|error| TlsError::Read {
                setting,
                path: path.to_owned(),
                error,
            })
        };
        Ok(Self {
            cert: read("tls_cert", cert)?,
            key: read("tls_key", key)?,
        })
    }

    /// The certificate chain (leaf first) and key read from `cert` and `key`,
    /// checked to belong together.
    pub(super) fn certified_key(
        &self,
        cert: &Path,
        key: &Path,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Cert {
                path: cert.to_owned(),
                error,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCert(cert.to_owned()));
        }
        let der = PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| match error {
            pem::Error::NoItemsFound => TlsError::NoKey(key.to_owned()),
            error => TlsError::Key {
                path: key.to_owned(),
                error,
            },
        })?;
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|error| TlsError::Unusable {
                path: key.to_owned(),
                error,
            })?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            // A key whose public half cannot be derived is taken, as rustls takes it.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(error) => Err(TlsError::Mismatch {
                key: key.to_owned(),
                cert: cert.to_owned(),
                error,
            }),
        }
    }
}
