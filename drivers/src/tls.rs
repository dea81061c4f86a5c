//! The TLS client side shared by the drivers that dial a daemon over TCP: the `remote` driver
//! (BuildKit's gRPC, ALPN `h2`) and the `docker` driver (the Engine API, HTTP/1.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls;

/// The TLS material for one endpoint, as paths (read when the client config is built).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA the server must chain to; without one, the system's roots.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Accept any server certificate (`DOCKER_TLS` without verify, a context's
    /// `SkipTLSVerify`), as the docker CLI does.
    pub skip_verify: bool,
}

/// Which file a TLS error is about, so each driver can name it its own way (an option name, a
/// path under a Docker context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

/// A TLS client config that could not be built, and the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub file: TlsFile,
    pub message: String,
}

fn read_pem(file: TlsFile, p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError {
        file,
        message: format!("cannot read {}: {}", p.display(), io_text(&e)),
    })
}

/// Rust's I/O error text without its "(os error N)".
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A rustls client config from `files`, offering `alpn` (empty: no ALPN, which a Go HTTPS server
/// answers with HTTP/1.1).
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            let pem = read_pem(TlsFile::Ca, ca)?;
            let bad = |e: String| TlsError {
                file: TlsFile::Ca,
                message: format!("{}: {e}", ca.display()),
            };
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(c.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in it".into()));
            }
        }
        // As Go's crypto/tls: no CA named means the system's.
        None if !files.skip_verify => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        None => {}
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            file: TlsFile::Ca,
            message: e.to_string(),
        })?;
    let builder = if files.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(TlsFile::Cert, cert)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError {
                    file: TlsFile::Cert,
                    message: format!("{}: {e}", cert.display()),
                })?;
            if chain.is_empty() {
                return Err(TlsError {
                    file: TlsFile::Cert,
                    message: format!("{}: no certificate in it", cert.display()),
                });
            }
            let key_pem = read_pem(TlsFile::Key, key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError {
                file: TlsFile::Key,
                message: format!("{}: {e}", key.display()),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError {
                    file: TlsFile::Cert,
                    message: format!("{} with {}: {e}", cert.display(), key.display()),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Connects TLS over `io`, within `limit`; the error is worded as a reason after the endpoint.
pub async fn handshake(
    config: Arc<rustls::ClientConfig>,
    servername: &str,
    io: crate::BoxIo,
    limit: std::time::Duration,
) -> Result<crate::BoxIo, String> {
    let name = ServerName::try_from(servername.to_string())
        .map_err(|e| format!("invalid TLS server name {servername:?}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = tokio::time::timeout(limit, connector.connect(name, io))
        .await
        .map_err(|_| format!("no TLS handshake within {}s", limit.as_secs()))?
        .map_err(|e| format!("TLS handshake failed: {}", io_text(&e)))?;
    Ok(Box::pin(tls))
}

/// The verifier behind "TLS without verification": signatures are still checked (the handshake
/// stays sound), the certificate's chain and name are not.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let e = client_config(
            &TlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert_eq!(e.file, TlsFile::Ca);
        assert_eq!(
            e.message,
            "cannot read /nonexistent/ca.pem: No such file or directory"
        );
    }

    #[test]
    fn a_ca_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("kiln-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a pem\n").unwrap();
        let e = client_config(
            &TlsFiles {
                ca: Some(ca.clone()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("no certificate"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skipping_verification_needs_no_files() {
        let c = client_config(
            &TlsFiles {
                skip_verify: true,
                ..Default::default()
            },
            &[b"h2"],
        )
        .unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
