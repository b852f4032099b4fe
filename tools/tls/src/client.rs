//! The client side with files that can be read again: a rustls client configuration whose
//! certificate (presented to servers) and CA (servers are checked against) come from a shared
//! state that [`ClientIdentity::reload`] replaces. A long-lived HTTP client made once with
//! [`ClientIdentity::client_config`] then follows certificate renewals without being rebuilt.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::files::{provider, TlsError, TlsMaterial};

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    verifier: Arc<WebPkiServerVerifier>,
}

/// This process's client certificate and the CA it checks servers against, replaceable.
#[derive(Debug)]
pub struct ClientIdentity {
    state: RwLock<State>,
}

fn state(m: &TlsMaterial) -> Result<State, TlsError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(&m.private_key()?)
        .map_err(|e| TlsError(format!("tls.key: {e}")))?;
    let key = Arc::new(CertifiedKey::new(m.chain()?, signing));
    key.keys_match().map_err(|e| TlsError(format!("tls.cert, tls.key: {e}")))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(m.roots()?, provider())
        .build()
        .map_err(|e| TlsError(format!("tls.ca: {e}")))?;
    Ok(State { key, verifier })
}

impl ClientIdentity {
    /// From the files' contents.
    pub fn new(m: &TlsMaterial) -> Result<Arc<ClientIdentity>, TlsError> {
        Ok(Arc::new(ClientIdentity { state: RwLock::new(state(m)?) }))
    }

    /// New contents: the next handshakes present the new certificate and check servers
    /// against the new CA. On an error nothing changes.
    pub fn reload(&self, m: &TlsMaterial) -> Result<(), TlsError> {
        let s = state(m)?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = s;
        Ok(())
    }

    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).verifier.clone()
    }

    /// A client configuration that reads this identity at every handshake.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, TlsError> {
        Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("tls: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Current(self.clone())))
            .with_client_cert_resolver(Arc::new(Current(self.clone()))))
    }
}

/// Reads the current state at each call.
#[derive(Debug)]
struct Current(Arc<ClientIdentity>);

impl ResolvesClientCert for Current {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.state.read().unwrap_or_else(|e| e.into_inner()).key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for Current {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verifier().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.verifier().supported_verify_schemes()
    }
}
