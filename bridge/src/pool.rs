//! Shared channels (docs/bridge-protocol.md "Shared channels"): a small pool of pipelined
//! backend connections per target, carrying the requests of the shared channels of every filter
//! connection, with each answer handed back to the channel that asked for it.
//!
//! A filter connection's task cuts a shared channel's bytes into whole requests with the
//! protocol crate's own framer (geomesh-redis's RESP decoder, compiled natively: the bridge
//! frames, it still routes nothing) and sends them as a [`Batch`] to the pooled connection the
//! channel is bound to. That connection's task writes every batch in arrival order, cuts the
//! answer stream into answers with the same crate's decoder and returns them, in order, as
//! [`PoolEvent`]s to the filter connections' tasks. A channel stays on one pooled connection
//! while it has requests in flight, so its answers keep its order.
//!
//! A pooled connection that fails (closed, reset, stalled, an answer nobody asked for) fails
//! exactly the batches in flight or queued on it, with a message naming the target; the next
//! request bound to that slot of the pool connects again.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use geomesh_core::Framing;
use geomesh_frame::CloseCode;
use geomesh_redis::{ReplyDecoder, RequestDecoder};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;
use tracing::{debug, info};

use crate::{Route, Shared};

/// Pooled connections per target at least: with one, a connection's failure would fail every
/// shared channel of the target at once.
const MIN_POOL: usize = 2;
/// Bytes read from a pooled connection at once.
const READ_CHUNK: usize = 64 * 1024;

/// Requests of one shared channel, whole, for its pooled connection.
pub(crate) struct Batch {
    /// Where the answers go: the filter connection's task.
    pub to: mpsc::UnboundedSender<PoolEvent>,
    pub chan: u16,
    pub serial: u64,
    pub bytes: Bytes,
    /// Requests in `bytes` (one answer each).
    pub count: u32,
    /// The channel's `reply_timeout_ms` (`None`: no stall clock).
    pub reply_timeout: Option<Duration>,
}

/// What a pooled connection hands back to a filter connection's task.
pub(crate) enum PoolEvent {
    /// `answers` whole answers of channel `chan`, in order.
    Data {
        chan: u16,
        serial: u64,
        parts: Vec<Bytes>,
        answers: u32,
    },
    /// The pooled connection carrying requests of `chan` failed: the channel closes.
    Failed {
        chan: u16,
        serial: u64,
        code: CloseCode,
        message: String,
    },
}

/// The sending side of one pooled connection.
pub(crate) type PoolLink = mpsc::UnboundedSender<Batch>;

/// What a pool is for: a target, cut with a framing.
type PoolKey = (Framing, Arc<str>);

/// The pools of one bridge, by (framing, target).
#[derive(Debug, Default)]
pub(crate) struct Pools {
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    /// `GEOMESH_BRIDGE_POOL=off`: shared channels are served like `OPEN` (a dedicated backend
    /// connection each), for comparisons and as a kill switch.
    off: bool,
}

impl Pools {
    /// Pools, unless the environment turns them off (`GEOMESH_BRIDGE_POOL=off`).
    pub fn from_env() -> Pools {
        let off = std::env::var("GEOMESH_BRIDGE_POOL").is_ok_and(|v| v.eq_ignore_ascii_case("off"));
        if off {
            info!("GEOMESH_BRIDGE_POOL=off: shared channels get dedicated backend connections");
        }
        Pools {
            off,
            ..Pools::default()
        }
    }

    /// False when pools are turned off.
    pub fn enabled(&self) -> bool {
        !self.off
    }

    /// The pool of `target` (made on first use, with one connection per runtime worker, at
    /// least [`MIN_POOL`]).
    pub fn get(&self, framing: Framing, target: &Arc<str>) -> Arc<Pool> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry((framing, target.clone()))
            .or_insert_with(|| {
                let size = tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_workers())
                    .unwrap_or(1)
                    .clamp(MIN_POOL, 16);
                Arc::new(Pool {
                    target: target.clone(),
                    framing,
                    slots: (0..size).map(|_| Mutex::new(None)).collect(),
                    next: AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

/// The pooled connections of one target.
#[derive(Debug)]
pub(crate) struct Pool {
    target: Arc<str>,
    framing: Framing,
    slots: Vec<Mutex<Option<PoolLink>>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pooled connection for a channel (round-robin over the slots); a slot whose connection
    /// is gone gets a new one (connected by its task, batches queue meanwhile).
    pub fn pick(&self, shared: &Arc<Shared>) -> PoolLink {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1);
        let Some(slot) = self.slots.get(i) else {
            return self.spawn(shared);
        };
        let mut slot = match slot.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match slot.as_ref() {
            Some(link) if !link.is_closed() => link.clone(),
            _ => {
                let link = self.spawn(shared);
                *slot = Some(link.clone());
                link
            }
        }
    }

    fn spawn(&self, shared: &Arc<Shared>) -> PoolLink {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(shared.clone(), self.target.clone(), self.framing, rx));
        shared
            .stats
            .pool_connections_total
            .fetch_add(1, Ordering::Relaxed);
        tx
    }
}

/// Cuts the whole requests at the front of `buf` (a shared channel's bytes from the filter):
/// their bytes and count; a partial request stays in `buf`.
pub(crate) fn cut_requests(
    framing: Framing,
    dec: &mut RequestDecoder,
    buf: &mut BytesMut,
) -> Result<(Bytes, u32), String> {
    match framing {
        Framing::Resp => {
            let mut out = BytesMut::new();
            let mut n = 0u32;
            loop {
                match dec.decode(buf) {
                    Ok(Some(cmd)) => {
                        if n == 0 && buf.is_empty() {
                            // The usual case: one request, no copy.
                            return Ok((cmd.raw().clone(), 1));
                        }
                        out.extend_from_slice(cmd.raw());
                        n += 1;
                    }
                    Ok(None) => return Ok((out.freeze(), n)),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
}

struct InFlight {
    to: mpsc::UnboundedSender<PoolEvent>,
    chan: u16,
    serial: u64,
    left: u32,
    reply_timeout: Option<Duration>,
}

/// One pooled connection: connects, then writes batches and hands answers back until it fails.
async fn run(
    shared: Arc<Shared>,
    target: Arc<str>,
    framing: Framing,
    mut rx: mpsc::UnboundedReceiver<Batch>,
) {
    let connect_timeout = Duration::from_millis(u64::from(
        shared.snapshot().config.defaults.connect_timeout_ms,
    ));
    let io = match shared.resolve(&target, false).await {
        Ok(Route::Local(addrs)) => shared.connect_local(&target, &addrs, connect_timeout).await,
        Ok(Route::Remote { site, .. }) => Err((
            CloseCode::UnknownTarget,
            format!("`{target}` lives at site {site}: shared connections are local only"),
        )),
        Err(e) => Err(e),
    };
    let io = match io {
        Ok(s) => s,
        Err((code, message)) => {
            info!(%target, "shared connection: {message}");
            fail(&mut rx, VecDeque::new(), code, &message);
            return;
        }
    };
    debug!(%target, "shared connection open");
    let mut conn = PooledConn {
        io,
        target: target.clone(),
        wbuf: BytesMut::new(),
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        dec: match framing {
            Framing::Resp => ReplyDecoder::default(),
        },
        inflight: VecDeque::new(),
        stall_at: None,
        sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
        sleep_at: None,
    };
    let (code, message) = poll_fn(|cx| conn.poll(cx, &mut rx)).await;
    info!(%target, in_flight = conn.inflight.len(), "shared connection failed: {message}");
    let inflight = std::mem::take(&mut conn.inflight);
    fail(&mut rx, inflight, code, &message);
}

/// Fails what was in flight and what is queued, and closes the queue (the slot connects anew
/// on its next use).
fn fail(
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    inflight: VecDeque<InFlight>,
    code: CloseCode,
    message: &str,
) {
    rx.close();
    for f in inflight {
        let _ = f.to.send(PoolEvent::Failed {
            chan: f.chan,
            serial: f.serial,
            code,
            message: message.to_owned(),
        });
    }
    while let Ok(b) = rx.try_recv() {
        let _ = b.to.send(PoolEvent::Failed {
            chan: b.chan,
            serial: b.serial,
            code,
            message: message.to_owned(),
        });
    }
}

struct PooledConn {
    io: TcpStream,
    target: Arc<str>,
    wbuf: BytesMut,
    rbuf: BytesMut,
    dec: ReplyDecoder,
    inflight: VecDeque<InFlight>,
    stall_at: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<Instant>,
}

impl PooledConn {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut mpsc::UnboundedReceiver<Batch>,
    ) -> Poll<(CloseCode, String)> {
        loop {
            let mut progress = false;
            while let Poll::Ready(Some(b)) = rx.poll_recv(cx) {
                if b.count > 0 {
                    self.wbuf.extend_from_slice(&b.bytes);
                    self.inflight.push_back(InFlight {
                        to: b.to,
                        chan: b.chan,
                        serial: b.serial,
                        left: b.count,
                        reply_timeout: b.reply_timeout,
                    });
                }
                progress = true;
            }
            let now = Instant::now();
            let mut wrote = false;
            while !self.wbuf.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready((
                            CloseCode::Io,
                            format!("{}: write returned 0", self.target),
                        ))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.wbuf.advance(n);
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready((CloseCode::Io, format!("{}: write: {e}", self.target)))
                    }
                    Poll::Pending => break,
                }
            }
            if wrote {
                progress = true;
                if self.stall_at.is_none() {
                    self.stall_at = self
                        .inflight
                        .front()
                        .and_then(|f| f.reply_timeout)
                        .map(|t| now + t);
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready((
                        CloseCode::Eof,
                        format!("{} closed the shared connection", self.target),
                    ))
                }
                Poll::Ready(Ok(_)) => {
                    progress = true;
                    if let Err(m) = self.answers() {
                        return Poll::Ready((CloseCode::Io, m));
                    }
                    self.stall_at = self
                        .inflight
                        .front()
                        .and_then(|f| f.reply_timeout)
                        .map(|t| now + t);
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready((CloseCode::Io, format!("{}: read: {e}", self.target)))
                }
                Poll::Pending => {}
            }
            if let Some(at) = self.stall_at {
                if at <= now {
                    let ms = self
                        .inflight
                        .front()
                        .and_then(|f| f.reply_timeout)
                        .unwrap_or_default()
                        .as_millis();
                    return Poll::Ready((
                        CloseCode::Stalled,
                        format!(
                            "no reply from {} within {ms} ms on a shared connection",
                            self.target
                        ),
                    ));
                }
                if self.sleep_at != Some(at) {
                    self.sleep.as_mut().reset(at);
                    self.sleep_at = Some(at);
                }
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.sleep_at = None;
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Cuts what was read into answers and hands each run of one channel's answers back.
    fn answers(&mut self) -> Result<(), String> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut answers = 0u32;
        loop {
            let reply = match self.dec.decode(&mut self.rbuf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Err(format!(
                        "{}: unreadable answer on a shared connection: {e}",
                        self.target
                    ))
                }
            };
            let Some(head) = self.inflight.front_mut() else {
                return Err(format!(
                    "{} sent an answer nobody asked for on a shared connection",
                    self.target
                ));
            };
            parts.push(reply.into_raw());
            answers += 1;
            head.left = head.left.saturating_sub(1);
            if head.left == 0 {
                if let Some(done) = self.inflight.pop_front() {
                    let _ = done.to.send(PoolEvent::Data {
                        chan: done.chan,
                        serial: done.serial,
                        parts: std::mem::take(&mut parts),
                        answers,
                    });
                }
                answers = 0;
            }
        }
        if answers > 0 {
            if let Some(head) = self.inflight.front() {
                let _ = head.to.send(PoolEvent::Data {
                    chan: head.chan,
                    serial: head.serial,
                    parts,
                    answers,
                });
            }
        }
        Ok(())
    }
}
