//! The rustls client configuration a connection string asks for: the CAs to
//! trust, revocation lists, a client certificate, and how far the server's
//! certificate is checked.

use std::sync::Arc;

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

use super::conninfo::SslOptions;
use super::{Check, TlsConfigError};

pub(super) fn load_roots(path: &str) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(TlsConfigError::NoSystemRoots {
                why: why.join("; "),
            });
        }
        return Ok(roots);
    }
    let certs = pem_items::<CertificateDer>("sslrootcert", path.as_ref())?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::NoUsableRoot(path.to_owned()));
    }
    Ok(roots)
}

/// Every item of one kind in the PEM file `path`, named by `option` if it cannot
/// be read.
fn pem_items<T: PemObject>(
    option: &'static str,
    path: &std::path::Path,
) -> Result<Vec<T>, TlsConfigError> {
    let failed = |error| TlsConfigError::Pem {
        option,
        path: path.to_owned(),
        error,
    };
    T::pem_file_iter(path)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)
}

/// The revocation lists of `sslcrl` (a PEM file) and `sslcrldir` (a directory of
/// them, as `openssl rehash` leaves it; every file in it is read).
pub(super) fn load_crls(
    ssl: &SslOptions,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    let mut files = Vec::new();
    if let Some(file) = &ssl.crl {
        files.push(std::path::PathBuf::from(file));
    }
    if let Some(dir) = &ssl.crl_dir {
        let entries = std::fs::read_dir(dir).map_err(|error| TlsConfigError::CrlDir {
            dir: dir.clone(),
            error,
        })?;
        let mut in_dir: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        if in_dir.is_empty() {
            return Err(TlsConfigError::EmptyCrlDir(dir.clone()));
        }
        in_dir.sort();
        files.extend(in_dir);
    }
    let mut crls = Vec::new();
    for file in files {
        let found = pem_items::<CertificateRevocationListDer>("revocation list", &file)?;
        if found.is_empty() {
            return Err(TlsConfigError::NoCrl(file));
        }
        crls.extend(found);
    }
    Ok(crls)
}

/// A client certificate (with the chain to hand to the server) and its key.
pub(super) type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub(super) fn load_client_identity(
    cert: &str,
    key: &str,
) -> Result<ClientIdentity, TlsConfigError> {
    let chain = pem_items::<CertificateDer>("sslcert", cert.as_ref())?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCert(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsConfigError::Key {
        path: key.to_owned(),
        error,
    })?;
    Ok((chain, key))
}

/// The client configuration for `check` against `roots` (and `crls`), logging
/// in with `client` when given.
pub(super) fn client_config(
    check: Check,
    roots: Option<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    client: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsConfigError> {
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
            Some(builder.build().map_err(TlsConfigError::Verifier)?)
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
        .map_err(TlsConfigError::Protocol)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsConfigError::ClientCert)?,
    };
    // As libpq 17 does: servers from 17 on require it for `sslnegotiation=direct`
    // and check it when given; older ones ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
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
