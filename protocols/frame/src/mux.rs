//! Drives a [`Session`] over one GMB/1 connection, without IO.
//!
//! The filter shell calls [`Mux::on_downstream`] with the client's bytes and puts what it
//! returns in their place (frames for the bridge); it calls [`Mux::on_upstream`] with the
//! bridge's bytes and puts what it returns in their place (bytes for the client). Everything
//! else (channels per cluster, `HELLO`, `WAKE` for local replies and deadlines, `CLOSED`) is
//! handled here, so it is tested natively.

use std::collections::HashMap;
use std::rc::Rc;

use geomesh_core::{Action, ClusterId, Millis, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind};

use crate::{
    encode_close, encode_data, encode_hello, encode_open, encode_wake, parse_wake_reply, split_frame, Closed, Kind,
};

/// Token of the `WAKE` that only asks for an upstream callback (to deliver local replies).
const FLUSH_TOKEN: u64 = 0;
/// Token of the `WAKE` after which the client connection is closed. Envoy closes a connection
/// asked to close during a write callback before that callback's bytes reach the socket, so the
/// close waits for a later callback.
const CLOSE_TOKEN: u64 = u64::MAX;
/// How long after the flush the close comes.
const CLOSE_DELAY_MS: u32 = 20;

/// What a bridge connection did to the mux, for the shell to act on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MuxOutput {
    /// Bytes to put in place of the bytes handled.
    pub bytes: Vec<u8>,
    /// Close the client connection now (the bytes of earlier callbacks have been written).
    pub close_downstream: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Mux {
    label: String,
    table: Rc<RoutingTable>,
    reply_timeout_ms: u32,
    connect_timeout_ms: u32,
    hello_sent: bool,
    by_cluster: HashMap<ClusterId, u16>,
    /// Open channels, and channels closed by us that wait for `CLOSED` (`None`).
    by_chan: HashMap<u16, Option<ClusterId>>,
    next_chan: u16,
    inbuf: Vec<u8>,
    to_bridge: Vec<u8>,
    to_client: Vec<u8>,
    flush_pending: bool,
    /// The session asked to close the client connection.
    close_requested: bool,
    /// A `WAKE(CLOSE_TOKEN)` is on its way.
    close_armed: bool,
    /// Close in this callback.
    close_now: bool,
    dead: bool,
    actions: Vec<Action>,
    /// (channel, start of the `DATA` frame at the end of `to_bridge`): consecutive sends to one
    /// cluster share one frame.
    open_data: Option<(u16, usize)>,
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
            hello_sent: false,
            by_cluster: HashMap::new(),
            by_chan: HashMap::new(),
            next_chan: 1,
            inbuf: Vec::new(),
            to_bridge: Vec::new(),
            to_client: Vec::new(),
            flush_pending: false,
            close_requested: false,
            close_armed: false,
            close_now: false,
            dead: false,
            actions: Vec::new(),
            open_data: None,
        }
    }

    /// A new routing table: cluster ids stay valid (see [`RoutingTable::succeed`]), so only
    /// the names used for new channels change.
    pub fn set_table(&mut self, table: Rc<RoutingTable>) {
        self.table = table;
    }

    /// The client sent `data`. Returns the frames to send to the bridge in their place.
    pub fn on_downstream<S: Session>(&mut self, session: &mut S, data: &[u8], now: Millis) -> Vec<u8> {
        if !self.hello_sent {
            let mut hello = Vec::with_capacity(16 + self.label.len());
            encode_hello(&mut hello, &self.label);
            // Frames queued before the first client bytes (none today) stay after HELLO.
            hello.append(&mut self.to_bridge);
            self.to_bridge = hello;
            self.hello_sent = true;
        }
        if self.dead {
            return std::mem::take(&mut self.to_bridge);
        }
        let mut actions = std::mem::take(&mut self.actions);
        session.on_downstream(data, now, &mut actions);
        self.apply(&mut actions, now);
        self.actions = actions;
        if (!self.to_client.is_empty() || self.close_requested) && !self.flush_pending {
            encode_wake(&mut self.to_bridge, FLUSH_TOKEN, 0);
            self.flush_pending = true;
        }
        if self.close_requested && !self.close_armed {
            encode_wake(&mut self.to_bridge, CLOSE_TOKEN, CLOSE_DELAY_MS);
            self.close_armed = true;
        }
        self.open_data = None;
        std::mem::take(&mut self.to_bridge)
    }

    /// The client closed its side.
    pub fn on_downstream_closed<S: Session>(&mut self, session: &mut S, now: Millis) {
        let mut actions = std::mem::take(&mut self.actions);
        session.on_downstream_closed(now, &mut actions);
        self.apply(&mut actions, now);
        self.actions = actions;
    }

    /// The bridge sent `data` (`end_of_stream`: and closed). Returns the bytes for the client.
    pub fn on_upstream<S: Session>(&mut self, session: &mut S, data: &[u8], end_of_stream: bool, now: Millis) -> MuxOutput {
        self.inbuf.extend_from_slice(data);
        let mut actions = std::mem::take(&mut self.actions);
        let mut consumed = 0;
        while !self.dead {
            let rest = self.inbuf.get(consumed..).unwrap_or_default();
            match split_frame(rest) {
                Ok(Some((frame, n))) => {
                    consumed += n;
                    match frame.kind {
                        Kind::BridgeData => {
                            if let Some(Some(cluster)) = self.by_chan.get(&frame.chan) {
                                session.on_upstream(*cluster, frame.payload, now, &mut actions);
                            }
                        }
                        Kind::Closed => {
                            let closed = Closed::parse(frame.payload).unwrap_or(Closed {
                                code: crate::CloseCode::Io,
                                message: "",
                            });
                            let failure = UpstreamFailure {
                                kind: closed.code.failure_kind(),
                                message: closed.message.to_owned(),
                            };
                            if let Some(Some(cluster)) = self.by_chan.remove(&frame.chan) {
                                if self.by_cluster.get(&cluster) == Some(&frame.chan) {
                                    self.by_cluster.remove(&cluster);
                                }
                                session.on_upstream_closed(cluster, &failure, now, &mut actions);
                            }
                        }
                        Kind::WakeReply => match parse_wake_reply(frame.payload) {
                            Ok(FLUSH_TOKEN) => self.flush_pending = false,
                            Ok(CLOSE_TOKEN) => self.close_now = true,
                            Ok(_) => session.on_timeout(now, &mut actions),
                            Err(e) => self.fail_all(session, &format!("bridge: {e}"), now, &mut actions),
                        },
                        Kind::Error => {
                            let msg = String::from_utf8_lossy(frame.payload).into_owned();
                            self.fail_all(session, &format!("bridge: {msg}"), now, &mut actions);
                        }
                        other => {
                            let msg = format!("bridge sent a {other:?} frame, which only filters send");
                            self.fail_all(session, &msg, now, &mut actions);
                        }
                    }
                    self.apply(&mut actions, now);
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail_all(session, &format!("bridge: {e}"), now, &mut actions);
                    self.apply(&mut actions, now);
                }
            }
        }
        if consumed > 0 {
            self.inbuf.drain(..consumed.min(self.inbuf.len()));
        }
        if end_of_stream && !self.dead {
            self.fail_all(session, "bridge closed the connection", now, &mut actions);
            self.apply(&mut actions, now);
        }
        self.actions = actions;
        // A close asked for while handling bridge bytes cannot be delayed (no WAKE can be sent
        // from here); it only happens when the bridge connection itself is gone, and then
        // Envoy's tcp_proxy closes the client after flushing anyway.
        if self.close_requested && !self.close_armed {
            self.close_now = true;
        }
        MuxOutput {
            bytes: std::mem::take(&mut self.to_client),
            close_downstream: self.close_now,
        }
    }

    /// The bridge connection is unusable: every channel fails, and the client is closed after
    /// whatever the session answers.
    fn fail_all<S: Session>(&mut self, session: &mut S, message: &str, now: Millis, actions: &mut Vec<Action>) {
        self.dead = true;
        self.inbuf.clear();
        let failure = UpstreamFailure {
            kind: UpstreamFailureKind::BridgeLost,
            message: message.to_owned(),
        };
        let mut clusters: Vec<ClusterId> = self.by_chan.drain().filter_map(|(_, c)| c).collect();
        clusters.sort();
        clusters.dedup();
        self.by_cluster.clear();
        for c in clusters {
            session.on_upstream_closed(c, &failure, now, actions);
        }
        self.close_requested = true;
    }

    fn apply(&mut self, actions: &mut Vec<Action>, now: Millis) {
        for action in actions.drain(..) {
            match action {
                Action::Reply(bytes) => {
                    if self.to_client.is_empty() {
                        self.to_client = bytes;
                    } else {
                        self.to_client.extend_from_slice(&bytes);
                    }
                }
                Action::Send { cluster, bytes } => {
                    if self.dead || bytes.is_empty() {
                        continue;
                    }
                    let chan = self.channel(cluster);
                    self.push_data(chan, &bytes);
                }
                Action::CloseUpstream(cluster) => {
                    if let Some(chan) = self.by_cluster.remove(&cluster) {
                        self.by_chan.insert(chan, None);
                        encode_close(&mut self.to_bridge, chan);
                        self.open_data = None;
                    }
                }
                Action::CloseDownstream => self.close_requested = true,
                Action::WakeAt(at) => {
                    let delay = at.saturating_sub(now).min(u64::from(u32::MAX)) as u32;
                    // Token = time + 1, so that no timer uses the flush token.
                    encode_wake(&mut self.to_bridge, at.saturating_add(1), delay);
                    self.open_data = None;
                }
            }
        }
    }

    fn channel(&mut self, cluster: ClusterId) -> u16 {
        if let Some(c) = self.by_cluster.get(&cluster) {
            return *c;
        }
        let mut chan = self.next_chan;
        // 65535 channels in use at once cannot happen (a table names at most 4096 clusters),
        // so this finds a free id.
        while chan == 0 || self.by_chan.contains_key(&chan) {
            chan = chan.wrapping_add(1);
        }
        self.next_chan = chan.wrapping_add(1);
        self.by_chan.insert(chan, Some(cluster));
        self.by_cluster.insert(cluster, chan);
        let name = self.table.cluster_name(cluster);
        encode_open(&mut self.to_bridge, chan, self.reply_timeout_ms, self.connect_timeout_ms, name);
        self.open_data = None;
        chan
    }

    fn push_data(&mut self, chan: u16, bytes: &[u8]) {
        if let Some((c, start)) = self.open_data {
            let len = self.to_bridge.len() - start - crate::HEADER_LEN;
            if c == chan && len + bytes.len() <= crate::MAX_PAYLOAD {
                self.to_bridge.extend_from_slice(bytes);
                let new_len = ((len + bytes.len()) as u32).to_be_bytes();
                if let Some(h) = self.to_bridge.get_mut(start..start + 4) {
                    h.copy_from_slice(&new_len);
                }
                return;
            }
        }
        let start = self.to_bridge.len();
        encode_data(&mut self.to_bridge, Kind::Data, chan, bytes);
        self.open_data = if bytes.len() <= crate::MAX_PAYLOAD { Some((chan, start)) } else { None };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_closed, encode_wake_reply, CloseCode, FrameRef, Hello, Open, Wake};
    use geomesh_core::Config;

    /// A line protocol for tests: "k=v\n" sends to the cluster routing k; the reply line comes
    /// back to the client; "local\n" answers "ok\n" locally; "bye\n" closes.
    #[derive(Default)]
    struct Lines {
        table: Option<Rc<RoutingTable>>,
        failures: Vec<(ClusterId, UpstreamFailureKind)>,
        timeouts: usize,
    }

    impl Session for Lines {
        fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
            for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match line {
                    b"local" => out.push(Action::Reply(b"ok\n".to_vec())),
                    b"bye" => out.push(Action::CloseDownstream),
                    b"timer" => out.push(Action::WakeAt(now + 100)),
                    _ => {
                        let key = line.split(|b| *b == b'=').next().unwrap_or_default();
                        let cluster = self.table.as_ref().unwrap().route(key);
                        let mut bytes = line.to_vec();
                        bytes.push(b'\n');
                        out.push(Action::Send { cluster, bytes });
                    }
                }
            }
        }
        fn on_upstream(&mut self, _c: ClusterId, data: &[u8], _now: Millis, out: &mut Vec<Action>) {
            out.push(Action::Reply(data.to_vec()));
        }
        fn on_upstream_closed(&mut self, c: ClusterId, f: &UpstreamFailure, _now: Millis, out: &mut Vec<Action>) {
            self.failures.push((c, f.kind));
            out.push(Action::Reply(format!("-ERR {}\n", f.kind.describe()).into_bytes()));
        }
        fn on_timeout(&mut self, _now: Millis, _out: &mut Vec<Action>) {
            self.timeouts += 1;
        }
        fn on_new_table(&mut self, table: Rc<RoutingTable>) {
            self.table = Some(table);
        }
    }

    fn setup() -> (Mux, Lines, Rc<RoutingTable>) {
        let cfg = Config::parse(b"workload_type: redis\ndefault_cluster: one\nrouting_table:\n  b: two\n").unwrap();
        let table = Rc::new(RoutingTable::new(&cfg).unwrap());
        let mut s = Lines::default();
        s.on_new_table(table.clone());
        (Mux::new("test", table.clone(), 0, 0), s, table)
    }

    fn frames(bytes: &[u8]) -> Vec<FrameRef<'_>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some((f, n)) = split_frame(rest).unwrap() {
            out.push(f);
            rest = &rest[n..];
        }
        assert!(rest.is_empty(), "trailing bytes");
        out
    }

    #[test]
    fn sends_open_channels_once_and_share_frames() {
        let (mut mux, mut s, _) = setup();
        let out = mux.on_downstream(&mut s, b"a=1\nb=2\na=3\na=4\n", 0);
        let f = frames(&out);
        assert_eq!(Hello::parse(f[0].payload).unwrap().label, "test");
        assert_eq!(Open::parse(f[1].payload).unwrap().target, "one");
        assert_eq!((f[2].kind, f[2].chan, f[2].payload), (Kind::Data, 1, &b"a=1\n"[..]));
        assert_eq!(Open::parse(f[3].payload).unwrap().target, "two");
        assert_eq!((f[4].chan, f[4].payload), (2, &b"b=2\n"[..]));
        assert_eq!((f[5].chan, f[5].payload), (1, &b"a=3\na=4\n"[..]), "consecutive sends share a frame");
        assert_eq!(f.len(), 6, "no WAKE when nothing is for the client yet");

        let out = mux.on_downstream(&mut s, b"a=5\n", 1);
        let f = frames(&out);
        assert_eq!(f.len(), 1, "channel reused, HELLO once");

        let mut b = Vec::new();
        encode_data(&mut b, Kind::BridgeData, 2, b"two says hi\n");
        encode_data(&mut b, Kind::BridgeData, 1, b"one says hi\n");
        // Split the bridge bytes anywhere: the output does not change.
        let mut client = Vec::new();
        for chunk in b.chunks(3) {
            client.extend(mux.on_upstream(&mut s, chunk, false, 2).bytes);
        }
        assert_eq!(client, b"two says hi\none says hi\n");
    }

    #[test]
    fn local_replies_ask_for_a_flush_wake() {
        let (mut mux, mut s, _) = setup();
        let out = mux.on_downstream(&mut s, b"local\n", 0);
        let f = frames(&out);
        assert_eq!(f.last().unwrap().kind, Kind::Wake);
        assert_eq!(Wake::parse(f.last().unwrap().payload).unwrap(), Wake { token: 0, delay_ms: 0 });
        // A second local reply before the wake returns does not ask again.
        let f2 = mux.on_downstream(&mut s, b"local\n", 0);
        assert!(f2.is_empty());
        let mut b = Vec::new();
        encode_wake_reply(&mut b, 0);
        let out = mux.on_upstream(&mut s, &b, false, 1);
        assert_eq!(out.bytes, b"ok\nok\n");
        assert!(!out.close_downstream);
    }

    #[test]
    fn timers_call_on_timeout() {
        let (mut mux, mut s, _) = setup();
        let f = mux.on_downstream(&mut s, b"timer\n", 1000);
        let w = frames(&f).into_iter().find(|f| f.kind == Kind::Wake).unwrap();
        let w = Wake::parse(w.payload).unwrap();
        assert_eq!(w.delay_ms, 100);
        let mut b = Vec::new();
        encode_wake_reply(&mut b, w.token);
        mux.on_upstream(&mut s, &b, false, 1100);
        assert_eq!(s.timeouts, 1);
    }

    #[test]
    fn closed_channels_fail_their_cluster_and_reopen() {
        let (mut mux, mut s, table) = setup();
        mux.on_downstream(&mut s, b"a=1\n", 0);
        let mut b = Vec::new();
        encode_closed(&mut b, 1, CloseCode::Refused, "127.0.0.1:1: connection refused");
        let out = mux.on_upstream(&mut s, &b, false, 1);
        assert_eq!(out.bytes, b"-ERR connection refused\n");
        assert_eq!(s.failures, vec![(table.cluster_id("one").unwrap(), UpstreamFailureKind::Refused)]);
        let f = mux.on_downstream(&mut s, b"a=2\n", 2);
        let f = frames(&f);
        assert_eq!(f[0].kind, Kind::Open, "a new channel after CLOSED");
        assert_eq!(f[0].chan, 2);
    }

    #[test]
    fn bridge_garbage_fails_everything_and_closes() {
        let (mut mux, mut s, _) = setup();
        mux.on_downstream(&mut s, b"a=1\nb=1\n", 0);
        let out = mux.on_upstream(&mut s, b"\0\0\0\0\x42\0\0", false, 1);
        assert!(out.close_downstream);
        assert_eq!(s.failures.len(), 2);
        assert!(s.failures.iter().all(|(_, k)| *k == UpstreamFailureKind::BridgeLost));
        let out = mux.on_upstream(&mut s, b"more", true, 2);
        assert!(out.bytes.is_empty());
    }

    #[test]
    fn bridge_eof_fails_pending_channels() {
        let (mut mux, mut s, _) = setup();
        mux.on_downstream(&mut s, b"a=1\n", 0);
        let out = mux.on_upstream(&mut s, b"", true, 1);
        assert_eq!(out.bytes, b"-ERR bridge lost\n");
        assert!(out.close_downstream);
    }

    #[test]
    fn close_downstream_comes_after_the_flush() {
        let (mut mux, mut s, _) = setup();
        let f = mux.on_downstream(&mut s, b"local\nbye\n", 0);
        let wakes: Vec<Wake> = frames(&f).iter().filter(|f| f.kind == Kind::Wake).map(|f| Wake::parse(f.payload).unwrap()).collect();
        assert_eq!(wakes, [Wake { token: FLUSH_TOKEN, delay_ms: 0 }, Wake { token: CLOSE_TOKEN, delay_ms: CLOSE_DELAY_MS }]);
        let mut b = Vec::new();
        encode_wake_reply(&mut b, FLUSH_TOKEN);
        let out = mux.on_upstream(&mut s, &b, false, 1);
        assert_eq!(out.bytes, b"ok\n");
        assert!(!out.close_downstream, "the reply must reach the socket first");
        let mut b = Vec::new();
        encode_wake_reply(&mut b, CLOSE_TOKEN);
        let out = mux.on_upstream(&mut s, &b, false, 21);
        assert!(out.bytes.is_empty());
        assert!(out.close_downstream);
    }
}
