//! The channel mux (`geomesh_frame::Mux`) driving a small scripted session, fed an arbitrary
//! interleaving of client bytes, bridge bytes (valid frames built from the input, protocol
//! violations and garbage, cut at arbitrary points), time jumps, half-closes and closes.
//!
//! Beyond "no panic", after every call:
//! * bytes for the client come only out of `on_upstream`, in the order the session emitted
//!   them, nothing invented (what the client got is a prefix of what the session replied);
//! * what `on_downstream` returns is whole filter frames: `HELLO` first and once, `OPEN` only
//!   of an id that is not open nor waiting for its `CLOSED` (the id space is replayed from the
//!   exact bridge bytes the mux read), `DATA`/`CLOSE` only on channels it opened, `DATA`
//!   payloads per cluster a prefix of what the session sent there;
//! * a close of the client comes only after the session asked for it or the mux reported a
//!   failure; never with `end_of_stream` from the bridge; and, unless the mux logs that it is
//!   forced (a client that does not read), never in a callback that carries bytes for the
//!   client, and only once everything the session replied before the close has been delivered;
//! * a "close later" (done by the shell's timer, here an input op) comes only from
//!   `on_upstream`, once, with the last bytes for the client and everything replied before the
//!   close delivered; nothing reaches the client after it;
//! * `on_upstream_with_clock` reads the clock at most once, and whenever it calls the session
//!   (whose `now` is then the clock's value);
//! * the mux holds no more than its limits (small ones here, so that they are hit).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use geomesh_core::{Action, ClusterId, Config, Millis, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind};
use geomesh_frame::{
    encode_closed, encode_data, encode_error, encode_wake_reply, parse_wake_reply, split_frame, CloseCode, Hello, Kind,
    Mux, MuxLimits, Open, Wake, HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

mod common;

use common::Input;

const CONFIG: &[u8] = b"workload_type: redis\ndefault_cluster: c0\nrouting_table:\n  k1: c1\n  k2: c2\n  k3: c3\n";
const NAMES: [&str; 4] = ["c0", "c1", "c2", "c3"];
const LIMITS: MuxLimits = MuxLimits {
    max_client_backlog: 4096,
    max_bridge_backlog: 4096,
    max_channels: 6,
    max_timers: 12,
};

/// A scripted session: client bytes are opcodes. It records everything it asks for.
struct Script {
    clusters: Vec<ClusterId>,
    /// Every reply, in order.
    emitted: Vec<u8>,
    /// Sent bytes per cluster name.
    sent: HashMap<String, Vec<u8>>,
    table: Rc<RoutingTable>,
    /// The session asked to close the client (then says nothing more).
    closed: bool,
    n: u64,
    /// The `now` of every session call from a bridge callback, since the last check.
    upstream_nows: Vec<Millis>,
}

impl Script {
    fn reply(&mut self, bytes: Vec<u8>, out: &mut Vec<Action>) {
        if self.closed || bytes.is_empty() {
            return;
        }
        self.emitted.extend_from_slice(&bytes);
        out.push(Action::Reply(bytes));
    }
    fn send(&mut self, cluster: ClusterId, bytes: Vec<u8>, out: &mut Vec<Action>) {
        if self.closed || bytes.is_empty() {
            return;
        }
        let name = self.table.cluster_name(cluster).to_owned();
        self.sent.entry(name).or_default().extend_from_slice(&bytes);
        out.push(Action::Send { cluster, bytes });
    }
    fn close(&mut self, out: &mut Vec<Action>) {
        if !self.closed {
            self.closed = true;
            out.push(Action::CloseDownstream);
        }
    }
    fn cluster(&self, b: u8) -> ClusterId {
        self.clusters[usize::from(b) % self.clusters.len()]
    }
    fn tag(&mut self, what: &str) -> Vec<u8> {
        self.n += 1;
        format!("<{what}{}>", self.n).into_bytes()
    }
}

impl Session for Script {
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        let mut i = Input(data);
        while let Some(op) = i.byte() {
            if self.closed {
                return;
            }
            match op % 10 {
                0 | 1 => {
                    let c = self.cluster(i.byte().unwrap_or(0));
                    let n = usize::from(i.byte().unwrap_or(0) % 24) + 1;
                    let bytes = i.bytes(n).to_vec();
                    self.send(c, bytes, out);
                }
                2 => {
                    let r = self.tag("local");
                    self.reply(r, out);
                }
                3 => out.push(Action::CloseUpstream(self.cluster(i.byte().unwrap_or(0)))),
                4 => {
                    let at = match i.byte().unwrap_or(0) {
                        250 => u64::MAX,
                        251 => u64::MAX - 1,
                        252 => u64::MAX - 2,
                        253 => 0,
                        b => now.saturating_add(u64::from(b) * 7),
                    };
                    out.push(Action::WakeAt(at));
                }
                5 => {
                    let r = self.tag("bye");
                    self.reply(r, out);
                    self.close(out);
                }
                6 => {
                    // Close and reopen a channel faster than the bridge answers.
                    let c = self.cluster(i.byte().unwrap_or(0));
                    self.send(c, b"x".to_vec(), out);
                    out.push(Action::CloseUpstream(c));
                    self.send(c, b"y".to_vec(), out);
                }
                7 => {
                    let c = self.cluster(i.byte().unwrap_or(0));
                    let big = vec![b'B'; usize::from(i.byte().unwrap_or(0)) * 40];
                    self.send(c, big, out);
                }
                8 => {
                    for k in 0..4 {
                        out.push(Action::WakeAt(now + 1 + k * 13));
                    }
                }
                _ => {
                    let r = vec![b'L'; usize::from(i.byte().unwrap_or(0)) * 8];
                    self.reply(r, out);
                }
            }
        }
    }

    fn on_upstream(&mut self, cluster: ClusterId, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.upstream_nows.push(now);
        self.reply(data.to_vec(), out);
        match data.first() {
            Some(b'!') => self.close(out),
            Some(b'#') => out.push(Action::CloseUpstream(cluster)),
            Some(b'>') => {
                // A send decided on a reply: leaves with the next client bytes.
                let other = self.cluster(data.len() as u8);
                self.send(other, data.to_vec(), out);
            }
            _ => {}
        }
    }

    fn on_upstream_closed(&mut self, cluster: ClusterId, f: &UpstreamFailure, now: Millis, out: &mut Vec<Action>) {
        self.upstream_nows.push(now);
        let r = format!("-ERR {} {}", self.table.cluster_name(cluster), f.kind.describe()).into_bytes();
        self.reply(r, out);
        if f.kind == UpstreamFailureKind::Stalled {
            self.close(out);
        }
    }

    fn on_timeout(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.upstream_nows.push(now);
        let r = self.tag("t");
        self.reply(r, out);
        if now % 3 == 0 {
            let c = self.cluster(now as u8);
            self.send(c, b"from-timer".to_vec(), out);
        }
        if now % 11 == 0 {
            out.push(Action::WakeAt(now + 5));
        }
    }

    fn on_downstream_closed(&mut self, now: Millis, out: &mut Vec<Action>) {
        // No replies here: after a failure the mux drops them, and this target checks that
        // everything replied before a close arrives.
        if now % 2 == 0 {
            self.close(out);
        }
    }

    fn on_new_table(&mut self, table: Rc<RoutingTable>) {
        self.table = table;
    }
}

/// The fake bridge, and the checks on what the mux sends it.
struct Bridge {
    /// Bytes produced for the mux, not delivered yet.
    outbox: Vec<u8>,
    /// Replay of the mux's own reading of the bridge stream.
    replay: Vec<u8>,
    replay_broken: bool,
    /// Channels opened by the filter and not yet `CLOSED` (as the mux read it): id -> cluster.
    in_use: HashMap<u16, String>,
    /// The cluster of the last OPEN of each id.
    names: HashMap<u16, String>,
    /// The filter sent CLOSE for these (since their last OPEN).
    closing: HashSet<u16>,
    /// (token, due) of the WAKEs the filter sent.
    wakes: Vec<(u64, Millis)>,
    hello_seen: bool,
    /// DATA payloads per cluster name.
    got: HashMap<String, Vec<u8>>,
    eof: bool,
}

impl Bridge {
    fn check_filter_frames(&mut self, bytes: &[u8], now: Millis) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (f, n) = match split_frame(rest) {
                Ok(Some(x)) => x,
                other => panic!("filter output is not whole frames: {other:?}"),
            };
            assert!(!f.kind.from_bridge(), "filter sent a bridge kind {:?}", f.kind);
            if !self.hello_seen {
                assert_eq!(f.kind, Kind::Hello, "first frame must be HELLO");
                Hello::parse(f.payload).expect("HELLO parses");
                self.hello_seen = true;
            } else {
                assert_ne!(f.kind, Kind::Hello, "second HELLO");
            }
            match f.kind {
                Kind::Hello => assert_eq!(f.chan, 0),
                Kind::Open => {
                    let o = Open::parse(f.payload).expect("OPEN parses");
                    assert_ne!(f.chan, 0);
                    assert!(NAMES.contains(&o.target), "OPEN of unknown target {}", o.target);
                    assert!(
                        !self.in_use.contains_key(&f.chan),
                        "OPEN of channel {} before its CLOSED",
                        f.chan
                    );
                    assert!(self.in_use.len() < LIMITS.max_channels, "more channels than the limit");
                    self.in_use.insert(f.chan, o.target.to_owned());
                    self.names.insert(f.chan, o.target.to_owned());
                    self.closing.remove(&f.chan);
                }
                // DATA and CLOSE queued outside a client callback leave with the next client
                // bytes, possibly after the mux read the channel's CLOSED: allowed (the bridge
                // ignores them), as long as no OPEN of that id came between.
                Kind::Data => {
                    let name = self.names.get(&f.chan).expect("DATA on a channel never opened");
                    assert!(!self.closing.contains(&f.chan), "DATA after CLOSE");
                    assert!(!f.payload.is_empty());
                    self.got.entry(name.clone()).or_default().extend_from_slice(f.payload);
                }
                Kind::Close => {
                    assert!(self.names.contains_key(&f.chan), "CLOSE of a channel never opened");
                    assert!(self.closing.insert(f.chan), "second CLOSE");
                }
                Kind::Wake => {
                    assert_eq!(f.chan, 0);
                    let w = Wake::parse(f.payload).expect("WAKE parses");
                    self.wakes.push((w.token, now.saturating_add(u64::from(w.delay_ms))));
                }
                _ => unreachable!(),
            }
            rest = &rest[n..];
        }
    }

    /// Replays what the mux reads of `delivered`, as it reads it: frees the ids it frees.
    fn replay(&mut self, delivered: &[u8]) {
        if self.replay_broken {
            return;
        }
        self.replay.extend_from_slice(delivered);
        let mut pos = 0;
        loop {
            match split_frame(&self.replay[pos..]) {
                Ok(Some((f, n))) => {
                    pos += n;
                    match f.kind {
                        Kind::Closed => {
                            self.in_use.remove(&f.chan);
                        }
                        Kind::BridgeData => {}
                        Kind::WakeReply => {
                            if parse_wake_reply(f.payload).is_err() {
                                self.replay_broken = true;
                            }
                        }
                        _ => self.replay_broken = true,
                    }
                    if self.replay_broken {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    self.replay_broken = true;
                    break;
                }
            }
        }
        self.replay.drain(..pos);
    }

    fn pick(&self, b: u8) -> Option<u16> {
        let mut ids: Vec<u16> = self.in_use.keys().copied().collect();
        ids.sort_unstable();
        if ids.is_empty() {
            None
        } else {
            Some(ids[usize::from(b) % ids.len()])
        }
    }
}

struct Run {
    mux: Mux,
    s: Script,
    bridge: Bridge,
    now: Millis,
    /// Bytes the client received.
    received: Vec<u8>,
    /// The mux reported a failure or a forced close.
    mux_logged: bool,
    /// The mux asked the shell to close the client later.
    close_later: bool,
    done: bool,
}

impl Run {
    fn check_sent(&self) {
        for (name, got) in &self.bridge.got {
            let sent = self.s.sent.get(name).map(Vec::as_slice).unwrap_or_default();
            assert!(sent.starts_with(got), "DATA for {name} is not what the session sent");
        }
    }

    fn after_close(&mut self, forced: bool) {
        // (The bridge's end after the client's own FIN fails the connection without a log.)
        assert!(
            self.s.closed || self.mux_logged || self.bridge.eof,
            "close without a request or a failure"
        );
        if !forced {
            assert_eq!(self.received, self.s.emitted, "closed before every reply was delivered");
        }
        assert!(self.mux.is_closed());
        self.done = true;
    }

    fn client(&mut self, data: &[u8], eos: bool) {
        let out = self.mux.on_downstream(&mut self.s, data, eos, self.now);
        self.mux_logged |= out.log.is_some();
        self.bridge.check_filter_frames(&out.bytes, self.now);
        self.check_sent();
        assert!(
            self.mux.buffered() <= LIMITS.max_client_backlog + HEADER_LEN + 70_000,
            "mux holds {} bytes",
            self.mux.buffered()
        );
        if out.close_downstream {
            // A close from a client callback leaves nothing due in the mux (or is forced).
            let forced = out.log.is_some();
            self.after_close(forced);
        }
    }

    fn deliver(&mut self, chunk: &[u8], eos: bool) {
        self.bridge.replay(chunk);
        let reads = std::cell::Cell::new(0u32);
        let now = self.now;
        let clock = || {
            reads.set(reads.get() + 1);
            now
        };
        self.s.upstream_nows.clear();
        let out = self.mux.on_upstream_with_clock(&mut self.s, chunk, eos, clock);
        assert!(reads.get() <= 1, "clock read {} times in one callback", reads.get());
        if !self.s.upstream_nows.is_empty() {
            assert_eq!(reads.get(), 1, "session called without reading the clock");
            assert!(self.s.upstream_nows.iter().all(|t| *t == now), "session got a stale now");
        }
        self.mux_logged |= out.log.is_some();
        if self.close_later {
            assert!(out.bytes.is_empty(), "bytes for the client after the close-later");
            assert!(!out.close_later, "second close-later");
        }
        self.received.extend_from_slice(&out.bytes);
        assert!(self.s.emitted.starts_with(&self.received), "client bytes out of order or invented");
        if out.close_later {
            assert!(!eos, "close-later together with end_of_stream from the bridge");
            assert!(!out.close_downstream);
            assert!(!out.bytes.is_empty(), "close-later without bytes: could close now");
            assert!(self.s.closed || self.mux_logged, "close-later without a request or a failure");
            assert_eq!(self.received, self.s.emitted, "close-later before every reply was delivered");
            assert!(self.mux.is_closed());
            self.close_later = true;
        }
        if out.close_downstream {
            assert!(!eos, "close together with end_of_stream from the bridge");
            assert!(out.bytes.is_empty(), "close in the callback that carries the last replies");
            self.after_close(false);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = Config::parse(CONFIG) else { return };
    let Ok(table) = RoutingTable::new(&cfg) else { return };
    let table = Rc::new(table);
    let clusters = NAMES.iter().filter_map(|n| table.cluster_id(n)).collect();
    let mut run = Run {
        mux: Mux::new("fuzz", table.clone(), 0, 0).with_limits(LIMITS),
        s: Script {
            clusters,
            emitted: Vec::new(),
            sent: HashMap::new(),
            table: table.clone(),
            closed: false,
            n: 0,
            upstream_nows: Vec::new(),
        },
        bridge: Bridge {
            outbox: Vec::new(),
            replay: Vec::new(),
            replay_broken: false,
            in_use: HashMap::new(),
            names: HashMap::new(),
            closing: HashSet::new(),
            wakes: Vec::new(),
            hello_seen: false,
            got: HashMap::new(),
            eof: false,
        },
        now: 1_000,
        received: Vec::new(),
        mux_logged: false,
        close_later: false,
        done: false,
    };
    let mut i = Input(data);
    while !run.done {
        let Some(op) = i.byte() else { break };
        match op % 15 {
            0..=2 => {
                let n = usize::from(i.byte().unwrap_or(0) % 48);
                let bytes = i.bytes(n).to_vec();
                run.client(&bytes, false);
            }
            3 => {
                let n = usize::from(i.byte().unwrap_or(0) % 16);
                let bytes = i.bytes(n).to_vec();
                run.client(&bytes, true);
            }
            4 => {
                // DATA from a channel's backend.
                if let Some(chan) = run.bridge.pick(i.byte().unwrap_or(0)) {
                    let n = usize::from(i.byte().unwrap_or(0) % 32) + 1;
                    let payload = i.bytes(n).to_vec();
                    encode_data(&mut run.bridge.outbox, Kind::BridgeData, chan, &payload);
                }
            }
            5 => {
                // CLOSED, of an open channel, or of an id nobody opened.
                let b = i.byte().unwrap_or(0);
                let chan = if b < 16 { u16::from(b) } else { run.bridge.pick(b).unwrap_or(1) };
                let code = CloseCode::from_u8(i.byte().unwrap_or(0) % 10);
                encode_closed(&mut run.bridge.outbox, chan, code, "fuzz");
            }
            6 => {
                // Answer the WAKEs that are due (or, with a high byte, every WAKE now).
                let all = i.byte().unwrap_or(0) > 200;
                let now = run.now;
                let (due, later): (Vec<_>, Vec<_>) = run.bridge.wakes.iter().partition(|(_, at)| all || *at <= now);
                run.bridge.wakes = later;
                let mut due = due;
                due.sort_by_key(|(_, at)| *at);
                for (token, _) in due {
                    encode_wake_reply(&mut run.bridge.outbox, token);
                }
            }
            7 => {
                // Garbage, or a frame no bridge sends.
                let n = usize::from(i.byte().unwrap_or(0) % 12);
                let g = i.bytes(n).to_vec();
                run.bridge.outbox.extend_from_slice(&g);
            }
            8 => {
                let jump = match i.byte().unwrap_or(0) {
                    255 => 10_000_000,
                    b => u64::from(b) * 3,
                };
                run.now = run.now.saturating_add(jump);
            }
            9 | 10 => {
                // Deliver the outbox in pieces.
                if run.bridge.eof {
                    continue;
                }
                let mut rest = std::mem::take(&mut run.bridge.outbox);
                let pieces = usize::from(i.byte().unwrap_or(0) % 4) + 1;
                for p in 0..pieces {
                    if run.done {
                        break;
                    }
                    let cut = if p + 1 == pieces {
                        rest.len()
                    } else {
                        usize::from(i.byte().unwrap_or(0)).min(rest.len())
                    };
                    let chunk: Vec<u8> = rest.drain(..cut).collect();
                    if !chunk.is_empty() {
                        run.deliver(&chunk, false);
                    }
                }
            }
            11 => {
                // The bridge ends: what is left goes with end_of_stream.
                if run.bridge.eof {
                    continue;
                }
                if i.byte().unwrap_or(0) % 2 == 0 {
                    encode_error(&mut run.bridge.outbox, "fuzz bridge going away");
                }
                let rest = std::mem::take(&mut run.bridge.outbox);
                run.bridge.eof = true;
                run.deliver(&rest, true);
            }
            14 => {
                // The shell's timer: a close-later happens, Envoy reports the close.
                if run.close_later {
                    run.after_close(false);
                    run.mux.on_downstream_closed(&mut run.s, run.now);
                }
            }
            12 => {
                run.mux.on_downstream_closed(&mut run.s, run.now);
                assert!(run.mux.is_closed());
                let out = run.mux.on_upstream(&mut run.s, b"\0\0\0\x01\x83\0\x01x", false, run.now);
                assert!(out.bytes.is_empty() && !out.close_downstream);
                run.done = true;
            }
            _ => {
                // A frame kind only filters send, or a malformed WAKE reply.
                let mut f = vec![0, 0, 0, 1, i.byte().unwrap_or(0) % 6, 0, 0, 9];
                if f[4] == 0 {
                    f = vec![0, 0, 0, 2, 0x85, 0, 0, 1, 2];
                }
                run.bridge.outbox.extend_from_slice(&f);
            }
        }
    }
});
