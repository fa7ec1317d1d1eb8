//! TLS for the proxy's listener with rustls: certificates from PEM files, or a
//! self-signed one generated with rcgen for local use. ALPN offers h2 and
//! http/1.1.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::ProxyError;

/// Server-side TLS settings for [`crate::Proxy::serve_tls`].
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// A generated self-signed certificate, in PEM, so clients can be told to trust it.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (never log it).
    pub key_pem: String,
}

impl TlsConfig {
    /// Loads a certificate chain and private key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ProxyError> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ProxyError::Tls(format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| ProxyError::Tls(format!("{}: {e}", key.display())))?;
        Self::from_der(certs, key)
    }

    /// Loads a certificate chain and private key from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ProxyError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProxyError::Tls(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| ProxyError::Tls(format!("private key: {e}")))?;
        Self::from_der(certs, key)
    }

    /// Generates a self-signed certificate for `hosts` (local use only).
    pub fn self_signed(hosts: &[&str]) -> Result<(Self, SelfSigned), ProxyError> {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names)
            .map_err(|e| ProxyError::Tls(format!("generate certificate: {e}")))?;
        let pem = SelfSigned {
            cert_pem: generated.cert.pem(),
            key_pem: generated.key_pair.serialize_pem(),
        };
        Ok((Self::from_pem(&pem.cert_pem, &pem.key_pem)?, pem))
    }

    fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, ProxyError> {
        if certs.is_empty() {
            return Err(ProxyError::Tls("no certificate found".into()));
        }
        let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}
