//! Drives a [`Session`] over one GMB/1 connection, without IO.
//!
//! The filter shell calls [`Mux::on_downstream`] with the client's bytes and puts the frames it
//! returns in their place (towards the bridge); it calls [`Mux::on_upstream`] with the bridge's
//! bytes and puts what it returns in their place (towards the client). Everything else
//! (channels per cluster, `HELLO`, `WAKE` for local replies and deadlines, `CLOSED`, when the
//! client may be closed, how much may wait in memory) is decided here, so it is tested natively
//! and fuzzed (`fuzz/fuzz_targets/mux_session.rs`).
//!
//! Rules the shell relies on (filters/shell/README.md says why):
//! * bytes for the client only ever come out of [`Mux::on_upstream`];
//! * a [`MuxOutput`] never asks to close the client *now* ([`MuxOutput::close_downstream`]) in
//!   the same callback as it carries bytes for the client that were due before the close
//!   (Envoy would close the socket before they are written), except when the client sends
//!   without reading (then [`MuxOutput::log`] says so); when the last bytes and the close meet
//!   in one bridge callback it asks to close *later* ([`MuxOutput::close_later`]): from an
//!   event of its own (the shell's timer), which finds those bytes in Envoy's write buffer;
//!   likewise when a close meets bytes for servers in one client callback (`tcp_proxy` drops
//!   what it has not written to the bridge when the client is closed locally);
//! * it never asks to close in a callback that has `end_of_stream` from the bridge: `tcp_proxy`
//!   closes the client after writing the bytes (and Envoy would call
//!   `proxy_on_upstream_connection_close` on the deleted context);
//! * [`Mux::on_upstream_with_clock`] reads the clock only if a session call or a `WakeAt` in
//!   that callback needs the time, and then once;
//! * every buffer is bounded ([`MuxLimits`]); a limit hit fails the connection with a reason.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use geomesh_core::{Action, ClusterId, Millis, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind};

use crate::{
    encode_close, encode_data, encode_hello, encode_open, encode_open_shared, encode_unshare, encode_wake,
    parse_wake_reply, split_frame, Closed, FrameRef, Header, Kind, HEADER_LEN, MAX_PAYLOAD,
};

/// Token of the `WAKE` that only asks for an upstream callback (to deliver local replies).
/// Timer tokens are `at + 1` (saturating), so never 0.
const FLUSH_TOKEN: u64 = 0;
/// Capacity kept for the partial-frame buffer between bridge callbacks.
const INBUF_KEEP: usize = 64 << 10;

/// How much one connection may hold in the filter (Wasm memory is shared by every connection of
/// a worker, and a panic on allocation failure kills them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxLimits {
    /// Bytes for the client waiting for an upstream callback (local replies between a client
    /// callback and the flush `WAKE`'s answer). More means the client sends without reading
    /// (Envoy stops reading the bridge while the client's socket is full): the client is closed.
    pub max_client_backlog: usize,
    /// Frames for the bridge produced outside client callbacks (sends from bridge callbacks or
    /// timers) waiting for the next client bytes. More fails the connection.
    pub max_bridge_backlog: usize,
    /// Channels open or waiting for their `CLOSED` (at most 65535). More fails the connection.
    pub max_channels: usize,
    /// Timer `WAKE`s in flight (equal deadlines share one). More fails the connection (the
    /// bridge's own limit, `defaults.max_timers`, would end it with `ERROR` anyway).
    pub max_timers: usize,
}

impl Default for MuxLimits {
    fn default() -> Self {
        Self {
            max_client_backlog: 8 << 20,
            max_bridge_backlog: 8 << 20,
            max_channels: 4096,
            max_timers: 4096,
        }
    }
}

/// What the mux asks of the shell after one callback.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MuxOutput {
    /// Bytes to put in place of the bytes handled: frames for the bridge from
    /// [`Mux::on_downstream`], bytes for the client from [`Mux::on_upstream`].
    pub bytes: Vec<u8>,
    /// Close the client connection now (from this callback).
    pub close_downstream: bool,
    /// Close the client connection from a later event of the shell's own (a timer), not from
    /// a bridge or client callback: [`MuxOutput::bytes`] are the last bytes for the client,
    /// and Envoy would close the socket before writing them if the close came from this
    /// callback. Asked once per connection, only from [`Mux::on_upstream`], never together
    /// with the bridge's `end_of_stream`. Until the shell closes, the mux keeps going (a later
    /// callback may ask to close now, with nothing left to deliver).
    pub close_later: bool,
    /// Why the connection failed or is closed, when the mux decided it (for the shell's log).
    pub log: Option<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Mux {
    label: String,
    table: Rc<RoutingTable>,
    reply_timeout_ms: u32,
    connect_timeout_ms: u32,
    limits: MuxLimits,
    hello_sent: bool,
    by_cluster: HashMap<ClusterId, u16>,
    /// Open channels, and channels closed by us that wait for `CLOSED` (`None`).
    by_chan: HashMap<u16, Option<ClusterId>>,
    /// Open channels the bridge may carry on shared backend connections
    /// ([`Session::share`]); a channel leaves the set (`UNSHARE`) and never comes back.
    shared: HashSet<u16>,
    next_chan: u16,
    /// The start of a bridge frame that came in pieces (never more than one frame).
    inbuf: Vec<u8>,
    to_bridge: Vec<u8>,
    to_client: Vec<u8>,
    flush_pending: bool,
    /// Tokens of the timer `WAKE`s in flight.
    timers: HashSet<u64>,
    /// The session asked to close the client, or the connection failed.
    close_requested: bool,
    /// The shell was asked to close the client later ([`MuxOutput::close_later`]).
    close_later_asked: bool,
    /// The connection failed: the session was told, no channel opens any more.
    failed: bool,
    /// The bridge's byte stream is unusable (malformed, `ERROR`, or ended): not read any more.
    broken: bool,
    /// The client was told to close, or is gone: nothing more reaches it.
    closed: bool,
    /// The session was told the client closed its side.
    downstream_ended: bool,
    log: Option<String>,
    actions: Vec<Action>,
    /// (channel, start of the `DATA` frame at the end of `to_bridge`): consecutive sends to one
    /// cluster share one frame.
    open_data: Option<(u16, usize)>,
    /// Endpoint links ([`Action::Bind`]): the `OPEN` target of each (`CLUSTER@host:port`), or
    /// why it cannot be opened.
    binds: HashMap<ClusterId, Result<String, String>>,
    /// Endpoint links whose sends found no usable binding in this callback.
    unbound: Vec<(ClusterId, String)>,
    /// Applying the session's reaction to unbound endpoint links (not reacted to again).
    reacting_to_unbound: bool,
    /// Bytes for a server were framed in this client callback.
    sent_data: bool,
}

impl Mux {
    /// A mux for one client connection. `label` names the connection in the bridge's logs;
    /// `reply_timeout_ms` (0 = none) and `connect_timeout_ms` (0 = bridge default) go in every
    /// `OPEN`.
    pub fn new(label: &str, table: Rc<RoutingTable>, reply_timeout_ms: u32, connect_timeout_ms: u32) -> Self {
        Self {
            label: label.to_owned(),
            table,
            reply_timeout_ms,
            connect_timeout_ms,
            limits: MuxLimits::default(),
            hello_sent: false,
            by_cluster: HashMap::new(),
            by_chan: HashMap::new(),
            shared: HashSet::new(),
            next_chan: 1,
            inbuf: Vec::new(),
            to_bridge: Vec::new(),
            to_client: Vec::new(),
            flush_pending: false,
            timers: HashSet::new(),
            close_requested: false,
            close_later_asked: false,
            failed: false,
            broken: false,
            closed: false,
            downstream_ended: false,
            log: None,
            actions: Vec::new(),
            open_data: None,
            binds: HashMap::new(),
            unbound: Vec::new(),
            reacting_to_unbound: false,
            sent_data: false,
        }
    }

    /// Other limits than [`MuxLimits::default`].
    pub fn with_limits(mut self, limits: MuxLimits) -> Self {
        self.limits = MuxLimits {
            max_channels: limits.max_channels.clamp(1, usize::from(u16::MAX)),
            ..limits
        };
        self
    }

    /// A new routing table: cluster ids stay valid (see [`RoutingTable::succeed`]), so only
    /// the names used for new channels change.
    pub fn set_table(&mut self, table: Rc<RoutingTable>) {
        self.table = table;
    }

    /// Bytes held by the mux (partial bridge frame, replies and frames waiting for a callback).
    pub fn buffered(&self) -> usize {
        self.inbuf.len() + self.to_client.len() + self.to_bridge.len()
    }

    /// True once the mux asked to close the client (now or later), or was told it is gone.
    pub fn is_closed(&self) -> bool {
        self.closed || self.close_later_asked
    }

    /// The client sent `data` (`end_of_stream`: and closed its side). Returns the frames to
    /// send to the bridge in their place; it may ask to close the client (never with bytes
    /// due to it still held here, unless forced: see [`MuxOutput::log`]).
    pub fn on_downstream<S: Session>(&mut self, session: &mut S, data: &[u8], end_of_stream: bool, now: Millis) -> MuxOutput {
        if !self.hello_sent {
            let mut hello = Vec::with_capacity(16 + self.label.len() + self.to_bridge.len());
            encode_hello(&mut hello, &self.label);
            // Frames queued before the first client bytes stay after HELLO.
            hello.append(&mut self.to_bridge);
            self.to_bridge = hello;
            self.hello_sent = true;
            self.open_data = None;
        }
        let mut fixed = move || now;
        let mut clock = Clock::new(&mut fixed);
        let mut actions = std::mem::take(&mut self.actions);
        if !self.closed && !self.failed && !data.is_empty() {
            session.on_downstream(data, now, &mut actions);
            self.apply(session, &mut actions, &mut clock);
        }
        if end_of_stream && !self.closed && !self.downstream_ended {
            self.downstream_ended = true;
            session.on_downstream_closed(now, &mut actions);
            self.apply(session, &mut actions, &mut clock);
        }
        self.actions = actions;
        let mut close = false;
        let mut close_later = false;
        if !self.closed {
            if self.to_client.len() > self.limits.max_client_backlog {
                self.set_log(format!(
                    "closing the client: it sends without reading its replies ({} bytes of replies waiting, limit {})",
                    self.to_client.len(),
                    self.limits.max_client_backlog
                ));
                close = true;
            } else if self.close_requested && self.to_client.is_empty() {
                if self.sent_data {
                    // Bytes for servers in this very callback (an MQTT DISCONNECT forwarded):
                    // a close now makes tcp_proxy drop them (it closes its upstream without
                    // flushing on a local close), so the close comes from a later event.
                    if !self.close_later_asked {
                        self.close_later_asked = true;
                        close_later = true;
                    }
                } else {
                    // Earlier replies went out in earlier (upstream) callbacks and sit in
                    // Envoy's write buffer, which a close from a read callback flushes.
                    close = true;
                }
            } else if !self.to_client.is_empty() && !self.flush_pending {
                // The replies go out in the upstream callback that answers this WAKE; with a
                // close requested, that callback asks to close later.
                encode_wake(&mut self.to_bridge, FLUSH_TOKEN, 0);
                self.flush_pending = true;
            }
        }
        if close {
            self.closed = true;
            self.to_client = Vec::new();
        }
        self.open_data = None;
        self.sent_data = false;
        MuxOutput {
            bytes: std::mem::take(&mut self.to_bridge),
            close_downstream: close,
            close_later,
            log: self.log.take(),
        }
    }

    /// The client connection is gone (both directions): nothing can reach it or the bridge any
    /// more. The session is told, once.
    pub fn on_downstream_closed<S: Session>(&mut self, session: &mut S, now: Millis) {
        if !self.downstream_ended {
            self.downstream_ended = true;
            let mut actions = std::mem::take(&mut self.actions);
            session.on_downstream_closed(now, &mut actions);
            actions.clear();
            self.actions = actions;
        }
        self.closed = true;
        self.to_client = Vec::new();
        self.to_bridge = Vec::new();
        self.inbuf = Vec::new();
        self.open_data = None;
    }

    /// The bridge sent `data` (`end_of_stream`: and closed its side) at time `now`: see
    /// [`Mux::on_upstream_with_clock`].
    pub fn on_upstream<S: Session>(&mut self, session: &mut S, data: &[u8], end_of_stream: bool, now: Millis) -> MuxOutput {
        self.on_upstream_with_clock(session, data, end_of_stream, move || now)
    }

    /// The bridge sent `data` (`end_of_stream`: and closed its side). Returns the bytes for the
    /// client; it may ask to close the client now (never together with bytes that were due
    /// before the close) or later ([`MuxOutput::close_later`], with the last bytes), and never
    /// with `end_of_stream`.
    ///
    /// `clock` is called at most once, and only if the time is needed: when a session method
    /// is called (every one takes `now`) or a `WakeAt` is turned into a `WAKE` delay. A callback
    /// that only carries flush answers, a cut frame, or bytes after the connection ended reads
    /// no clock.
    pub fn on_upstream_with_clock<S: Session>(
        &mut self,
        session: &mut S,
        data: &[u8],
        end_of_stream: bool,
        mut clock: impl FnMut() -> Millis,
    ) -> MuxOutput {
        let mut clock = Clock::new(&mut clock);
        let mut actions = std::mem::take(&mut self.actions);
        if !self.closed && !self.broken {
            self.read_frames(session, data, &mut clock, &mut actions);
        }
        if end_of_stream && !self.broken {
            self.broken = true;
            self.inbuf = Vec::new();
            if !self.closed {
                // After the client's own FIN (which the bridge answers by closing) this is how
                // every connection ends: not worth a log line.
                let log = !self.downstream_ended;
                self.fail_all(session, "the bridge closed the connection", log, &mut clock, &mut actions);
            }
        }
        if self.to_bridge.len() > self.limits.max_bridge_backlog && !self.closed {
            let msg = format!(
                "{} bytes for the bridge wait for the client's next bytes (limit {})",
                self.to_bridge.len(),
                self.limits.max_bridge_backlog
            );
            self.to_bridge = Vec::new();
            self.open_data = None;
            self.fail_all(session, &msg, true, &mut clock, &mut actions);
        }
        self.actions = actions;
        let bytes = if self.closed {
            self.to_client = Vec::new();
            Vec::new()
        } else {
            std::mem::take(&mut self.to_client)
        };
        let mut close = false;
        let mut close_later = false;
        // With end_of_stream, tcp_proxy closes the client after writing these bytes.
        if !self.closed && !end_of_stream && self.close_requested {
            if bytes.is_empty() {
                // What was due went out in earlier callbacks: Envoy flushes it before closing.
                close = true;
            } else if !self.close_later_asked {
                self.close_later_asked = true;
                close_later = true;
            }
        }
        if close {
            self.closed = true;
        }
        MuxOutput {
            bytes,
            close_downstream: close,
            close_later,
            log: self.log.take(),
        }
    }

    fn set_log(&mut self, msg: String) {
        if self.log.is_none() {
            self.log = Some(msg);
        }
    }

    /// Handles the complete frames of `inbuf` + `data`, keeping a partial frame for later.
    /// Bytes are copied into `inbuf` only while a frame is incomplete.
    fn read_frames<S: Session>(&mut self, session: &mut S, data: &[u8], clock: &mut Clock<'_>, actions: &mut Vec<Action>) {
        let mut rest = data;
        // First complete the frame started in an earlier callback, taking no more than it needs.
        while !self.inbuf.is_empty() && !self.broken {
            let need = match Header::parse(&self.inbuf) {
                Ok(None) => HEADER_LEN.saturating_sub(self.inbuf.len()),
                Ok(Some(h)) => (HEADER_LEN + h.len).saturating_sub(self.inbuf.len()),
                Err(e) => {
                    self.stream_error(session, &format!("bridge: {e}"), clock, actions);
                    return;
                }
            };
            if need == 0 {
                let buf = std::mem::take(&mut self.inbuf);
                match split_frame(&buf) {
                    Ok(Some((frame, _))) => self.on_frame(session, frame, clock, actions),
                    // Cannot happen: the header said the frame is complete.
                    Ok(None) => {}
                    Err(e) => self.stream_error(session, &format!("bridge: {e}"), clock, actions),
                }
                if buf.capacity() <= INBUF_KEEP && !self.broken {
                    self.inbuf = buf;
                    self.inbuf.clear();
                }
                break;
            }
            let (head, tail) = rest.split_at(need.min(rest.len()));
            self.inbuf.extend_from_slice(head);
            rest = tail;
            if rest.is_empty() && head.len() < need {
                return;
            }
        }
        let mut pos = 0;
        while !self.broken {
            match split_frame(rest.get(pos..).unwrap_or_default()) {
                Ok(Some((frame, n))) => {
                    pos += n;
                    self.on_frame(session, frame, clock, actions);
                }
                Ok(None) => break,
                Err(e) => {
                    self.stream_error(session, &format!("bridge: {e}"), clock, actions);
                    return;
                }
            }
        }
        if !self.broken {
            self.inbuf.extend_from_slice(rest.get(pos..).unwrap_or_default());
        }
    }

    fn on_frame<S: Session>(&mut self, session: &mut S, frame: FrameRef<'_>, clock: &mut Clock<'_>, actions: &mut Vec<Action>) {
        match frame.kind {
            Kind::BridgeData => {
                if let Some(Some(cluster)) = self.by_chan.get(&frame.chan) {
                    session.on_upstream(*cluster, frame.payload, clock.now(), actions);
                }
            }
            Kind::Closed => {
                self.shared.remove(&frame.chan);
                if let Some(Some(cluster)) = self.by_chan.remove(&frame.chan) {
                    if self.by_cluster.get(&cluster) == Some(&frame.chan) {
                        self.by_cluster.remove(&cluster);
                    }
                    let closed = Closed::parse(frame.payload).unwrap_or(Closed {
                        code: crate::CloseCode::Io,
                        message: "",
                    });
                    let failure = UpstreamFailure {
                        kind: closed.code.failure_kind(),
                        message: closed.message.to_owned(),
                    };
                    session.on_upstream_closed(cluster, &failure, clock.now(), actions);
                }
            }
            Kind::WakeReply => match parse_wake_reply(frame.payload) {
                Ok(FLUSH_TOKEN) => self.flush_pending = false,
                Ok(token) => {
                    self.timers.remove(&token);
                    if !self.failed {
                        session.on_timeout(clock.now(), actions);
                    }
                }
                Err(e) => return self.stream_error(session, &format!("bridge: {e}"), clock, actions),
            },
            Kind::Error => {
                let msg = String::from_utf8_lossy(frame.payload).into_owned();
                return self.stream_error(session, &format!("bridge: {msg}"), clock, actions);
            }
            other => {
                let msg = format!("bridge sent a {other:?} frame, which only filters send");
                return self.stream_error(session, &msg, clock, actions);
            }
        }
        self.apply(session, actions, clock);
    }

    /// The bridge's byte stream cannot be read any further.
    fn stream_error<S: Session>(&mut self, session: &mut S, message: &str, clock: &mut Clock<'_>, actions: &mut Vec<Action>) {
        self.broken = true;
        self.inbuf = Vec::new();
        self.fail_all(session, message, true, clock, actions);
    }

    /// The connection cannot go on: every channel fails (the session answers what waits on
    /// them), and the client is closed after those answers.
    fn fail_all<S: Session>(&mut self, session: &mut S, message: &str, log: bool, clock: &mut Clock<'_>, actions: &mut Vec<Action>) {
        if self.failed {
            return;
        }
        self.failed = true;
        if log {
            self.set_log(format!("connection failed: {message}"));
        }
        let failure = UpstreamFailure {
            kind: UpstreamFailureKind::BridgeLost,
            message: message.to_owned(),
        };
        self.shared.clear();
        let mut clusters: Vec<ClusterId> = self.by_chan.drain().filter_map(|(_, c)| c).collect();
        clusters.sort();
        clusters.dedup();
        self.by_cluster.clear();
        for c in clusters {
            session.on_upstream_closed(c, &failure, clock.now(), actions);
        }
        self.apply(session, actions, clock);
        self.close_requested = true;
    }

    fn apply<S: Session>(&mut self, session: &mut S, actions: &mut Vec<Action>, clock: &mut Clock<'_>) {
        let mut fail = None;
        if !self.shared.is_empty() && !self.closed {
            self.unshare(session);
        }
        for action in actions.drain(..) {
            match action {
                Action::Reply(bytes) => {
                    // Replies after a close request are dropped: the close comes "after the
                    // replies already emitted".
                    if self.close_requested || self.closed {
                        continue;
                    }
                    if self.to_client.is_empty() {
                        self.to_client = bytes;
                    } else {
                        self.to_client.extend_from_slice(&bytes);
                    }
                }
                Action::Send { cluster, bytes } => {
                    if self.failed || self.closed || bytes.is_empty() {
                        continue;
                    }
                    match self.channel(cluster, session.share(cluster)) {
                        Ok(chan) => self.push_data(chan, &bytes),
                        Err(NoChannel::Limit) => {
                            fail.get_or_insert_with(|| {
                                format!("more than {} channels open or waiting for CLOSED", self.limits.max_channels)
                            });
                        }
                        Err(NoChannel::Unbound(why)) => {
                            if !self.unbound.iter().any(|(c, _)| *c == cluster) {
                                self.unbound.push((cluster, why));
                            }
                        }
                    }
                }
                Action::CloseUpstream(cluster) => {
                    if self.closed {
                        continue;
                    }
                    if let Some(chan) = self.by_cluster.remove(&cluster) {
                        self.by_chan.insert(chan, None);
                        self.shared.remove(&chan);
                        encode_close(&mut self.to_bridge, chan);
                        self.open_data = None;
                    }
                }
                Action::CloseDownstream => self.close_requested = true,
                Action::Bind {
                    link,
                    cluster,
                    endpoint,
                } => {
                    if !self.binds.contains_key(&link)
                        && self.binds.len() >= self.limits.max_channels
                    {
                        fail.get_or_insert_with(|| {
                            format!(
                                "more than {} endpoint links bound",
                                self.limits.max_channels
                            )
                        });
                        continue;
                    }
                    let target = endpoint::target(&self.table, link, cluster, &endpoint);
                    self.binds.insert(link, target);
                }
                Action::WakeAt(at) => {
                    if self.closed || self.failed {
                        continue;
                    }
                    let token = at.saturating_add(1);
                    if self.timers.contains(&token) {
                        // One WAKE per deadline: the session is called at that time either way.
                        continue;
                    }
                    if self.timers.len() >= self.limits.max_timers {
                        fail.get_or_insert_with(|| format!("more than {} timers in flight", self.limits.max_timers));
                        continue;
                    }
                    self.timers.insert(token);
                    let delay = at.saturating_sub(clock.now()).min(u64::from(u32::MAX)) as u32;
                    encode_wake(&mut self.to_bridge, token, delay);
                    self.open_data = None;
                }
            }
        }
        if let Some(msg) = fail {
            self.fail_all(session, &msg, true, clock, actions);
            return;
        }
        // Sends to an endpoint link nobody bound (or bound to what cannot be a target) fail
        // that link at once, as the bridge would; what the session does about it is applied
        // once more, and a second such send in that reaction is only dropped (no loop).
        let unbound = std::mem::take(&mut self.unbound);
        if unbound.is_empty() || self.failed || self.closed || self.reacting_to_unbound {
            return;
        }
        for (link, message) in unbound {
            let failure = UpstreamFailure {
                kind: UpstreamFailureKind::UnknownTarget,
                message,
            };
            session.on_upstream_closed(link, &failure, clock.now(), actions);
        }
        self.reacting_to_unbound = true;
        self.apply(session, actions, clock);
        self.reacting_to_unbound = false;
    }

    /// Shared channels whose session state diverged ([`Session::share`] says `None` now) move
    /// to dedicated backend connections (`UNSHARE`, before this callback's sends: the bridge
    /// keeps their order).
    fn unshare<S: Session>(&mut self, session: &S) {
        let by_chan = &self.by_chan;
        let mut moved: Vec<u16> = self
            .shared
            .iter()
            .copied()
            .filter(|c| match by_chan.get(c) {
                Some(Some(cluster)) => session.share(*cluster).is_none(),
                _ => true,
            })
            .collect();
        moved.sort_unstable();
        for chan in moved {
            self.shared.remove(&chan);
            if matches!(self.by_chan.get(&chan), Some(Some(_))) {
                encode_unshare(&mut self.to_bridge, chan);
                self.open_data = None;
            }
        }
    }

    /// The channel of `cluster` (a table cluster or a bound endpoint link), opened if needed
    /// (shared when `share` says how; endpoint links never are).
    fn channel(&mut self, cluster: ClusterId, share: Option<geomesh_core::Framing>) -> Result<u16, NoChannel> {
        if let Some(c) = self.by_cluster.get(&cluster) {
            return Ok(*c);
        }
        let endpoint_target = if cluster.is_endpoint() {
            match self.binds.get(&cluster) {
                Some(Ok(t)) => Some(t.clone()),
                Some(Err(why)) => return Err(NoChannel::Unbound(why.clone())),
                None => return Err(NoChannel::Unbound(format!("endpoint link {} is not bound", cluster.0 & 0x7fff))),
            }
        } else {
            None
        };
        if self.by_chan.len() >= self.limits.max_channels {
            return Err(NoChannel::Limit);
        }
        // Fewer than 65535 ids are taken (max_channels <= 65535), so this ends.
        let mut chan = self.next_chan;
        while chan == 0 || self.by_chan.contains_key(&chan) {
            chan = chan.wrapping_add(1);
        }
        self.next_chan = chan.wrapping_add(1);
        self.by_chan.insert(chan, Some(cluster));
        self.by_cluster.insert(cluster, chan);
        match (&endpoint_target, share) {
            (Some(target), _) => {
                encode_open(&mut self.to_bridge, chan, self.reply_timeout_ms, self.connect_timeout_ms, target)
            }
            (None, Some(framing)) => {
                let name = self.table.cluster_name(cluster);
                self.shared.insert(chan);
                encode_open_shared(&mut self.to_bridge, chan, framing, self.reply_timeout_ms, self.connect_timeout_ms, name);
            }
            (None, None) => {
                let name = self.table.cluster_name(cluster);
                encode_open(&mut self.to_bridge, chan, self.reply_timeout_ms, self.connect_timeout_ms, name)
            }
        }
        self.open_data = None;
        Ok(chan)
    }

    fn push_data(&mut self, chan: u16, bytes: &[u8]) {
        self.sent_data = true;
        if let Some((c, start)) = self.open_data {
            let len = self.to_bridge.len().saturating_sub(start + HEADER_LEN);
            if c == chan && start + HEADER_LEN <= self.to_bridge.len() && len + bytes.len() <= MAX_PAYLOAD {
                if let Some(h) = self.to_bridge.get_mut(start..start + 4) {
                    h.copy_from_slice(&((len + bytes.len()) as u32).to_be_bytes());
                    self.to_bridge.extend_from_slice(bytes);
                    return;
                }
            }
        }
        let start = self.to_bridge.len();
        encode_data(&mut self.to_bridge, Kind::Data, chan, bytes);
        self.open_data = if bytes.len() <= MAX_PAYLOAD { Some((chan, start)) } else { None };
    }
}

/// The time of one callback: read at most once, and only when something needs it.
struct Clock<'a> {
    read: &'a mut dyn FnMut() -> Millis,
    now: Option<Millis>,
}

impl<'a> Clock<'a> {
    fn new(read: &'a mut dyn FnMut() -> Millis) -> Self {
        Self { read, now: None }
    }

    fn now(&mut self) -> Millis {
        match self.now {
            Some(t) => t,
            None => {
                let t = (self.read)();
                self.now = Some(t);
                t
            }
        }
    }
}

mod endpoint;
use endpoint::NoChannel;

#[cfg(test)]
mod tests;
