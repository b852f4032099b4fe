//! Real TLS handshakes over loopback between [`incoming`] and a rustls client: a certificate the
//! CA signed passes, one another CA signed and no certificate at all are refused, a client that
//! does not trust the server's CA refuses it, and a reload makes new connections get new files.

use std::sync::Arc;
use std::time::Duration;

use geomesh_tls::rustls::pki_types::ServerName;
use geomesh_tls::testing::Ca;
use geomesh_tls::{incoming, Acceptor, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// A server echoing one line per connection; its address.
async fn echo(files: TlsFiles) -> (std::net::SocketAddr, Arc<Acceptor>) {
    let acceptor = Acceptor::new(files, &[b"http/1.1"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut conns = incoming(listener, acceptor.clone(), Duration::from_secs(2), "test").unwrap();
    let addr = conns.local_addr();
    tokio::spawn(async move {
        let _keep = &conns;
        while let Some((mut tls, _)) = conns.next().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = tls.read(&mut buf).await {
                    let _ = tls.write_all(&buf[..n]).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, acceptor)
}

/// Connects with `client` (a client configuration) and echoes `hello`.
async fn hello(addr: std::net::SocketAddr, client: geomesh_tls::rustls::ClientConfig) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test]
async fn client_certificates_are_required_and_files_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, rogue) = (Ca::new("test CA"), Ca::new("rogue CA"));
    let server_files = ca.leaf(dir.path(), "server", &ca);
    let (addr, acceptor) = echo(server_files.clone()).await;

    let good = ca.leaf(dir.path(), "good", &ca).load().unwrap().client_config().unwrap();
    assert_eq!(hello(addr, good.clone()).await.unwrap(), b"hello");

    // Signed by another CA (trusting the server's): refused by the server.
    let intruder = rogue.leaf(dir.path(), "intruder", &ca).load().unwrap().client_config().unwrap();
    assert!(hello(addr, intruder).await.is_err());
    // No client certificate at all: refused.
    assert!(hello(addr, ca.client_without_certificate()).await.is_err());
    // A client that does not trust the server's CA refuses the server.
    let stranger = rogue.leaf(dir.path(), "stranger", &rogue).load().unwrap().client_config().unwrap();
    assert!(hello(addr, stranger.clone()).await.is_err());

    // The server's files are replaced by ones from the rogue CA (a CA rotation): after a reload,
    // new connections get the new certificate and the new client CA.
    let rotated = rogue.leaf(dir.path(), "server", &rogue);
    assert_eq!(rotated, server_files, "same paths, new contents");
    assert!(hello(addr, good.clone()).await.is_ok(), "before the reload nothing changed");
    acceptor.reload(None).unwrap();
    assert!(hello(addr, good).await.is_err(), "the old CA's clients are refused now");
    assert_eq!(hello(addr, stranger).await.unwrap(), b"hello");

    // A client made once follows its files too (ClientIdentity): it trusted and presented the
    // old CA's certificate; after its reload it presents the rogue CA's and trusts it.
    let client_files = ca.leaf(dir.path(), "long-lived", &ca);
    let identity = geomesh_tls::ClientIdentity::new(&client_files.load().unwrap()).unwrap();
    let long_lived = identity.client_config().unwrap();
    assert!(hello(addr, long_lived.clone()).await.is_err(), "old identity, rotated server");
    rogue.leaf(dir.path(), "long-lived", &rogue);
    identity.reload(&client_files.load().unwrap()).unwrap();
    assert_eq!(hello(addr, long_lived).await.unwrap(), b"hello");

    // A reload that fails (a missing file) keeps what serves.
    std::fs::remove_file(&server_files.key).unwrap();
    let e = acceptor.reload(None).unwrap_err();
    assert!(e.0.starts_with("tls.key: "), "{e}");
    let again = rogue.leaf(dir.path(), "again", &rogue).load().unwrap().client_config().unwrap();
    assert_eq!(hello(addr, again).await.unwrap(), b"hello");
}

#[test]
fn bad_files_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let files = ca.leaf(dir.path(), "x", &ca);
    std::fs::write(&files.ca, "not pem").unwrap();
    assert_eq!(files.load().unwrap_err().0, format!("tls.ca: {}: no PEM block", files.ca.display()));
    let mut gone = files.clone();
    gone.cert = dir.path().join("absent.pem");
    assert!(gone.load().unwrap_err().0.starts_with("tls.cert: "));
    // A key that is not the certificate's.
    let other = ca.leaf(dir.path(), "y", &ca);
    let mut m = ca.leaf(dir.path(), "z", &ca).load().unwrap();
    m.key = std::fs::read(&other.key).unwrap();
    assert!(m.server_config(&[]).is_err());
}
