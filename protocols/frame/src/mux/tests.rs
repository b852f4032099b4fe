#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::{encode_closed, encode_error, encode_wake_reply, CloseCode, FrameRef, Hello, Open, OpenShared, Wake};
use geomesh_core::Config;

/// A line protocol for tests: "k=v\n" sends to the cluster routing k; the reply line comes
/// back to the client; "local\n" answers "ok\n" locally; "bye\n" closes; "timer\n" asks for
/// a wake in 100 ms; "drop=k\n" closes the channel of k's cluster. A server reply starting
/// with '!' is passed on, then the client is closed (a subscriber whose server went away).
#[derive(Default)]
struct Lines {
    table: Option<Rc<RoutingTable>>,
    failures: Vec<(ClusterId, UpstreamFailureKind)>,
    timeouts: usize,
    /// Sent from `on_timeout`.
    timeout_sends: Vec<(ClusterId, Vec<u8>)>,
    /// Replied (then close) from `on_downstream_closed`.
    reply_on_close: Option<Vec<u8>>,
    downstream_closed: usize,
    /// `on_upstream_closed` sends to the failed cluster again.
    resend_on_failure: bool,
    /// `Some(false)`: connections may be shared; the line "state" makes it `Some(true)`.
    dedicated: Option<bool>,
}

impl Session for Lines {
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match line {
                b"local" => out.push(Action::Reply(b"ok\n".to_vec())),
                b"bye" => out.push(Action::CloseDownstream),
                b"timer" => out.push(Action::WakeAt(now + 100)),
                b"state" => self.dedicated = Some(true),
                _ => {
                    let table = self.table.as_ref().unwrap();
                    if let Some(rest) = line.strip_prefix(b"bind ") {
                        // "bind N KEY ENDPOINT": endpoint link N = ENDPOINT of KEY's cluster.
                        let words: Vec<&[u8]> = rest.splitn(3, |b| *b == b' ').collect();
                        let n: u16 = std::str::from_utf8(words[0]).unwrap().parse().unwrap();
                        out.push(Action::Bind {
                            link: ClusterId::endpoint(n),
                            cluster: table.route(words[1]),
                            endpoint: String::from_utf8(words[2].to_vec()).unwrap(),
                        });
                        continue;
                    }
                    if let Some(rest) = line.strip_prefix(b"ep") {
                        // "epN=payload": to endpoint link N.
                        let (n, payload) =
                            rest.split_at(rest.iter().position(|b| *b == b'=').unwrap());
                        let n: u16 = std::str::from_utf8(n).unwrap().parse().unwrap();
                        let mut bytes = payload[1..].to_vec();
                        bytes.push(b'\n');
                        out.push(Action::Send {
                            cluster: ClusterId::endpoint(n),
                            bytes,
                        });
                        continue;
                    }
                    if let Some(key) = line.strip_prefix(b"drop=") {
                        out.push(Action::CloseUpstream(table.route(key)));
                        continue;
                    }
                    let key = line.split(|b| *b == b'=').next().unwrap_or_default();
                    let cluster = table.route(key);
                    let mut bytes = line.to_vec();
                    bytes.push(b'\n');
                    out.push(Action::Send { cluster, bytes });
                }
            }
        }
    }
    fn on_upstream(&mut self, _c: ClusterId, data: &[u8], _now: Millis, out: &mut Vec<Action>) {
        out.push(Action::Reply(data.to_vec()));
        if data.starts_with(b"!") {
            out.push(Action::CloseDownstream);
        }
    }
    fn on_upstream_closed(&mut self, c: ClusterId, f: &UpstreamFailure, _now: Millis, out: &mut Vec<Action>) {
        self.failures.push((c, f.kind));
        if self.resend_on_failure {
            out.push(Action::Send {
                cluster: c,
                bytes: b"again\n".to_vec(),
            });
        }
        out.push(Action::Reply(
            format!("-ERR {}\n", f.kind.describe()).into_bytes(),
        ));
    }
    fn on_timeout(&mut self, _now: Millis, out: &mut Vec<Action>) {
        self.timeouts += 1;
        for (cluster, bytes) in self.timeout_sends.drain(..) {
            out.push(Action::Send { cluster, bytes });
        }
    }
    fn on_downstream_closed(&mut self, _now: Millis, out: &mut Vec<Action>) {
        self.downstream_closed += 1;
        if let Some(r) = self.reply_on_close.take() {
            out.push(Action::Reply(r));
            out.push(Action::CloseDownstream);
        }
    }
    fn on_new_table(&mut self, table: Rc<RoutingTable>) {
        self.table = Some(table);
    }
    fn share(&self, _cluster: ClusterId) -> Option<geomesh_core::Framing> {
        (self.dedicated == Some(false)).then_some(geomesh_core::Framing::Resp)
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

fn wakes(bytes: &[u8]) -> Vec<Wake> {
    frames(bytes).iter().filter(|f| f.kind == Kind::Wake).map(|f| Wake::parse(f.payload).unwrap()).collect()
}

/// Client bytes: the frames for the bridge (the mux never closes in these tests' client calls
/// unless asserted).
fn down(mux: &mut Mux, s: &mut Lines, data: &[u8], now: Millis) -> Vec<u8> {
    let out = mux.on_downstream(s, data, false, now);
    assert!(!out.close_downstream, "unexpected close: {:?}", out.log);
    out.bytes
}

fn wake_reply(token: u64) -> Vec<u8> {
    let mut b = Vec::new();
    encode_wake_reply(&mut b, token);
    b
}

#[test]
fn sends_open_channels_once_and_share_frames() {
    let (mut mux, mut s, _) = setup();
    let out = down(&mut mux, &mut s, b"a=1\nb=2\na=3\na=4\n", 0);
    let f = frames(&out);
    assert_eq!(Hello::parse(f[0].payload).unwrap().label, "test");
    assert_eq!(Open::parse(f[1].payload).unwrap().target, "one");
    assert_eq!((f[2].kind, f[2].chan, f[2].payload), (Kind::Data, 1, &b"a=1\n"[..]));
    assert_eq!(Open::parse(f[3].payload).unwrap().target, "two");
    assert_eq!((f[4].chan, f[4].payload), (2, &b"b=2\n"[..]));
    assert_eq!((f[5].chan, f[5].payload), (1, &b"a=3\na=4\n"[..]), "consecutive sends share a frame");
    assert_eq!(f.len(), 6, "no WAKE when nothing is for the client yet");

    let out = down(&mut mux, &mut s, b"a=5\n", 1);
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
    assert_eq!(mux.buffered(), 0);
}

#[test]
fn local_replies_ask_for_a_flush_wake() {
    let (mut mux, mut s, _) = setup();
    let out = down(&mut mux, &mut s, b"local\n", 0);
    assert_eq!(wakes(&out), [Wake { token: 0, delay_ms: 0 }]);
    // A second local reply before the wake returns does not ask again.
    let f2 = down(&mut mux, &mut s, b"local\n", 0);
    assert!(f2.is_empty());
    let out = mux.on_upstream(&mut s, &wake_reply(0), false, 1);
    assert_eq!(out.bytes, b"ok\nok\n");
    assert!(!out.close_downstream);
}

#[test]
fn timers_call_on_timeout() {
    let (mut mux, mut s, _) = setup();
    let f = down(&mut mux, &mut s, b"timer\n", 1000);
    let w = wakes(&f)[0];
    assert_eq!(w.delay_ms, 100);
    mux.on_upstream(&mut s, &wake_reply(w.token), false, 1100);
    assert_eq!(s.timeouts, 1);
}

#[test]
fn closed_channels_fail_their_cluster_and_reopen() {
    let (mut mux, mut s, table) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let mut b = Vec::new();
    encode_closed(&mut b, 1, CloseCode::Refused, "127.0.0.1:1: connection refused");
    let out = mux.on_upstream(&mut s, &b, false, 1);
    assert_eq!(out.bytes, b"-ERR connection refused\n");
    assert_eq!(s.failures, vec![(table.cluster_id("one").unwrap(), UpstreamFailureKind::Refused)]);
    let f = down(&mut mux, &mut s, b"a=2\n", 2);
    let f = frames(&f);
    assert_eq!(f[0].kind, Kind::Open, "a new channel after CLOSED");
    assert_eq!(f[0].chan, 2);
}

#[test]
fn bridge_garbage_fails_everything_then_closes_in_a_later_callback() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\nb=1\n", 0);
    let out = mux.on_upstream(&mut s, b"\0\0\0\0\x42\0\0", false, 1);
    assert_eq!(s.failures.len(), 2);
    assert!(s.failures.iter().all(|(_, k)| *k == UpstreamFailureKind::BridgeLost));
    assert_eq!(out.bytes, b"-ERR bridge lost\n-ERR bridge lost\n");
    // Regression: the close used to come in this very callback, and Envoy closes the socket
    // before this callback's bytes are written: the client never saw its errors.
    assert!(!out.close_downstream);
    assert!(out.close_later);
    assert!(out.log.unwrap().contains("unknown frame kind 0x42"));
    let out = mux.on_upstream(&mut s, b"more", false, 2);
    assert!(out.bytes.is_empty());
    assert!(out.close_downstream, "closed once the errors went out");
}

#[test]
fn bridge_eof_answers_pending_channels_and_leaves_the_close_to_tcp_proxy() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let out = mux.on_upstream(&mut s, b"", true, 1);
    assert_eq!(out.bytes, b"-ERR bridge lost\n");
    // Regression: closing here lost these bytes, and made Envoy call
    // proxy_on_upstream_connection_close on the context the close had deleted (SDK panic).
    assert!(!out.close_downstream);
    let out = mux.on_downstream(&mut s, b"a=2\n", false, 2);
    assert!(out.close_downstream, "a client that writes after the bridge is gone is closed");
}

#[test]
fn close_downstream_comes_after_the_flush() {
    let (mut mux, mut s, _) = setup();
    let f = down(&mut mux, &mut s, b"local\nbye\n", 0);
    // One WAKE to get the reply out; the close needs no round trip through the bridge.
    assert_eq!(wakes(&f), [Wake { token: FLUSH_TOKEN, delay_ms: 0 }]);
    assert!(!mux.is_closed());
    let out = mux.on_upstream(&mut s, &wake_reply(FLUSH_TOKEN), false, 1);
    assert_eq!(out.bytes, b"ok\n");
    assert!(!out.close_downstream, "the reply must reach the socket first");
    assert!(out.close_later, "the shell closes from its timer");
    assert!(out.log.is_none());
    assert!(mux.is_closed());
    // A callback before the shell's timer, with nothing to deliver, may close at once.
    let out = mux.on_upstream(&mut s, b"", false, 2);
    assert!(out.bytes.is_empty() && out.close_downstream && !out.close_later);
}

#[test]
fn close_with_nothing_to_flush_is_immediate() {
    let (mut mux, mut s, _) = setup();
    let out = mux.on_downstream(&mut s, b"bye\n", false, 0);
    assert!(out.close_downstream);
    assert!(!out.close_later);
    assert!(wakes(&out.bytes).is_empty());
}

#[test]
fn a_close_decided_on_a_server_message_is_closed_later_without_the_bridge() {
    // Regression: a session that passes a server's last message on and closes (a subscriber
    // whose server went away) waited for a later callback; a silent subscriber never had one.
    let (mut mux, mut s, _) = setup();
    let f = down(&mut mux, &mut s, b"a=subscribe\n", 0);
    assert!(wakes(&f).is_empty());
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, 1, b"message 1\n");
    encode_data(&mut b, Kind::BridgeData, 1, b"!gone\n");
    let out = mux.on_upstream(&mut s, &b, false, 1);
    assert_eq!(out.bytes, b"message 1\n!gone\n");
    assert!(!out.close_downstream);
    assert!(out.close_later);
    // Asked once; later bytes for the client are dropped (the close comes after the replies
    // emitted before it), and the bridge's end leaves the close to tcp_proxy.
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, 1, b"late\n");
    let out = mux.on_upstream(&mut s, &b, true, 2);
    assert!(out.bytes.is_empty());
    assert!(!out.close_later && !out.close_downstream);
}

#[test]
fn a_close_with_end_of_stream_is_left_to_tcp_proxy() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=subscribe\n", 0);
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, 1, b"!gone\n");
    let out = mux.on_upstream(&mut s, &b, true, 1);
    assert_eq!(out.bytes, b"!gone\n");
    assert!(!out.close_downstream && !out.close_later);
}

#[test]
fn replies_after_close_downstream_are_dropped() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\nlocal\nbye\nlocal\n", 0);
    let mut b = wake_reply(FLUSH_TOKEN);
    encode_data(&mut b, Kind::BridgeData, 1, b"late\n");
    let out = mux.on_upstream(&mut s, &b, false, 1);
    assert_eq!(out.bytes, b"ok\n");
}

#[test]
fn timer_tokens_never_collide_with_the_flush_token() {
    let (mut mux, mut s, _) = setup();
    let mut actions = vec![Action::WakeAt(u64::MAX), Action::WakeAt(u64::MAX - 1), Action::WakeAt(0)];
    mux.hello_sent = true;
    let mut read = || 0;
    mux.apply(&mut s, &mut actions, &mut Clock::new(&mut read));
    let out = down(&mut mux, &mut s, b"", 0);
    let w = wakes(&out);
    assert_eq!(w.len(), 2, "the two last deadlines saturate to one token: {w:?}");
    assert!(w.iter().all(|w| w.token != FLUSH_TOKEN));
    // Regression (of the close tokens this mux used to have): WakeAt(u64::MAX) produced the
    // close token, and its answer closed the client.
    for (i, w) in w.iter().enumerate() {
        let out = mux.on_upstream(&mut s, &wake_reply(w.token), false, 1);
        assert!(!out.close_downstream && !out.close_later);
        assert_eq!(s.timeouts, i + 1);
    }
}

#[test]
fn the_clock_is_read_only_when_needed_and_once() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"local\na=1\ntimer\n", 1000);
    let reads = std::cell::Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        1050
    };
    // A flush answer calls no session method: no clock.
    let out = mux.on_upstream_with_clock(&mut s, &wake_reply(FLUSH_TOKEN), false, clock);
    assert_eq!(out.bytes, b"ok\n");
    assert_eq!(reads.get(), 0);
    // Half a frame: nothing handled yet.
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, 1, b"one\n");
    encode_data(&mut b, Kind::BridgeData, 1, b"two\n");
    encode_wake_reply(&mut b, 1101);
    let (head, tail) = b.split_at(5);
    assert!(mux.on_upstream_with_clock(&mut s, head, false, clock).bytes.is_empty());
    assert_eq!(reads.get(), 0);
    // Two server replies and a timer in one callback: one read.
    let out = mux.on_upstream_with_clock(&mut s, tail, false, clock);
    assert_eq!(out.bytes, b"one\ntwo\n");
    assert_eq!((reads.get(), s.timeouts), (1, 1));
    // A WakeAt turned into a delay reads it (here from a timer answer).
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"timer\n", 0);
    reads.set(0);
    mux.on_upstream_with_clock(&mut s, &wake_reply(101), false, clock);
    assert_eq!(reads.get(), 1);
    // After the client is gone, nothing.
    mux.on_downstream_closed(&mut s, 5);
    reads.set(0);
    mux.on_upstream_with_clock(&mut s, &b, true, clock);
    assert_eq!(reads.get(), 0);
}

#[test]
fn equal_deadlines_share_one_wake_and_timers_are_bounded() {
    let (mut mux, mut s, _) = setup();
    let out = down(&mut mux, &mut s, b"timer\ntimer\ntimer\n", 1000);
    assert_eq!(wakes(&out).len(), 1);
    let (mut mux, mut s, _) = setup();
    mux = mux.with_limits(MuxLimits { max_timers: 3, ..MuxLimits::default() });
    down(&mut mux, &mut s, b"a=1\n", 0);
    for t in 0..3 {
        down(&mut mux, &mut s, b"timer\n", t);
    }
    let out = mux.on_downstream(&mut s, b"timer\n", false, 10);
    assert!(out.log.unwrap().contains("timers"));
    assert_eq!(s.failures.len(), 1, "the open channel is failed");
}

#[test]
fn channel_ids_run_out_without_hanging() {
    // Regression: with every id open or waiting for CLOSED, the id search looped forever (a
    // frozen Envoy worker). A session that closes and reopens faster than the bridge answers
    // now fails the connection at the limit.
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"", 0);
    let mut failed_at = None;
    for i in 0..70_000u32 {
        let out = mux.on_downstream(&mut s, b"a=1\ndrop=a\n", false, u64::from(i));
        if out.log.is_some() {
            failed_at = Some(i);
            break;
        }
    }
    assert_eq!(failed_at, Some(MuxLimits::default().max_channels as u32));
}

#[test]
fn channel_ids_are_not_reused_before_closed() {
    let (mut mux, mut s, _) = setup();
    mux = mux.with_limits(MuxLimits { max_channels: 3, ..MuxLimits::default() });
    let mut opened = Vec::new();
    for i in 0..3 {
        let out = down(&mut mux, &mut s, b"a=1\ndrop=a\n", i);
        opened.extend(frames(&out).iter().filter(|f| f.kind == Kind::Open).map(|f| f.chan));
    }
    assert_eq!(opened, [1, 2, 3]);
    let mut b = Vec::new();
    encode_closed(&mut b, 2, CloseCode::Local, "");
    mux.on_upstream(&mut s, &b, false, 4);
    let out = down(&mut mux, &mut s, b"a=1\n", 5);
    let f = frames(&out);
    assert_eq!(f[0].kind, Kind::Open, "room for one channel after one CLOSED");
    assert!(![1, 3].contains(&f[0].chan), "ids 1 and 3 still wait for CLOSED: {}", f[0].chan);
    // Ids wrap, skipping those in use.
    mux.next_chan = u16::MAX;
    let mut b = Vec::new();
    encode_closed(&mut b, f[0].chan, CloseCode::Eof, "");
    encode_closed(&mut b, 3, CloseCode::Local, "");
    mux.on_upstream(&mut s, &b, false, 6);
    let out = down(&mut mux, &mut s, b"a=1\ndrop=a\na=1\n", 7);
    let opened: Vec<u16> = frames(&out).iter().filter(|f| f.kind == Kind::Open).map(|f| f.chan).collect();
    assert_eq!(opened, [u16::MAX, 2], "0 is skipped, 1 still waits for CLOSED");
}

#[test]
fn frames_queued_before_hello_keep_their_framing() {
    // Regression: a send emitted from a bridge callback before the first client bytes left
    // its "open frame" offset pointing before HELLO was inserted; the next send to the same
    // channel rewrote a length inside HELLO, and the bridge saw garbage.
    let (mut mux, mut s, table) = setup();
    s.timeout_sends.push((table.cluster_id("one").unwrap(), b"x\n".to_vec()));
    mux.on_upstream(&mut s, &wake_reply(5), false, 0);
    let out = down(&mut mux, &mut s, b"a=1\n", 1);
    let f = frames(&out);
    assert_eq!(f[0].kind, Kind::Hello);
    assert_eq!(Hello::parse(f[0].payload).unwrap().label, "test");
    assert_eq!(f[1].kind, Kind::Open);
    let data: Vec<u8> = f.iter().filter(|f| f.kind == Kind::Data).flat_map(|f| f.payload.to_vec()).collect();
    assert_eq!(data, b"x\na=1\n");
}

#[test]
fn a_broken_bridge_stream_is_not_buffered() {
    // Regression: after a malformed frame every later bridge byte was appended to the input
    // buffer and never dropped.
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    mux.on_upstream(&mut s, b"\0\0\0\0\x42\0\0", false, 1);
    for i in 0..64 {
        mux.on_upstream(&mut s, &[7u8; 65536], false, 2 + i);
    }
    assert_eq!(mux.buffered(), 0);
}

#[test]
fn partial_frames_are_buffered_only_until_complete() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let payload = vec![b'z'; 300_000];
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, 1, &payload);
    encode_data(&mut b, Kind::BridgeData, 1, b"tail\n");
    let mut client = Vec::new();
    let mut peak = 0;
    for chunk in b.chunks(4093) {
        client.extend(mux.on_upstream(&mut s, chunk, false, 1).bytes);
        peak = peak.max(mux.buffered());
    }
    assert_eq!(client.len(), payload.len() + 5);
    assert!(peak <= payload.len() + HEADER_LEN, "peak {peak}");
    assert_eq!(mux.buffered(), 0);
}

#[test]
fn a_client_that_does_not_read_is_closed_at_the_backlog_limit() {
    let (mut mux, mut s, _) = setup();
    mux = mux.with_limits(MuxLimits { max_client_backlog: 1000, ..MuxLimits::default() });
    let mut closed = None;
    for i in 0..1000 {
        let out = mux.on_downstream(&mut s, b"local\nlocal\nlocal\n", false, i);
        if out.close_downstream {
            closed = Some((i, out.log));
            break;
        }
    }
    let (i, log) = closed.expect("closed");
    assert_eq!(i, 1000 / 9);
    assert!(log.unwrap().contains("without reading"));
    assert!(mux.buffered() < 1000);
}

#[test]
fn bridge_backlog_is_bounded() {
    let (mut mux, mut s, table) = setup();
    mux = mux.with_limits(MuxLimits { max_bridge_backlog: 100, ..MuxLimits::default() });
    down(&mut mux, &mut s, b"timer\n", 0);
    s.timeout_sends.push((table.cluster_id("one").unwrap(), vec![b'y'; 200]));
    let out = mux.on_upstream(&mut s, &wake_reply(101), false, 100);
    assert!(out.log.unwrap().contains("for the bridge"));
    assert_eq!(mux.buffered(), 0);
}

#[test]
fn client_half_close_sends_what_the_session_answers() {
    let (mut mux, mut s, _) = setup();
    s.reply_on_close = Some(b"bye then\n".to_vec());
    down(&mut mux, &mut s, b"a=1\n", 0);
    let out = mux.on_downstream(&mut s, b"a=2\n", true, 1);
    // The DATA and the flush/close WAKEs leave with this callback's bytes (the last the
    // filter can send before the half-close reaches the bridge).
    let f = frames(&out.bytes);
    assert_eq!(f[0].payload, b"a=2\n");
    assert_eq!(wakes(&out.bytes)[0], Wake { token: FLUSH_TOKEN, delay_ms: 0 });
    assert!(!out.close_downstream);
    let out = mux.on_upstream(&mut s, &wake_reply(FLUSH_TOKEN), false, 2);
    assert_eq!(out.bytes, b"bye then\n");
    mux.on_downstream_closed(&mut s, 3);
    assert_eq!(s.downstream_closed, 1, "told once");
}

#[test]
fn error_frame_fails_and_the_following_eof_does_not_close() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let mut b = Vec::new();
    encode_error(&mut b, "geomesh-bridge is shutting down");
    let out = mux.on_upstream(&mut s, &b, false, 1);
    assert_eq!(out.bytes, b"-ERR bridge lost\n");
    assert!(out.log.unwrap().contains("shutting down"));
    let out = mux.on_upstream(&mut s, b"", true, 2);
    assert!(!out.close_downstream && out.bytes.is_empty());
}

#[test]
fn the_usual_end_after_the_clients_fin_is_not_logged() {
    // Client FIN -> tcp_proxy half-closes the bridge connection -> the bridge closes: that is
    // how every connection ends, so no warning; in-flight requests are still answered.
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let out = mux.on_downstream(&mut s, b"", true, 1);
    assert!(!out.close_downstream && out.log.is_none());
    let out = mux.on_upstream(&mut s, b"", true, 2);
    assert_eq!(out.bytes, b"-ERR bridge lost\n");
    assert!(out.log.is_none());
    assert!(!out.close_downstream);
    // Without the client's FIN first, the bridge going away is worth a line.
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=1\n", 0);
    let out = mux.on_upstream(&mut s, b"", true, 2);
    assert!(out.log.unwrap().contains("the bridge closed the connection"));
}

#[test]
fn endpoint_links_open_cluster_at_endpoint_targets() {
    let (mut mux, mut s, _) = setup();
    let out = down(
        &mut mux,
        &mut s,
        b"bind 3 b 127.0.0.1:9093\nep3=hello\nep3=again\n",
        0,
    );
    let f = frames(&out);
    assert_eq!(
        Open::parse(f[1].payload).unwrap().target,
        "two@127.0.0.1:9093"
    );
    assert_eq!(
        (f[2].kind, f[2].payload),
        (Kind::Data, &b"hello\nagain\n"[..])
    );
    let chan = f[2].chan;
    // The bridge's bytes on that channel reach the session as the endpoint link's.
    let mut b = Vec::new();
    encode_data(&mut b, Kind::BridgeData, chan, b"broker 3 says hi\n");
    assert_eq!(
        mux.on_upstream(&mut s, &b, false, 1).bytes,
        b"broker 3 says hi\n"
    );
    // A new binding of an open link changes where the next connection goes, not this one.
    let out = down(&mut mux, &mut s, b"bind 3 a 127.0.0.1:9092\nep3=still\n", 2);
    let f = frames(&out);
    assert_eq!((f.len(), f[0].chan), (1, chan));
    let mut b = Vec::new();
    encode_closed(&mut b, chan, CloseCode::Eof, "gone");
    mux.on_upstream(&mut s, &b, false, 3);
    let out = down(&mut mux, &mut s, b"ep3=next\n", 4);
    assert_eq!(
        Open::parse(frames(&out)[0].payload).unwrap().target,
        "one@127.0.0.1:9092"
    );
}

#[test]
fn sends_to_unbound_or_badly_bound_links_fail_the_link_at_once() {
    let (mut mux, mut s, _) = setup();
    let out = mux.on_downstream(&mut s, b"ep7=x\n", false, 0);
    assert_eq!(
        s.failures,
        vec![(ClusterId::endpoint(7), UpstreamFailureKind::UnknownTarget)]
    );
    assert!(
        !frames(&out.bytes).iter().any(|f| f.kind == Kind::Open),
        "nothing opened"
    );
    for bad in ["a@b:1", "host", "two words:1", ""] {
        let mut s2 = Lines::default();
        let (mut mux2, _, table) = setup();
        s2.on_new_table(table);
        let line = format!("bind 1 a {bad}\nep1=x\n");
        let out = mux2.on_downstream(&mut s2, line.as_bytes(), false, 0);
        assert_eq!(s2.failures.len(), 1, "{bad:?}");
        assert!(
            !frames(&out.bytes).iter().any(|f| f.kind == Kind::Open),
            "{bad:?} opened"
        );
    }
    // The connection and the table clusters go on.
    let out = down(&mut mux, &mut s, b"a=1\n", 1);
    assert_eq!(Open::parse(frames(&out)[0].payload).unwrap().target, "one");
}

#[test]
fn a_session_that_resends_to_an_unbound_link_cannot_loop() {
    let (mut mux, mut s, _) = setup();
    s.resend_on_failure = true;
    let out = mux.on_downstream(&mut s, b"ep2=x\n", false, 0);
    assert_eq!(
        s.failures.len(),
        1,
        "the reaction's own failure is dropped, not reacted to"
    );
    assert!(!out.close_downstream);
}

#[test]
fn shared_channels_are_unshared_before_the_first_send_after_the_state_diverges() {
    let (mut mux, mut s, _) = setup();
    s.dedicated = Some(false);
    let out = down(&mut mux, &mut s, b"a=1\n", 0);
    let f = frames(&out);
    assert_eq!(f[1].kind, Kind::OpenShared);
    let o = OpenShared::parse(f[1].payload).unwrap();
    assert_eq!(
        (o.framing, o.open.target),
        (geomesh_core::Framing::Resp, "one")
    );
    assert_eq!((f[2].kind, f[2].chan), (Kind::Data, 1));

    // The state diverges: the open shared channel moves (UNSHARE first, in this callback's
    // frames), a new channel opens dedicated.
    let out = down(&mut mux, &mut s, b"state\nb=2\na=3\n", 1);
    let f = frames(&out);
    let kinds: Vec<(Kind, u16)> = f.iter().map(|f| (f.kind, f.chan)).collect();
    assert_eq!(
        kinds,
        [
            (Kind::Unshare, 1),
            (Kind::Open, 2),
            (Kind::Data, 2),
            (Kind::Data, 1)
        ],
        "{kinds:?}"
    );

    // Never back, never twice.
    let out = down(&mut mux, &mut s, b"a=4\n", 2);
    let f = frames(&out);
    assert_eq!(f.iter().map(|f| f.kind).collect::<Vec<_>>(), [Kind::Data]);

    // A channel that closes and reopens stays dedicated.
    let mut b = Vec::new();
    encode_closed(&mut b, 1, CloseCode::Eof, "gone");
    mux.on_upstream(&mut s, &b, false, 3);
    let out = down(&mut mux, &mut s, b"a=5\n", 4);
    assert_eq!(frames(&out)[0].kind, Kind::Open);
}

#[test]
fn a_close_with_bytes_for_servers_in_the_same_client_callback_comes_later() {
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=0\n", 0);
    // A DISCONNECT-like request: forwarded, then the client closed.
    let out = mux.on_downstream(&mut s, b"a=bye-to-server\nbye\n", false, 1);
    let f = frames(&out.bytes);
    assert!(f.iter().any(|f| f.kind == Kind::Data && f.payload == b"a=bye-to-server\n"), "forwarded");
    assert!(!out.close_downstream, "a close now would make tcp_proxy drop those bytes");
    assert!(out.close_later);
    assert!(mux.is_closed());
    // Without bytes for servers the close is immediate, as before.
    let (mut mux, mut s, _) = setup();
    down(&mut mux, &mut s, b"a=0\n", 0);
    let out = mux.on_downstream(&mut s, b"bye\n", false, 1);
    assert!(out.close_downstream && !out.close_later);
}
