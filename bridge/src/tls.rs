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
//! `--watch-config`) the clients of the sites are made again with the files as they are then;
//! the server's certificate changes at the next start.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{Config, ConfigError};

/// The `tls:` section: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This bridge's certificate chain.
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

fn read(field: &str, p: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(p).map_err(|e| ConfigError(format!("tls.{field}: {}: {e}", p.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError(format!("tls.{field}: {}: no PEM block", p.display())));
    }
    Ok(bytes)
}

impl TlsFiles {
    /// Reads the three files (each must hold a PEM block).
    pub fn load(&self) -> Result<TlsMaterial, ConfigError> {
        Ok(TlsMaterial {
            cert: read("cert", &self.cert)?,
            key: read("key", &self.key)?,
            ca: read("ca", &self.ca)?,
        })
    }
}

impl TlsMaterial {
    /// The gRPC server's TLS: this identity, client certificates required, from the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(false)
    }

    /// A site client's TLS: the server checked against the CA, this identity presented.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
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
