//! The `tls:` section (paths), the files' contents, and the rustls configurations made of them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;

/// A TLS file that cannot be read or used; the text names the field and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The `tls:` section: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This process's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA whose certificates are accepted from (and required of) other sites.
    pub ca: PathBuf,
}

/// The files' contents, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

fn read(field: &str, p: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(p).map_err(|e| TlsError(format!("tls.{field}: {}: {e}", p.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError(format!("tls.{field}: {}: no PEM block", p.display())));
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Reads the three files (each must hold a PEM block).
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        Ok(TlsMaterial {
            cert: read("cert", &self.cert)?,
            key: read("key", &self.key)?,
            ca: read("ca", &self.ca)?,
        })
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsMaterial {
    pub(crate) fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("tls.cert: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError("tls.cert: no CERTIFICATE block".into()));
        }
        Ok(certs)
    }

    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError(format!("tls.key: {e}")))
    }

    pub(crate) fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.ca) {
            let c = c.map_err(|e| TlsError(format!("tls.ca: {e}")))?;
            roots.add(c).map_err(|e| TlsError(format!("tls.ca: {e}")))?;
        }
        if roots.is_empty() {
            return Err(TlsError("tls.ca: no CERTIFICATE block".into()));
        }
        Ok(Arc::new(roots))
    }

    /// A server that presents this identity and requires a client certificate the CA signed;
    /// `alpn`: the application protocols it offers (`h2` for gRPC).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError(format!("tls.ca: {e}")))?;
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("tls: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, self.private_key()?)
            .map_err(|e| TlsError(format!("tls.cert, tls.key: {e}")))?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(c)
    }

    /// A client that checks servers against the CA (and the host it dials) and presents this
    /// identity.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("tls: {e}")))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain()?, self.private_key()?)
            .map_err(|e| TlsError(format!("tls.cert, tls.key: {e}")))
    }
}
