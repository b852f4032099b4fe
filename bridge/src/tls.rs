//! TLS between sites: the gRPC tunnels (and pings) of the bridges, both directions, with client
//! certificates (rustls through tonic).
//!
//! ```yaml
//! tls:
//!   cert: /etc/geomesh/tls/tls.crt   # this bridge's certificate chain (PEM), server and client
//!   key: /etc/geomesh/tls/tls.key    # its private key (PEM)
//!   ca: /etc/geomesh/tls/ca.crt      # the CA (PEM) other sites' certificates must chain to
//! sites:
//!   dc2: { grpc: "https://bridge-dc2:7001" }
//! ```
//!
//! With `tls`, `grpc_listen` serves TLS and refuses a peer without a certificate the CA signed,
//! and every site is dialled over `https://` with this bridge's certificate, the server being
//! checked against the CA and the URL's host. Without it, tunnels are plaintext HTTP/2, which a
//! configuration must ask for with `plaintext: true` (inside a mesh whose mTLS carries them, on
//! an encrypted overlay network, or in tests). The files are read at start; on a reload (SIGHUP,
//! `--watch-config`, which also follows the files' bytes) the clients of the sites are made
//! again with the files as they are then, and the gRPC server's new connections get the new
//! certificate, key and CA (geomesh-tls's [`Acceptor`], whose TLS handshakes the bridge runs
//! itself in front of tonic); open tunnels keep theirs.

use std::sync::Arc;

pub use geomesh_tls::{Acceptor, TlsFiles, TlsMaterial};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::{Config, ConfigError};

fn err(e: geomesh_tls::TlsError) -> ConfigError {
    ConfigError(e.0)
}

/// Reads the three files (each must hold a PEM block).
pub fn load(files: &TlsFiles) -> Result<TlsMaterial, ConfigError> {
    files.load().map_err(err)
}

/// The gRPC server's TLS: this identity, client certificates required, from the CA; ALPN h2.
/// [`Acceptor::reload`] reads the files again (SIGHUP, `--watch-config`).
pub fn acceptor(files: &TlsFiles) -> Result<Arc<Acceptor>, ConfigError> {
    Acceptor::new(files.clone(), &[b"h2"]).map_err(err)
}

/// A site client's TLS: the server checked against the CA, this identity presented.
pub fn client(m: &TlsMaterial) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.ca))
        .identity(Identity::from_pem(&m.cert, &m.key))
}

/// The rules between `tls`, `plaintext`, `grpc_listen` and the sites' URLs (called by
/// [`Config::parse`]; the files themselves are read at start, not here, so that `--check` works
/// where they are not mounted).
pub(crate) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let between_sites = cfg.grpc_listen.is_some() || !cfg.sites.is_empty();
    match (&cfg.tls, cfg.plaintext) {
        (Some(_), true) => return Err(ConfigError("tls, plaintext: give one, not both".into())),
        (None, false) if between_sites => {
            return Err(ConfigError(
                "tls: missing; traffic between sites (grpc_listen, sites) needs `tls` (cert, key, ca), \
                 or `plaintext: true` where something else encrypts it"
                    .into(),
            ))
        }
        _ => {}
    }
    let scheme = if cfg.tls.is_some() { "https://" } else { "http://" };
    for (name, site) in &cfg.sites {
        if !site.grpc.starts_with(scheme) {
            return Err(ConfigError(format!(
                "sites.{name}.grpc: `{}` must be {scheme}... with {}",
                site.grpc,
                if cfg.tls.is_some() { "`tls`" } else { "`plaintext: true`" }
            )));
        }
    }
    Ok(())
}
