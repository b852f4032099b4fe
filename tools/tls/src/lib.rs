//! TLS with client certificates between geomesh sites: the bridges' gRPC tunnels and the agents'
//! peer traffic (heartbeats, replication).
//!
//! ```yaml
//! tls:
//!   cert: /etc/geomesh/tls/tls.crt   # this process's certificate chain (PEM), server and client
//!   key: /etc/geomesh/tls/tls.key    # its private key (PEM: PKCS#8, PKCS#1 or SEC1)
//!   ca: /etc/geomesh/tls/ca.crt      # the CA (PEM) the other sites' certificates must chain to
//! ```
//!
//! The files are what cert-manager writes into a Secret (`tls.crt`, `tls.key`, `ca.crt`) or
//! what a mesh mounts. [`TlsFiles::load`] reads them; [`TlsMaterial`] makes the rustls
//! configurations: a server that **requires** a client certificate the CA signed, a client that
//! checks the server against the CA and the URL's host and presents its own certificate.
//! [`Acceptor`] holds the server configuration and [`Acceptor::reload`] reads the files again,
//! so a renewed certificate serves new connections without a restart; [`incoming`] accepts TCP
//! connections and completes their handshakes concurrently, each within a time limit.
//! [`ClientIdentity`] is the client side of the same: a client configuration made once whose
//! certificate and CA [`ClientIdentity::reload`] replaces.
//!
//! One crypto provider, named explicitly: ring (tonic's `tls-ring`, reqwest's rustls builds).
#![forbid(unsafe_code)]

mod client;
mod files;
mod listen;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::ClientIdentity;
pub use files::{TlsError, TlsFiles, TlsMaterial};
pub use listen::{incoming, Acceptor, Incoming, HANDSHAKE_TIMEOUT};
pub use rustls;
pub use tokio_rustls::server::TlsStream;
