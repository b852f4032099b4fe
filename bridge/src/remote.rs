//! Between bridges: the gRPC service (`proto/bridge.proto`), the client side of a tunnel, and
//! the periodic `Ping` of every site.
//!
//! The calling bridge opens one `Tunnel` stream per channel whose target lives at another site
//! (all streams to one site share that site's HTTP/2 connection). The called bridge resolves
//! the target in its own configuration, connects, and carries bytes both ways until one side
//! ends; it runs the stall clock of the channel next to the backend, where it is precise.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use geomesh_frame::CloseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::pb::bridge_client::BridgeClient;
use crate::pb::bridge_server::{Bridge as BridgeService, BridgeServer};
use crate::pb::{tunnel_frame::Frame, Closed, Open, PingReply, PingRequest, TunnelFrame};
use crate::{stats, OpenError, Route, Shared};

/// Messages queued per direction of a tunnel.
const TUNNEL_QUEUE: usize = 32;
/// Largest read from a backend into one tunnel message.
const TUNNEL_READ: usize = 64 * 1024;
/// How long the called bridge waits for the `Open` message.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// Opens a tunnel to `site` for `target`: returns the sender of the caller's messages (the
/// `Open` is already in it) and the stream of the far side's messages. Fails with
/// `SITE_UNREACHABLE` when the site's bridge does not answer within `connect_timeout`.
pub(crate) async fn open_tunnel(
    mut client: BridgeClient<Channel>,
    site: &str,
    origin: &str,
    target: &str,
    connect_timeout: Duration,
    reply_timeout_ms: u32,
) -> Result<(mpsc::Sender<TunnelFrame>, Streaming<TunnelFrame>), OpenError> {
    let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
    let open = TunnelFrame {
        frame: Some(Frame::Open(Open {
            target: target.to_owned(),
            connect_timeout_ms: u32::try_from(connect_timeout.as_millis()).unwrap_or(u32::MAX),
            reply_timeout_ms,
            origin_site: origin.to_owned(),
        })),
    };
    tx.try_send(open)
        .map_err(|_| (CloseCode::Io, "tunnel queue refused the Open".to_owned()))?;
    let call = client.tunnel(ReceiverStream::new(rx));
    match tokio::time::timeout(connect_timeout, call).await {
        Ok(Ok(resp)) => Ok((tx, resp.into_inner())),
        Ok(Err(status)) => Err((
            CloseCode::SiteUnreachable,
            format!("site {site} (for {target}): {}", describe(&status)),
        )),
        Err(_) => Err((
            CloseCode::SiteUnreachable,
            format!(
                "site {site} (for {target}): no answer within {} ms",
                connect_timeout.as_millis()
            ),
        )),
    }
}

fn describe(status: &Status) -> String {
    use std::error::Error as _;
    let mut s = format!("{:?}: {}", status.code(), status.message());
    let mut src = status.source();
    while let Some(e) = src {
        s.push_str(&format!(": {e}"));
        src = e.source();
    }
    s
}

/// Serves the gRPC service on `listener` until the task is aborted.
/// Serves the gRPC service until `stop` fires; then it accepts nothing more, sends HTTP/2
/// `GOAWAY` on its connections and returns once their open tunnels have ended.
/// With `tls`, every connection is TLS and must present a client certificate the configured CA
/// signed (crate::tls); a peer without one fails the handshake.
pub(crate) async fn serve_grpc(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Receiver<()>,
    tls: Option<Arc<geomesh_tls::Acceptor>>,
) {
    let svc = BridgeServer::new(Service { shared });
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(svc);
    let stop = async {
        let _ = stop.await;
    };
    // With TLS the handshakes are ours (geomesh-tls: each on its own task, within a time limit,
    // with the configuration a reload last read), tonic serves the connections that passed.
    let r = match tls {
        Some(acceptor) => match geomesh_tls::incoming(listener, acceptor, geomesh_tls::HANDSHAKE_TIMEOUT, "grpc_listen") {
            Ok(incoming) => server.serve_with_incoming_shutdown(incoming, stop).await,
            Err(e) => {
                warn!("gRPC server: {e}");
                return;
            }
        },
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server.serve_with_incoming_shutdown(incoming, stop).await
        }
    };
    if let Err(e) = r {
        warn!("gRPC server ended: {e}");
    }
}

struct Service {
    shared: Arc<Shared>,
}

type TunnelStream = Pin<Box<dyn Stream<Item = Result<TunnelFrame, Status>> + Send>>;

#[tonic::async_trait]
impl BridgeService for Service {
    type TunnelStream = TunnelStream;

    async fn tunnel(&self, req: Request<Streaming<TunnelFrame>>) -> Result<Response<TunnelStream>, Status> {
        let peer = req.remote_addr();
        let inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<Result<TunnelFrame, Status>>(TUNNEL_QUEUE);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            shared.stats.tunnels_in_active.fetch_add(1, Relaxed);
            shared.stats.tunnels_in_total.fetch_add(1, Relaxed);
            serve_tunnel(&shared, inbound, tx, peer).await;
            shared.stats.tunnels_in_active.fetch_sub(1, Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let r = req.into_inner();
        debug!(origin = %r.origin_site, "ping");
        Ok(Response::new(PingReply {
            nonce: r.nonce,
            site: self.shared.snapshot().config.site.clone(),
        }))
    }
}

fn closed(code: CloseCode, message: String) -> Result<TunnelFrame, Status> {
    Ok(TunnelFrame {
        frame: Some(Frame::Closed(Closed {
            code: code as u32,
            message,
        })),
    })
}

/// The called side of one tunnel.
async fn serve_tunnel(
    shared: &Shared,
    mut inbound: Streaming<TunnelFrame>,
    tx: mpsc::Sender<Result<TunnelFrame, Status>>,
    peer: Option<std::net::SocketAddr>,
) {
    let open = match tokio::time::timeout(OPEN_WAIT, inbound.message()).await {
        Ok(Ok(Some(TunnelFrame {
            frame: Some(Frame::Open(o)),
        }))) => o,
        Ok(Ok(_)) => {
            let _ = tx
                .send(closed(CloseCode::Io, "the first tunnel message must be Open".into()))
                .await;
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    let snap = shared.snapshot();
    let here = snap.config.site.clone();
    let connect_ms = if open.connect_timeout_ms == 0 {
        snap.config.defaults.connect_timeout_ms
    } else {
        open.connect_timeout_ms
    };
    let limit = snap.config.defaults.channel_buffer_bytes;
    drop(snap);
    let target = open.target;
    debug!(?peer, origin = %open.origin_site, %target, "tunnel open");
    let stream = match shared.resolve(&target, false).await {
        Ok(Route::Local(addrs)) => {
            shared
                .connect_local(&target, &addrs, Duration::from_millis(u64::from(connect_ms)))
                .await
        }
        Ok(Route::Remote { site, .. }) => Err((CloseCode::UnknownTarget, format!("{target} lives at {site}"))),
        Err(e) => Err(e),
    };
    let stream = match stream {
        Ok(s) => s,
        Err((code, msg)) => {
            info!(origin = %open.origin_site, %target, code = stats::close_name(code), "tunnel: {msg}");
            shared.stats.count_close(code);
            let _ = tx.send(closed(code, format!("{msg} (at site {here})"))).await;
            return;
        }
    };
    let reply_timeout = (open.reply_timeout_ms > 0).then(|| Duration::from_millis(u64::from(open.reply_timeout_ms)));
    let (mut rh, mut wh) = stream.into_split();
    let mut wbuf = BytesMut::new();
    let mut rbuf = BytesMut::with_capacity(TUNNEL_READ);
    let mut inbound_open = true;
    let mut backend_shut = false;
    let mut backend_eof = false;
    let mut stall_at: Option<Instant> = None;
    let mut stop = shared.stop.signal();
    let end: (CloseCode, String) = loop {
        if backend_eof && rbuf.is_empty() {
            break (CloseCode::Eof, format!("{target} closed the connection"));
        }
        if !inbound_open && wbuf.is_empty() && !backend_shut {
            // The caller ended its half of the stream (its filter's client half-closed): pass
            // the end of stream on to the backend and go on forwarding what it sends until it
            // closes. A caller that is gone altogether resets the stream (`tx.closed()`).
            if let Err(e) = wh.shutdown().await {
                break (CloseCode::Io, format!("{target}: shutdown: {e}"));
            }
            backend_shut = true;
        }
        let stall = async {
            match stall_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = inbound.message(), if inbound_open && wbuf.len() < limit => match msg {
                Ok(Some(TunnelFrame { frame: Some(Frame::Data(d)) })) => {
                    shared.stats.bytes_to_backends.fetch_add(d.len() as u64, Relaxed);
                    wbuf.extend_from_slice(&d);
                }
                Ok(Some(_)) => break (CloseCode::Io, "unexpected tunnel message".into()),
                Ok(None) => inbound_open = false,
                // A reset stream (the caller dropped the channel) also ends `tx`; anything
                // else is worth telling the caller, if it still listens.
                Err(status) if status.code() == tonic::Code::Cancelled => return,
                Err(status) => break (CloseCode::Io, format!("tunnel from {}: {}", open.origin_site, status.message())),
            },
            r = wh.write_buf(&mut wbuf), if !wbuf.is_empty() => match r {
                Ok(0) => break (CloseCode::Io, format!("{target}: write returned 0")),
                Ok(_) => {
                    if let (Some(t), None) = (reply_timeout, stall_at) {
                        stall_at = Some(Instant::now() + t);
                    }
                }
                Err(e) => break (CloseCode::Io, format!("{target}: write: {e}")),
            },
            r = rh.read_buf(&mut rbuf), if !backend_eof && rbuf.len() < TUNNEL_READ => match r {
                Ok(0) => backend_eof = true,
                Ok(_) => stall_at = None,
                Err(e) => break (CloseCode::Io, format!("{target}: read: {e}")),
            },
            permit = tx.reserve(), if !rbuf.is_empty() => match permit {
                Ok(p) => {
                    let data = rbuf.split().freeze();
                    shared.stats.bytes_from_backends.fetch_add(data.len() as u64, Relaxed);
                    p.send(Ok(TunnelFrame { frame: Some(Frame::Data(data)) }));
                    rbuf.reserve(TUNNEL_READ);
                }
                Err(_) => return,
            },
            _ = stall => {
                break (
                    CloseCode::Stalled,
                    format!("no reply from {target} within {} ms", open.reply_timeout_ms),
                );
            }
            _ = tx.closed() => return,
            _ = &mut stop => {
                break (
                    CloseCode::Io,
                    "geomesh-bridge is shutting down (drain period over)".to_owned(),
                );
            }
        }
    };
    debug!(origin = %open.origin_site, %target, code = stats::close_name(end.0), "tunnel: {}", end.1);
    shared.stats.count_close(end.0);
    let _ = tx.send(closed(end.0, format!("{} (at site {here})", end.1))).await;
}

/// Pings every site of the configuration in force every `ping_interval_ms`, recording the
/// round trip (or the error) in the stats.
pub(crate) async fn ping_sites(shared: Arc<Shared>) {
    let mut nonce = 0u64;
    loop {
        let snap = shared.snapshot();
        let interval = snap.config.defaults.ping_interval_ms;
        if interval == 0 || snap.sites.is_empty() {
            drop(snap);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let timeout = Duration::from_millis(u64::from(snap.config.defaults.connect_timeout_ms));
        let origin = snap.config.site.clone();
        let mut results = Vec::new();
        for (name, site) in &snap.sites {
            nonce += 1;
            let mut c = site.client.clone();
            let started = Instant::now();
            let req = PingRequest {
                nonce,
                origin_site: origin.clone(),
            };
            let r = match tokio::time::timeout(timeout, c.ping(req)).await {
                Ok(Ok(reply)) if reply.get_ref().nonce == nonce => Ok(started.elapsed().as_micros() as u64),
                Ok(Ok(_)) => Err("wrong nonce".to_owned()),
                Ok(Err(status)) => Err(describe(&status)),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            results.push((name.clone(), r));
        }
        if let Ok(mut m) = shared.stats.sites.lock() {
            m.clear();
            m.extend(results);
        }
        drop(snap);
        tokio::time::sleep(Duration::from_millis(u64::from(interval))).await;
    }
}
