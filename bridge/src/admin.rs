//! The admin endpoint (`admin_listen`): `GET /ready` (200 `ready` once every listener is
//! bound; 503 `starting` before, 503 `draining` once SIGTERM started a drain), `GET /stats`
//! (text, one `name value` per line), `GET /stats?format=json`.
//! A deliberately tiny HTTP/1.1 server: one request per connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::Shared;

/// Serves the admin endpoint on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), handle(s, &shared)).await;
                });
            }
            Err(e) => {
                warn!("admin accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn handle(mut s: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (status, ctype, body) = route(method, target, shared);
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

fn route(method: &str, target: &str, shared: &Shared) -> (&'static str, &'static str, String) {
    if method != "GET" {
        return ("405 Method Not Allowed", "text/plain", "GET only\n".into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let site = shared.snapshot().config.site.clone();
    match path {
        "/ready" if shared.is_ready() => ("200 OK", "text/plain", "ready\n".into()),
        "/ready" if shared.is_draining() => ("503 Service Unavailable", "text/plain", "draining\n".into()),
        "/ready" => ("503 Service Unavailable", "text/plain", "starting\n".into()),
        "/stats" if query.split('&').any(|q| q == "format=json") => {
            ("200 OK", "application/json", shared.stats.render_json(&site))
        }
        "/stats" => ("200 OK", "text/plain", shared.stats.render_text(&site)),
        _ => ("404 Not Found", "text/plain", "try /ready or /stats\n".into()),
    }
}
