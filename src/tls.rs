//! TLS settings shared by the source (https DSMR-reader) and the sink (MQTT over TLS).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

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
/// (a self-signed broker or DSMR-reader). A certificate in that file that is itself the
/// server's certificate is trusted too, see `CaFileVerifier`.
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, TlsError> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(pem) = extra_ca_pem else {
        return Ok(rustls::ClientConfig::builder()
            .with_root_certificates(Arc::new(roots))
            .with_no_client_auth());
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::BadCa("no CERTIFICATE block".into()));
    }
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::BadCa(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::BadCa(e.to_string()))?;
    let verifier = CaFileVerifier { webpki, own: certs };
    Ok(rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The usual verification against the roots and the CA file, which refuses a certificate
/// marked as a CA when a server presents it (`CaUsedAsEndEntity`). That is exactly what
/// `openssl req -x509` makes by default, and what users put in the CA file for a self-signed
/// DSMR-reader or broker. Such a certificate is accepted when it is byte for byte one the
/// user gave in the file (and valid now, which webpki checked before refusing it, and for the
/// host name); the handshake signature is still checked against it, so the server must hold
/// its key. Any other refusal stands.
#[derive(Debug)]
struct CaFileVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of the CA file.
    own: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) && self.own.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;

    /// A self-signed certificate for `name` marked CA:TRUE, as `openssl req -x509` makes it.
    fn openssl_like(name: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verifier(own: &[&CertificateDer<'static>]) -> CaFileVerifier {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in own {
            roots.add((*cert).clone()).unwrap();
        }
        CaFileVerifier {
            webpki: WebPkiServerVerifier::builder(Arc::new(roots))
                .build()
                .unwrap(),
            own: own.iter().map(|c| (*c).clone()).collect(),
        }
    }

    fn check(verifier: &CaFileVerifier, cert: &CertificateDer<'_>, host: &str) -> bool {
        let name = ServerName::try_from(host.to_owned()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn the_ca_files_own_certificate_is_trusted_for_its_names_only() {
        let dsmr = openssl_like("dsmr.local");
        let other = openssl_like("dsmr.local");
        assert!(check(&verifier(&[&dsmr]), &dsmr, "dsmr.local"));
        assert!(!check(&verifier(&[&dsmr]), &dsmr, "elsewhere.local"));
        assert!(!check(&verifier(&[&other]), &dsmr, "dsmr.local"));
        assert!(check(&verifier(&[&other, &dsmr]), &dsmr, "dsmr.local"));
    }
}
