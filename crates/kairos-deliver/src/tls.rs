//! TLS for deliveries: HTTPS webhooks and syncs (reqwest) and SMTP with
//! STARTTLS or implicit TLS (lettre), both on rustls with the ring crypto
//! provider and the platform's verifier (the system's trusted roots), plus
//! the certificates of `[delivery] ca_file` — a private CA of an
//! on-premise receiver, or a test CA.

use std::path::Path;
use std::sync::Arc;

use lettre::transport::smtp::client::{Certificate as SmtpCertificate, TlsParameters};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Most certificates a `ca_file` may hold (a system bundle has ~150; a
/// file far larger is a mistake, not a CA list).
const CA_FILE_CERTIFICATES_MAX: usize = 1_000;

/// Certificates trusted in addition to the system's roots.
#[derive(Clone, Default)]
pub struct ExtraRoots {
    /// The PEM text as read; both TLS clients parse it their own way.
    pem: Arc<Vec<u8>>,
}

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraRoots({} bytes of PEM)", self.pem.len())
    }
}

impl ExtraRoots {
    /// Reads a PEM file of one or more CA certificates; says what is wrong
    /// with it otherwise.
    pub fn read(path: &Path) -> Result<ExtraRoots, String> {
        let pem = std::fs::read(path).map_err(|error| error.to_string())?;
        let count = CertificateDer::pem_slice_iter(&pem)
            .try_fold(0usize, |count, certificate| certificate.map(|_| count + 1))
            .map_err(|error| format!("not PEM certificates: {error}"))?;
        if count == 0 {
            return Err(
                "no certificate in it: expected PEM certificates (-----BEGIN CERTIFICATE-----)"
                    .into(),
            );
        }
        if count > CA_FILE_CERTIFICATES_MAX {
            return Err(format!(
                "{count} certificates, more than {CA_FILE_CERTIFICATES_MAX}"
            ));
        }
        Ok(ExtraRoots { pem: Arc::new(pem) })
    }

    fn is_empty(&self) -> bool {
        self.pem.is_empty()
    }

    /// For reqwest's client.
    pub(crate) fn for_http(&self) -> Vec<reqwest::Certificate> {
        if self.is_empty() {
            return Vec::new();
        }
        reqwest::Certificate::from_pem_bundle(&self.pem).unwrap_or_default()
    }
}

/// Makes ring the process's rustls crypto provider (reqwest and lettre
/// both ask for the default one). Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS for an SMTP connection to `domain` (what the certificate must name,
/// though the connection goes to an address resolved and checked before).
pub(crate) fn smtp_parameters(
    domain: &str,
    extra: &ExtraRoots,
) -> Result<TlsParameters, lettre::transport::smtp::Error> {
    install_crypto_provider();
    let mut builder = TlsParameters::builder(domain.to_string());
    if !extra.is_empty() {
        builder = builder.add_root_certificate(SmtpCertificate::from_pem(&extra.pem)?);
    }
    builder.build_rustls()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = std::env::temp_dir().join(format!("kairos-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        assert!(ExtraRoots::read(&bad).unwrap_err().contains("PEM"));
        let missing = ExtraRoots::read(&dir.join("missing.pem")).unwrap_err();
        assert!(!missing.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
