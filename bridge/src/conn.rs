//! One filter connection: GMB/1 frames in and out, its channels, its timers.
//!
//! Everything of one connection runs in ONE task, as one hand-written poll loop over the
//! filter socket, every backend socket or tunnel of its channels, and one timer. Each pass
//! reads all that is ready (backend bytes go straight into the filter's output buffer behind a
//! frame header, with no intermediate buffer), then writes: every channel's queued bytes in one
//! write, and all frames for the filter in one write. No locks, no channels between tasks on
//! the data path; only `OPEN` spawns a short task (resolve + connect) that hands back the
//! connected socket.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use geomesh_core::Framing;
use geomesh_frame::{
    encode_closed, encode_error, encode_wake_reply, split_frame, CloseCode, Header, Hello, Kind, Open, OpenShared,
    Wake, HEADER_LEN, MAX_PAYLOAD, VERSION,
};
use geomesh_redis::RequestDecoder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tokio_util::io::poll_read_buf;
use tokio_util::sync::PollSender;
use tonic::Streaming;
use tracing::{debug, info, warn};

use crate::drain::StopSignal;
use crate::pb::{tunnel_frame::Frame, TunnelFrame};
use crate::pool::{cut_requests, Batch, Pool, PoolEvent, PoolLink};
use crate::stats::{self, ConnCounters};
use crate::{remote, OpenError, Route, Shared};

/// Most bytes read from one socket at once (and so the largest `DATA` frame the bridge sends).
const READ_CHUNK: usize = 64 * 1024;
/// Reads per socket per pass, for fairness between channels.
const READS_PER_PASS: usize = 4;
/// Passes over everything before the task yields to others.
const MAX_PASSES: usize = 16;
/// Buffers larger than this are given back once empty.
const BIG_BUFFER: usize = 1 << 20;
/// How long a connection that is being closed after an `ERROR` may take to flush it.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Largest `data` message sent into a tunnel (a gRPC server refuses messages over 4 MiB by
/// default; the channel buffer holds up to `channel_buffer_bytes`).
const TUNNEL_MESSAGE: usize = 1 << 20;

/// A channel's backend, once open.
pub(crate) enum Opened {
    Tcp(TcpStream),
    Tunnel {
        tx: mpsc::Sender<TunnelFrame>,
        rx: Box<Streaming<TunnelFrame>>,
        site: String,
    },
    /// A shared channel of a cluster of this site: carried by the target's pool.
    Pool(Arc<Pool>),
}

/// Resolves `target` and connects to it (here, or through a tunnel to its site); a shared
/// channel (`share`) of a local target gets the target's pool instead (a tunnelled one is
/// dedicated: the far bridge's own connection).
async fn open_channel(
    shared: Arc<Shared>,
    target: Arc<str>,
    connect_timeout: Duration,
    reply_timeout_ms: u32,
    share: Option<Framing>,
) -> Result<Opened, OpenError> {
    match shared.resolve(&target, true).await? {
        Route::Local(_) if share.is_some() && shared.pools.enabled() => {
            let framing = share.unwrap_or(Framing::Resp);
            shared.stats.shared_channels_total.fetch_add(1, Relaxed);
            Ok(Opened::Pool(shared.pools.get(framing, &target)))
        }
        Route::Local(addrs) => shared
            .connect_local(&target, &addrs, connect_timeout)
            .await
            .map(Opened::Tcp),
        Route::Remote { site, client } => {
            shared.stats.remote_channels_total.fetch_add(1, Relaxed);
            let origin = shared.snapshot().config.site.clone();
            let (tx, rx) =
                remote::open_tunnel(client, &site, &origin, &target, connect_timeout, reply_timeout_ms).await?;
            Ok(Opened::Tunnel {
                tx,
                rx: Box::new(rx),
                site,
            })
        }
    }
}

struct OpenResult {
    chan: u16,
    serial: u64,
    result: Result<Opened, OpenError>,
}

enum ChanIo {
    Connecting(AbortHandle),
    Tcp(TcpStream),
    /// Shared: whole requests go to a pooled connection (bound while requests are in flight).
    Pool {
        pool: Arc<Pool>,
        link: Option<PoolLink>,
    },
    /// Was shared, `UNSHARE`d: a dedicated connection is being made (`ready` once made); the
    /// bytes since wait in `wbuf` until the pooled connection has answered what it carries.
    Unsharing {
        task: AbortHandle,
        ready: Option<TcpStream>,
    },
    Tunnel {
        tx: PollSender<TunnelFrame>,
        rx: Box<Streaming<TunnelFrame>>,
        site: String,
    },
}

struct Chan {
    serial: u64,
    target: Arc<str>,
    /// `reply_timeout_ms` of the `OPEN` (plus the connect timeout for a tunnel, which has the
    /// far bridge's own clock in front of it).
    reply_timeout: Option<Duration>,
    reply_timeout_ms: u32,
    connect_timeout: Duration,
    /// When the stall clock runs out.
    stall_at: Option<Instant>,
    io: ChanIo,
    /// Bytes from the filter not yet taken by the backend.
    wbuf: BytesMut,
    /// Our write side to the backend is shut down (after the filter's end of stream).
    shut: bool,
    /// Opened shared (`OPEN_SHARED`) and not `UNSHARE`d: how requests are cut.
    share: Option<Framing>,
    /// Cuts a shared channel's bytes into requests (made when shared).
    requests: Option<RequestDecoder>,
    /// Requests sent to the pooled connection and not yet answered.
    in_flight: u32,
}

impl Drop for Chan {
    fn drop(&mut self) {
        match &self.io {
            ChanIo::Connecting(h) | ChanIo::Unsharing { task: h, .. } => h.abort(),
            _ => {}
        }
    }
}

struct Limits {
    channel_buffer: usize,
    filter_buffer: usize,
    max_timers: usize,
    half_close_drain: Duration,
}

struct Conn<S> {
    io: S,
    peer: String,
    label: String,
    shared: Arc<Shared>,
    limits: Limits,
    hello: bool,
    closing: Option<Instant>,
    /// Our side of the connection is shut down (after an ERROR was flushed, or once a
    /// half-closed connection has nothing left to send).
    shut_down: bool,
    /// The filter closed its side (read EOF): no more frames; backends are half-closed and
    /// what they still send is forwarded until they close or `drain_at`.
    read_eof: bool,
    /// A `DATA` frame in `inbuf` waits for its channel to go under `channel_buffer_bytes`: the
    /// frames from it on are held and the filter connection is not read (backpressure).
    input_blocked: bool,
    /// End of the drain after the filter's end of stream (`defaults.half_close_drain_ms`).
    drain_at: Option<Instant>,
    inbuf: BytesMut,
    out: BytesMut,
    scratch: Vec<u8>,
    chans: HashMap<u16, Chan>,
    serial: u64,
    events_tx: mpsc::UnboundedSender<OpenResult>,
    events_rx: mpsc::UnboundedReceiver<OpenResult>,
    /// Answers and failures of shared channels, from their pooled connections.
    pool_tx: mpsc::UnboundedSender<PoolEvent>,
    pool_rx: mpsc::UnboundedReceiver<PoolEvent>,
    /// (when, sequence, token): pending `WAKE`s, earliest first.
    wakes: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    wake_seq: u64,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<Instant>,
    closes: Vec<(u16, CloseCode, String)>,
    stats_id: u64,
    counters: Arc<ConnCounters>,
    /// Fires at the end of a drain (SIGTERM).
    stop: StopSignal,
    stopped: bool,
}

/// Serves one filter connection until either side closes it.
pub(crate) async fn serve<S>(io: S, peer: String, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.stats.filter_connections_active.fetch_add(1, Relaxed);
    shared.stats.filter_connections_total.fetch_add(1, Relaxed);
    let snap = shared.snapshot();
    let d = &snap.config.defaults;
    let limits = Limits {
        channel_buffer: d.channel_buffer_bytes,
        filter_buffer: d.filter_buffer_bytes,
        max_timers: d.max_timers,
        half_close_drain: Duration::from_millis(u64::from(d.half_close_drain_ms)),
    };
    drop(snap);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (pool_tx, pool_rx) = mpsc::unbounded_channel();
    let (stats_id, counters) = shared.stats.register();
    let mut conn = Conn {
        io,
        peer,
        label: String::new(),
        shared: shared.clone(),
        limits,
        hello: false,
        closing: None,
        shut_down: false,
        read_eof: false,
        input_blocked: false,
        drain_at: None,
        inbuf: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::with_capacity(READ_CHUNK),
        scratch: Vec::with_capacity(256),
        chans: HashMap::new(),
        serial: 0,
        events_tx,
        events_rx,
        pool_tx,
        pool_rx,
        wakes: BinaryHeap::new(),
        wake_seq: 0,
        sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
        sleep_at: None,
        closes: Vec::new(),
        stats_id,
        counters,
        stop: shared.stop.signal(),
        stopped: false,
    };
    debug!(peer = %conn.peer, "filter connected");
    poll_fn(|cx| conn.poll_passes(cx)).await;
    conn.teardown();
    shared.stats.filter_connections_active.fetch_sub(1, Relaxed);
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn poll_passes(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.stopped && self.stop.poll_stop(cx).is_ready() {
            self.stopped = true;
            if self.closing.is_none() {
                self.shutting_down();
            }
        }
        for _ in 0..MAX_PASSES {
            let mut progress = false;

            while let Poll::Ready(Some(ev)) = self.events_rx.poll_recv(cx) {
                self.on_opened(ev);
                progress = true;
            }
            while let Poll::Ready(Some(ev)) = self.pool_rx.poll_recv(cx) {
                self.on_pool_event(ev);
                progress = true;
            }

            if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 4 {
                self.inbuf.reserve(READ_CHUNK);
            }
            let read = if self.read_eof || (self.input_blocked && self.closing.is_none()) {
                Poll::Pending
            } else {
                poll_read_buf(Pin::new(&mut self.io), cx, &mut self.inbuf)
            };
            match read {
                Poll::Ready(Ok(0)) => {
                    self.on_filter_eof();
                    progress = true;
                }
                Poll::Ready(Ok(_)) if self.closing.is_some() => {
                    // After an ERROR the input is drained and dropped, so that closing the
                    // socket sends FIN, not a reset that could destroy the ERROR frame.
                    self.inbuf.clear();
                    progress = true;
                }
                Poll::Ready(Ok(_)) => {
                    self.on_input();
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    debug!(peer = %self.peer, label = %self.label, "filter connection: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }

            let now = Instant::now();
            progress |= self.poll_channels(cx, now);
            progress |= self.poll_timers(cx, now);
            if self.input_blocked && self.closing.is_none() {
                // A backend took bytes, or its channel closed: go on with the held frames.
                let held = self.inbuf.len();
                self.on_input();
                progress |= self.inbuf.len() != held;
            }
            if self.closing.is_some_and(|at| at <= now) {
                return Poll::Ready(());
            }

            while !self.out.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &self.out) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        self.out.advance(n);
                        ConnCounters::add(&self.counters.to_filter, n as u64);
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            if self.out.is_empty() && self.out.capacity() > BIG_BUFFER {
                self.out = BytesMut::with_capacity(READ_CHUNK);
            }
            // Ending: after an ERROR, or once the filter has half-closed and every channel is
            // gone (their CLOSED frames are in `out`).
            let ending = self.closing.is_some() || (self.read_eof && self.chans.is_empty());
            if ending && self.out.is_empty() && !self.shut_down {
                match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        self.shut_down = true;
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            if self.shut_down && self.read_eof {
                // Both directions are over: close.
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The filter closed its side of the connection (`tcp_proxy` relays the client's FIN this
    /// way). Nothing acknowledged is dropped: every backend is half-closed once it has taken
    /// the bytes queued for it, and what backends still send (and `WAKE` replies) goes on to
    /// the filter until every channel has closed or `half_close_drain` has passed.
    fn on_filter_eof(&mut self) {
        self.read_eof = true;
        if self.closing.is_some() {
            debug!(peer = %self.peer, label = %self.label, "filter closed the connection");
            return;
        }
        if !self.inbuf.is_empty() {
            debug!(
                peer = %self.peer,
                label = %self.label,
                bytes = self.inbuf.len(),
                "filter ended its side inside a frame; the partial frame is dropped"
            );
            self.inbuf.clear();
        }
        debug!(
            peer = %self.peer,
            label = %self.label,
            channels = self.chans.len(),
            "filter ended its side; draining the channels"
        );
        // Also bounds the last write when no channel is open and the filter does not read.
        self.drain_at = Some(Instant::now() + self.limits.half_close_drain);
    }

    /// The drain after the filter's end of stream is over: the channels still open are closed
    /// (`CLOSED(STALLED)`), then the connection ends once those frames are written (or after
    /// [`CLOSE_GRACE`] if the filter does not read them).
    fn drain_over(&mut self, now: Instant) {
        let ids: Vec<u16> = self.chans.keys().copied().collect();
        if !ids.is_empty() {
            info!(
                peer = %self.peer,
                label = %self.label,
                channels = ids.len(),
                "drain after the filter's end of stream is over; closing the channels left"
            );
        }
        let ms = self.limits.half_close_drain.as_millis();
        for id in ids {
            let target = self.chans.get(&id).map(|c| c.target.clone()).unwrap_or_default();
            let msg = format!("{target} did not finish within {ms} ms of the client's end of stream");
            self.close_chan(id, CloseCode::Stalled, &msg);
        }
        self.wakes.clear();
        self.closing = Some(now + CLOSE_GRACE);
    }

    /// Handles the complete frames in `inbuf`, in order, up to a `DATA` frame whose channel
    /// already holds `channel_buffer_bytes` its backend has not taken: that one and the frames
    /// after it wait ([`Self::input_blocked`]), and the filter connection is not read meanwhile.
    fn on_input(&mut self) {
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut pos = 0;
        let mut need = 0;
        self.input_blocked = false;
        while self.closing.is_none() {
            let rest = inbuf.get(pos..).unwrap_or_default();
            match split_frame(rest) {
                Ok(Some((f, n))) => {
                    if f.kind == Kind::Data
                        && self
                            .chans
                            .get(&f.chan)
                            .is_some_and(|c| c.wbuf.len() >= self.limits.channel_buffer)
                    {
                        self.input_blocked = true;
                        break;
                    }
                    pos += n;
                    self.on_frame(f.kind, f.chan, f.payload);
                }
                Ok(None) => {
                    if let Ok(Some(h)) = Header::parse(rest) {
                        need = HEADER_LEN + h.len;
                    }
                    break;
                }
                Err(e) => {
                    self.fatal(&e.to_string());
                    break;
                }
            }
        }
        ConnCounters::add(&self.counters.from_filter, pos as u64);
        inbuf.advance(pos);
        if inbuf.is_empty() && inbuf.capacity() > BIG_BUFFER && need == 0 {
            inbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if need > inbuf.len() {
            inbuf.reserve(need - inbuf.len());
        }
        self.inbuf = inbuf;
    }

    fn on_frame(&mut self, kind: Kind, chan: u16, p: &[u8]) {
        if !self.hello && kind != Kind::Hello {
            return self.fatal(&format!("expected HELLO as the first frame, got {kind:?}"));
        }
        let needs_chan = matches!(
            kind,
            Kind::Open | Kind::Data | Kind::Close | Kind::OpenShared | Kind::Unshare
        );
        if needs_chan && chan == 0 {
            return self.fatal(&format!("{kind:?} on channel 0"));
        }
        if matches!(kind, Kind::Hello | Kind::Wake) && chan != 0 {
            return self.fatal(&format!("{kind:?} on channel {chan}; it belongs on channel 0"));
        }
        match kind {
            Kind::Hello => {
                if self.hello {
                    return self.fatal("second HELLO");
                }
                match Hello::parse(p) {
                    Ok(h) if h.version == VERSION => {
                        self.hello = true;
                        self.label = h.label.to_owned();
                        debug!(peer = %self.peer, label = %self.label, "HELLO");
                    }
                    Ok(h) => self.fatal(&format!(
                        "unsupported GMB version {}; this bridge speaks version {VERSION}",
                        h.version
                    )),
                    Err(e) => self.fatal(&e.to_string()),
                }
            }
            Kind::Open => match Open::parse(p) {
                Ok(o) => {
                    if self.chans.contains_key(&chan) {
                        return self.fatal(&format!("OPEN of channel {chan}, which is open"));
                    }
                    self.open(chan, &o, None);
                }
                Err(e) => self.fatal(&e.to_string()),
            },
            Kind::OpenShared => match OpenShared::parse(p) {
                Ok(o) => {
                    if self.chans.contains_key(&chan) {
                        return self
                            .fatal(&format!("OPEN_SHARED of channel {chan}, which is open"));
                    }
                    self.open(chan, &o.open, Some(o.framing));
                }
                Err(e) => self.fatal(&e.to_string()),
            },
            Kind::Unshare => self.unshare(chan),
            Kind::Data => {
                // Under `channel_buffer_bytes` before this frame ([`Self::on_input`]), so at
                // most that plus one frame (`MAX_PAYLOAD`) is held for a backend.
                if let Some(ch) = self.chans.get_mut(&chan) {
                    ch.wbuf.extend_from_slice(p);
                }
                // Else the channel is closed and its CLOSED is on its way: drop the bytes.
            }
            Kind::Close => {
                if self.chans.contains_key(&chan) {
                    self.close_chan(chan, CloseCode::Local, "closed by the filter");
                }
            }
            Kind::Wake => match Wake::parse(p) {
                Ok(w) if w.delay_ms == 0 => self.wake_reply(w.token),
                Ok(w) => {
                    if self.wakes.len() >= self.limits.max_timers {
                        return self.fatal(&format!("more than {} pending WAKE timers", self.limits.max_timers));
                    }
                    let at = Instant::now() + Duration::from_millis(u64::from(w.delay_ms));
                    self.wake_seq += 1;
                    self.wakes.push(Reverse((at, self.wake_seq, w.token)));
                }
                Err(e) => self.fatal(&e.to_string()),
            },
            other => self.fatal(&format!(
                "{other:?} is a frame of the bridge; a filter does not send it"
            )),
        }
    }

    fn open(&mut self, chan: u16, o: &Open<'_>, share: Option<Framing>) {
        let snap = self.shared.snapshot();
        let connect_ms = if o.connect_timeout_ms == 0 {
            snap.config.defaults.connect_timeout_ms
        } else {
            o.connect_timeout_ms
        };
        drop(snap);
        let connect_timeout = Duration::from_millis(u64::from(connect_ms));
        let target: Arc<str> = Arc::from(o.target);
        self.serial += 1;
        let serial = self.serial;
        let tx = self.events_tx.clone();
        let shared = self.shared.clone();
        let reply_ms = o.reply_timeout_ms;
        let t = target.clone();
        let task = tokio::spawn(async move {
            let result = open_channel(shared, t, connect_timeout, reply_ms, share).await;
            let _ = tx.send(OpenResult { chan, serial, result });
        });
        debug!(peer = %self.peer, label = %self.label, chan, target = %target, "OPEN");
        self.chans.insert(
            chan,
            Chan {
                serial,
                target,
                reply_timeout: (reply_ms > 0).then(|| Duration::from_millis(u64::from(reply_ms))),
                reply_timeout_ms: reply_ms,
                connect_timeout,
                stall_at: None,
                io: ChanIo::Connecting(task.abort_handle()),
                wbuf: BytesMut::new(),
                shut: false,
                share,
                requests: share.map(|_| RequestDecoder::default()),
                in_flight: 0,
            },
        );
        self.shared.stats.channels_total.fetch_add(1, Relaxed);
        self.shared.stats.channels_active.fetch_add(1, Relaxed);
    }

    /// `UNSHARE`: the channel's bytes from here on go to a dedicated backend connection, made
    /// now; they are written once the pooled connection has answered what it carries for the
    /// channel (so answers keep the channel's order). No-op for a channel that is not shared.
    fn unshare(&mut self, chan: u16) {
        let Some(ch) = self.chans.get_mut(&chan) else {
            return;
        };
        if ch.share.take().is_none() {
            return;
        }
        ch.requests = None;
        let spawn = |serial: u64, ch: &Chan| {
            let tx = self.events_tx.clone();
            let shared = self.shared.clone();
            let (t, connect_timeout, reply_ms) =
                (ch.target.clone(), ch.connect_timeout, ch.reply_timeout_ms);
            tokio::spawn(async move {
                let result = open_channel(shared, t, connect_timeout, reply_ms, None).await;
                let _ = tx.send(OpenResult {
                    chan,
                    serial,
                    result,
                });
            })
            .abort_handle()
        };
        debug!(label = %self.label, chan, target = %ch.target, in_flight = ch.in_flight, "UNSHARE");
        match &ch.io {
            ChanIo::Connecting(h) => {
                // Nothing was sent shared yet: connect dedicated instead (a new serial drops a
                // result of the first attempt that is already on its way).
                h.abort();
                self.serial += 1;
                ch.serial = self.serial;
                ch.io = ChanIo::Connecting(spawn(ch.serial, ch));
            }
            ChanIo::Pool { .. } => {
                ch.io = ChanIo::Unsharing {
                    task: spawn(ch.serial, ch),
                    ready: None,
                };
            }
            _ => {}
        }
    }

    /// Answers (or the failure) of a shared channel's pooled connection.
    fn on_pool_event(&mut self, ev: PoolEvent) {
        match ev {
            PoolEvent::Data {
                chan,
                serial,
                parts,
                answers,
            } => {
                let Some(ch) = self.chans.get_mut(&chan) else {
                    return;
                };
                if ch.serial != serial {
                    return;
                }
                let total: usize = parts.iter().map(Bytes::len).sum();
                if total <= MAX_PAYLOAD {
                    self.scratch.clear();
                    Header::write(&mut self.scratch, Kind::BridgeData, chan, total);
                    self.out.extend_from_slice(&self.scratch);
                    for p in &parts {
                        self.out.extend_from_slice(p);
                    }
                } else {
                    for chunk in parts.iter().flat_map(|p| p.chunks(MAX_PAYLOAD)) {
                        self.scratch.clear();
                        Header::write(&mut self.scratch, Kind::BridgeData, chan, chunk.len());
                        self.out.extend_from_slice(&self.scratch);
                        self.out.extend_from_slice(chunk);
                    }
                }
                ConnCounters::add(&self.counters.from_backends, total as u64);
                ch.in_flight = ch.in_flight.saturating_sub(answers);
                if ch.in_flight == 0 {
                    if let ChanIo::Unsharing { ready, .. } = &mut ch.io {
                        if let Some(s) = ready.take() {
                            debug!(label = %self.label, chan, target = %ch.target, "dedicated connection takes over");
                            ch.io = ChanIo::Tcp(s);
                        }
                    }
                }
            }
            PoolEvent::Failed {
                chan,
                serial,
                code,
                message,
            } => {
                if self.chans.get(&chan).is_some_and(|c| c.serial == serial) {
                    self.close_chan(chan, code, &message);
                }
            }
        }
    }

    fn on_opened(&mut self, ev: OpenResult) {
        let Some(ch) = self.chans.get_mut(&ev.chan) else { return };
        if ch.serial != ev.serial {
            return;
        }
        match ev.result {
            Ok(Opened::Tcp(s)) => {
                debug!(label = %self.label, chan = ev.chan, target = %ch.target, "connected");
                match &mut ch.io {
                    ChanIo::Unsharing { ready, .. } if ch.in_flight > 0 => *ready = Some(s),
                    _ => ch.io = ChanIo::Tcp(s),
                }
            }
            Ok(Opened::Pool(pool)) => {
                debug!(label = %self.label, chan = ev.chan, target = %ch.target, "shared");
                ch.io = ChanIo::Pool { pool, link: None };
            }
            Ok(Opened::Tunnel { tx, rx, site }) => {
                debug!(label = %self.label, chan = ev.chan, target = %ch.target, %site, "tunnel open");
                // The far bridge runs the precise stall clock; ours only covers a far bridge
                // that stops answering altogether.
                ch.reply_timeout = ch.reply_timeout.map(|t| t + ch.connect_timeout);
                ch.io = ChanIo::Tunnel {
                    tx: PollSender::new(tx),
                    rx,
                    site,
                };
            }
            Err((code, msg)) => self.close_chan(ev.chan, code, &msg),
        }
    }

    /// Writes queued bytes to every backend and reads what they sent. True if anything moved.
    fn poll_channels(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let paused = self.out.len() >= self.limits.filter_buffer;
        let half_close = self.read_eof;
        let mut progress = false;
        let Self {
            chans,
            out,
            scratch,
            closes,
            counters,
            pool_tx,
            shared,
            ..
        } = self;
        for (&id, ch) in chans.iter_mut() {
            match &mut ch.io {
                ChanIo::Connecting(_) | ChanIo::Unsharing { .. } => {}
                ChanIo::Pool { pool, link } => {
                    if !ch.wbuf.is_empty() {
                        let (Some(framing), Some(dec)) = (ch.share, ch.requests.as_mut()) else {
                            continue;
                        };
                        let (bytes, count) = match cut_requests(framing, dec, &mut ch.wbuf) {
                            Ok(r) => r,
                            Err(e) => {
                                let msg = format!(
                                    "{}: malformed request on a shared channel: {e}",
                                    ch.target
                                );
                                closes.push((id, CloseCode::Io, msg));
                                continue;
                            }
                        };
                        if count > 0 {
                            ConnCounters::add(&counters.to_backends, bytes.len() as u64);
                            let mut batch = Batch {
                                to: pool_tx.clone(),
                                chan: id,
                                serial: ch.serial,
                                bytes,
                                count,
                                reply_timeout: ch.reply_timeout,
                            };
                            // Bound to one pooled connection while requests are in flight (their
                            // answers keep the channel's order); free to move when none are.
                            for _ in 0..2 {
                                if link
                                    .as_ref()
                                    .is_none_or(|l| ch.in_flight == 0 && l.is_closed())
                                {
                                    *link = Some(pool.pick(shared));
                                }
                                let Some(l) = link.as_ref() else { break };
                                match l.send(batch) {
                                    Ok(()) => {
                                        ch.in_flight = ch.in_flight.saturating_add(count);
                                        progress = true;
                                        break;
                                    }
                                    Err(mpsc::error::SendError(b)) => {
                                        batch = b;
                                        if ch.in_flight > 0 {
                                            // Its failure is on its way and closes the channel.
                                            break;
                                        }
                                        *link = None;
                                    }
                                }
                            }
                        }
                    }
                    if half_close && ch.wbuf.is_empty() && ch.in_flight == 0 {
                        let msg = format!(
                            "{}: shared channel released after the client's end of stream",
                            ch.target
                        );
                        closes.push((id, CloseCode::Eof, msg));
                    }
                }
                ChanIo::Tcp(s) => {
                    let mut wrote = false;
                    while !ch.wbuf.is_empty() {
                        match Pin::new(&mut *s).poll_write(cx, &ch.wbuf) {
                            Poll::Ready(Ok(0)) => {
                                closes.push((id, CloseCode::Io, format!("{}: write returned 0", ch.target)));
                                break;
                            }
                            Poll::Ready(Ok(n)) => {
                                ch.wbuf.advance(n);
                                ConnCounters::add(&counters.to_backends, n as u64);
                                wrote = true;
                            }
                            Poll::Ready(Err(e)) => {
                                closes.push((id, CloseCode::Io, format!("{}: write: {e}", ch.target)));
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                    if wrote || !ch.wbuf.is_empty() {
                        // Bytes written, or bytes the backend does not take: the stall clock
                        // runs until it sends something (a backend that takes nothing while
                        // the filter connection waits for it is closed STALLED, not waited on).
                        if let (Some(t), None) = (ch.reply_timeout, ch.stall_at) {
                            ch.stall_at = Some(now + t);
                        }
                    }
                    if wrote {
                        progress = true;
                        if ch.wbuf.is_empty() && ch.wbuf.capacity() > BIG_BUFFER {
                            ch.wbuf = BytesMut::new();
                        }
                    }
                    if half_close && !ch.shut && ch.wbuf.is_empty() {
                        // The filter's end of stream, passed on once the backend has every
                        // byte sent before it.
                        match Pin::new(&mut *s).poll_shutdown(cx) {
                            Poll::Ready(Ok(())) => {
                                ch.shut = true;
                                progress = true;
                            }
                            Poll::Ready(Err(e)) => {
                                closes.push((id, CloseCode::Io, format!("{}: shutdown: {e}", ch.target)));
                                continue;
                            }
                            Poll::Pending => {}
                        }
                    }
                    if paused {
                        continue;
                    }
                    for _ in 0..READS_PER_PASS {
                        let start = out.len();
                        out.reserve(HEADER_LEN + READ_CHUNK);
                        out.put_bytes(0, HEADER_LEN);
                        let r = poll_read_buf(Pin::new(&mut *s), cx, &mut (&mut *out).limit(READ_CHUNK));
                        match r {
                            Poll::Ready(Ok(0)) => {
                                out.truncate(start);
                                closes.push((id, CloseCode::Eof, format!("{} closed the connection", ch.target)));
                                break;
                            }
                            Poll::Ready(Ok(n)) => {
                                scratch.clear();
                                Header::write(scratch, Kind::BridgeData, id, n);
                                if let Some(h) = out.get_mut(start..start + HEADER_LEN) {
                                    h.copy_from_slice(scratch);
                                }
                                ConnCounters::add(&counters.from_backends, n as u64);
                                ch.stall_at = None;
                                progress = true;
                            }
                            Poll::Ready(Err(e)) => {
                                out.truncate(start);
                                closes.push((id, CloseCode::Io, format!("{}: read: {e}", ch.target)));
                                break;
                            }
                            Poll::Pending => {
                                out.truncate(start);
                                break;
                            }
                        }
                    }
                }
                ChanIo::Tunnel { tx, rx, site } => {
                    while !ch.wbuf.is_empty() {
                        match tx.poll_reserve(cx) {
                            Poll::Ready(Ok(())) => {
                                let n = ch.wbuf.len().min(TUNNEL_MESSAGE);
                                let data = ch.wbuf.split_to(n).freeze();
                                ConnCounters::add(&counters.to_backends, data.len() as u64);
                                if tx
                                    .send_item(TunnelFrame {
                                        frame: Some(Frame::Data(data)),
                                    })
                                    .is_err()
                                {
                                    // The far side ended the call: its CLOSED (why it refused)
                                    // or its end comes on the read side below; these bytes
                                    // have nowhere to go.
                                    ch.wbuf.clear();
                                    break;
                                }
                                progress = true;
                                if let (Some(t), None) = (ch.reply_timeout, ch.stall_at) {
                                    ch.stall_at = Some(now + t);
                                }
                            }
                            Poll::Ready(Err(_)) => {
                                ch.wbuf.clear();
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                    if !ch.wbuf.is_empty() {
                        // The tunnel takes nothing (HTTP/2 flow control): the stall clock runs.
                        if let (Some(t), None) = (ch.reply_timeout, ch.stall_at) {
                            ch.stall_at = Some(now + t);
                        }
                    }
                    if half_close && !ch.shut && ch.wbuf.is_empty() {
                        // Ends the caller's half of the gRPC stream (END_STREAM after the
                        // queued messages): the far bridge half-closes its backend in turn.
                        tx.close();
                        ch.shut = true;
                        progress = true;
                    }
                    if paused {
                        continue;
                    }
                    for _ in 0..READS_PER_PASS {
                        match Pin::new(&mut **rx).poll_next(cx) {
                            Poll::Ready(Some(Ok(TunnelFrame {
                                frame: Some(Frame::Data(d)),
                            }))) => {
                                for chunk in d.chunks(READ_CHUNK) {
                                    scratch.clear();
                                    Header::write(scratch, Kind::BridgeData, id, chunk.len());
                                    out.extend_from_slice(scratch);
                                    out.extend_from_slice(chunk);
                                }
                                ConnCounters::add(&counters.from_backends, d.len() as u64);
                                ch.stall_at = None;
                                progress = true;
                            }
                            Poll::Ready(Some(Ok(TunnelFrame {
                                frame: Some(Frame::Closed(c)),
                            }))) => {
                                let code = u8::try_from(c.code).map(CloseCode::from_u8).unwrap_or(CloseCode::Io);
                                closes.push((id, code, c.message));
                                break;
                            }
                            Poll::Ready(Some(Ok(_))) => {
                                closes.push((
                                    id,
                                    CloseCode::Io,
                                    format!("site {site} sent a tunnel message out of place"),
                                ));
                                break;
                            }
                            Poll::Ready(Some(Err(status))) => {
                                closes.push((
                                    id,
                                    CloseCode::SiteUnreachable,
                                    format!("tunnel to site {site}: {}", status.message()),
                                ));
                                break;
                            }
                            Poll::Ready(None) => {
                                closes.push((
                                    id,
                                    CloseCode::SiteUnreachable,
                                    format!("tunnel to site {site} ended without CLOSED"),
                                ));
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                }
            }
        }
        self.close_pending();
        progress
    }

    /// Fires due `WAKE`s and stall clocks, and arms the timer for the next one.
    fn poll_timers(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        while let Some(Reverse((at, _, token))) = self.wakes.peek().copied() {
            if at > now {
                break;
            }
            self.wakes.pop();
            self.wake_reply(token);
            progress = true;
        }
        let mut next = self.wakes.peek().map(|r| r.0 .0);
        // While the filter is not reading, backends are not read either: no clock may blame
        // them for that.
        if self.out.len() < self.limits.filter_buffer {
            for (&id, ch) in &self.chans {
                if let Some(at) = ch.stall_at {
                    if at <= now {
                        let msg = format!("no reply from {} within {} ms", ch.target, ch.reply_timeout_ms);
                        self.closes.push((id, CloseCode::Stalled, msg));
                    } else {
                        next = Some(next.map_or(at, |n: Instant| n.min(at)));
                    }
                }
            }
        }
        if !self.closes.is_empty() {
            self.close_pending();
            progress = true;
        }
        if let Some(at) = self.drain_at {
            if at <= now && self.closing.is_none() {
                self.drain_at = None;
                self.drain_over(now);
                next = None;
                progress = true;
            } else if self.closing.is_none() {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        if let Some(at) = self.closing {
            next = Some(next.map_or(at, |n: Instant| n.min(at)));
        }
        if let Some(at) = next {
            if self.sleep_at != Some(at) {
                self.sleep.as_mut().reset(at);
                self.sleep_at = Some(at);
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                self.sleep_at = None;
                progress = true;
            }
        }
        progress
    }

    fn close_pending(&mut self) {
        let mut closes = std::mem::take(&mut self.closes);
        for (id, code, msg) in closes.drain(..) {
            self.close_chan(id, code, &msg);
        }
        self.closes = closes;
    }

    fn close_chan(&mut self, id: u16, code: CloseCode, msg: &str) {
        let Some(ch) = self.chans.remove(&id) else { return };
        match code {
            CloseCode::Local | CloseCode::Eof => {
                debug!(label = %self.label, chan = id, target = %ch.target, code = stats::close_name(code), "{msg}")
            }
            _ => info!(label = %self.label, chan = id, target = %ch.target, code = stats::close_name(code), "{msg}"),
        }
        drop(ch);
        self.scratch.clear();
        encode_closed(&mut self.scratch, id, code, msg);
        self.out.extend_from_slice(&self.scratch);
        self.shared.stats.count_close(code);
        self.shared.stats.channels_active.fetch_sub(1, Relaxed);
    }

    fn wake_reply(&mut self, token: u64) {
        self.scratch.clear();
        encode_wake_reply(&mut self.scratch, token);
        self.out.extend_from_slice(&self.scratch);
        ConnCounters::add(&self.counters.wakes, 1);
    }

    /// A connection-level fault: `ERROR`, then the connection closes (its channels with it).
    fn fatal(&mut self, msg: &str) {
        warn!(peer = %self.peer, label = %self.label, "filter connection error: {msg}");
        self.shared.stats.errors.fetch_add(1, Relaxed);
        self.scratch.clear();
        encode_error(&mut self.scratch, msg);
        self.out.extend_from_slice(&self.scratch);
        self.closing = Some(Instant::now() + CLOSE_GRACE);
        self.drop_channels();
        self.wakes.clear();
    }

    /// The drain period is over: like a fatal error, but expected (logged at `info`).
    fn shutting_down(&mut self) {
        info!(peer = %self.peer, label = %self.label, channels = self.chans.len(), "cut by the end of the drain period");
        self.scratch.clear();
        encode_error(
            &mut self.scratch,
            "geomesh-bridge is shutting down (drain period over); reconnect",
        );
        self.out.extend_from_slice(&self.scratch);
        self.closing = Some(Instant::now() + CLOSE_GRACE);
        self.drop_channels();
        self.wakes.clear();
    }

    fn drop_channels(&mut self) {
        let n = self.chans.len() as u64;
        self.chans.clear();
        self.shared.stats.channels_active.fetch_sub(n, Relaxed);
    }

    fn teardown(&mut self) {
        self.drop_channels();
        self.shared.stats.retire(self.stats_id);
        debug!(peer = %self.peer, label = %self.label, "filter connection done");
    }
}
