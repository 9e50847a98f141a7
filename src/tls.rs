//! TLS settings shared by the source (https DSMR-reader) and the sink (MQTT over TLS).

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no usable certificate in the CA file: {0}")]
    BadCa(String),
    #[error("TLS setup failed: {0}")]
    Setup(#[from] rustls::Error),
}

/// Installs ring as the process-wide crypto provider; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client config that trusts Mozilla's root store plus, if given, the CA in `extra_ca_pem`
/// (a self-signed broker or DSMR-reader).
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TlsError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadCa(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::BadCa("no CERTIFICATE block".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| TlsError::BadCa(e.to_string()))?;
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth())
}
