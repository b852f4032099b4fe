//! The server side: an [`Acceptor`] whose configuration can be read again from the files, and
//! [`incoming`], the TLS connections of a TCP listener.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::files::{TlsError, TlsFiles};

/// How long a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake completed and have not been taken yet.
const BACKLOG: usize = 64;

/// The server's TLS: the files it was made from and the configuration new connections get.
#[derive(Debug)]
pub struct Acceptor {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
}

impl Acceptor {
    /// Reads the files and makes the server configuration (client certificates required).
    pub fn new(files: TlsFiles, alpn: &[&[u8]]) -> Result<Arc<Acceptor>, TlsError> {
        let config = files.load()?.server_config(alpn)?;
        Ok(Arc::new(Acceptor {
            files,
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again (or `files`, when they moved): new connections get the new
    /// certificate, key and CA; open ones keep theirs. On an error nothing changes.
    pub fn reload(&self, files: Option<&TlsFiles>) -> Result<(), TlsError> {
        let files = files.unwrap_or(&self.files);
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        let config = files.load()?.server_config(&alpn)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// The configuration a new connection gets.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Completes the handshake of one connection (the client's certificate checked).
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        TlsAcceptor::from(self.config()).accept(tcp).await
    }
}

/// The TLS connections of a listener, handshakes done. Dropping it stops accepting.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Incoming {
    /// The next connection whose handshake completed; `None` once the listener failed.
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.rx.recv().await
    }

    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

}

/// The connections as a stream (tonic's `serve_with_incoming`); it never yields an error.
impl futures_util::Stream for Incoming {
    type Item = std::io::Result<TlsStream<TcpStream>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(|(tls, _)| Ok(tls)))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections on `listener` and completes each handshake on its own task, within
/// `handshake_timeout`: a slow or refused client (no certificate, one another CA signed, not
/// TLS at all) holds up nobody and is logged with its address. `what` names the listener in
/// the logs.
pub fn incoming(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    handshake_timeout: Duration,
    what: &'static str,
) -> std::io::Result<Incoming> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(BACKLOG);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(listener = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, done) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = done.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::info!(listener = what, %peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(listener = what, %peer, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(Incoming { rx, local, task })
}
