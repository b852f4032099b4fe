//! The Redis session (decoder, splitter, merger, state machine): random client bytes, random
//! and plausible server replies, connection closures, timeouts and table swaps must never
//! panic, and replies must leave in request order.
//!
//! Order check: after every scripted client command the harness sends `ECHO <marker n>`,
//! which the session answers itself but only once every earlier request is answered. Markers
//! must reach the client in increasing order, none twice. Server bytes are scrubbed of the
//! marker prefix so that a server cannot forge one. Nothing may reach the client after the
//! session closed it.
#![no_main]

use std::rc::Rc;

use geomesh_core::{
    Action, ClusterId, Config, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind,
};
use geomesh_redis::{BytesMut, Frame, Limits, RedisSession, ReplyDecoder, Settings};
use libfuzzer_sys::fuzz_target;

mod common;

use common::{small_limits, Input};

const MARK: &[u8] = b"\x01MRK";

const TABLE_A: &str = "workload_type: redis\ndefault_cluster: r1\nupstream_timeout_ms: 500\nrouting_table:\n  user1: r2\n  alert: { type: value, cluster: r2 }\n  'tmp:': { type: prefix, cluster: r3 }\n";
const TABLE_B: &str = "workload_type: redis\ndefault_cluster: r2\nrouting_table:\n  user1: r3\n  '*': { type: hash, clusters: [r1, r2] }\n";

const KEYS: &[&str] = &["a", "user1", "user1:x", "{user1}y", "tmp:z", "b", "alert"];

fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend(format!("*{}\r\n", args.len()).bytes());
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

struct Harness {
    s: RedisSession,
    table: Rc<RoutingTable>,
    now: u64,
    client: BytesMut,
    closed: bool,
    next_marker: u64,
    seen_marker: Option<u64>,
}

impl Harness {
    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Reply(b) => {
                    assert!(!self.closed, "bytes for the client after CloseDownstream");
                    self.client.extend_from_slice(&b);
                }
                Action::CloseDownstream => self.closed = true,
                Action::Send { .. } | Action::CloseUpstream(_) | Action::WakeAt(_) | Action::Bind { .. } => {}
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let mut dec = ReplyDecoder::new(Limits::default());
        loop {
            match dec.decode(&mut self.client) {
                Ok(Some(r)) => {
                    if let Frame::BulkString(b) = r.to_frame() {
                        if let Some(rest) = b.strip_prefix(MARK) {
                            let n: u64 = std::str::from_utf8(rest).unwrap().parse().unwrap();
                            assert!(
                                self.seen_marker.is_none_or(|m| n > m),
                                "marker {n} after {:?}",
                                self.seen_marker
                            );
                            self.seen_marker = Some(n);
                        }
                    }
                }
                Ok(None) => {
                    assert!(self.client.is_empty(), "the session wrote part of a reply");
                    break;
                }
                Err(e) => panic!("the session wrote an undecodable reply: {e}"),
            }
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        let mut out = Vec::new();
        self.s.on_downstream(bytes, self.now, &mut out);
        self.apply(out);
    }

    fn scripted(&mut self, args: &[&[u8]]) {
        let mut b = Vec::new();
        command(&mut b, args);
        let mut m = MARK.to_vec();
        m.extend(self.next_marker.to_string().bytes());
        self.next_marker += 1;
        command(&mut b, &[b"ECHO", &m]);
        self.client(&b);
    }

    fn cluster(&self, b: u8) -> ClusterId {
        let active = self.table.active_clusters();
        active[usize::from(b) % active.len()]
    }
}

const REPLIES: &[&[u8]] = &[
    b"+OK\r\n",
    b"$1\r\nx\r\n",
    b"$-1\r\n",
    b"_\r\n",
    b":3\r\n",
    b"-ERR boom\r\n",
    b"*2\r\n$1\r\na\r\n$-1\r\n",
    b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n",
    b"*2\r\n$2\r\n17\r\n*0\r\n",
    b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
    b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
    b"%1\r\n$5\r\nproto\r\n:3\r\n",
    b"+QUEUED\r\n",
    b"*-1\r\n",
];

fuzz_target!(|data: &[u8]| {
    let table = Rc::new(RoutingTable::new(&Config::parse(TABLE_A.as_bytes()).unwrap()).unwrap());
    let settings = Settings {
        limits: small_limits(),
        max_pending_requests: 64,
        max_transaction_commands: 8,
        timer_granularity_ms: 0,
    };
    let mut h = Harness {
        s: RedisSession::new(table.clone(), 500, &settings),
        table,
        now: 1000,
        client: BytesMut::new(),
        closed: false,
        next_marker: 0,
        seen_marker: None,
    };
    let mut input = Input(data);
    let mut forever = false;
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let n = usize::from(input.byte().unwrap_or(0));
                let b = input.bytes(n).to_vec();
                h.client(&b);
            }
            1 | 2 => {
                let pick = input.byte().unwrap_or(0);
                let k = |i: u8| KEYS[usize::from(i) % KEYS.len()].as_bytes();
                let (x, y, z) = (
                    input.byte().unwrap_or(0),
                    input.byte().unwrap_or(1),
                    input.byte().unwrap_or(2),
                );
                let cmds: &[&[&[u8]]] = &[
                    &[b"GET", k(x)],
                    &[b"SET", k(x), b"v"],
                    &[b"MGET", k(x), k(y), k(z)],
                    &[b"MSET", k(x), b"1", k(y), b"2"],
                    &[b"DEL", k(x), k(y)],
                    &[b"KEYS", b"*"],
                    &[b"DBSIZE"],
                    &[b"SCAN", b"0"],
                    &[b"SCAN", b"4097"],
                    &[b"RANDOMKEY"],
                    &[b"PING"],
                    &[b"SINTER", k(x), k(y)],
                    &[b"MULTI"],
                    &[b"EXEC"],
                    &[b"DISCARD"],
                    &[b"WATCH", k(x)],
                    &[b"UNWATCH"],
                    &[b"SELECT", b"1"],
                    &[b"HELLO", b"3"],
                    &[b"HELLO", b"2", b"SETNAME", b"n"],
                    &[b"AUTH", b"pw"],
                    &[b"CLIENT", b"SETNAME", b"x"],
                    &[b"SUBSCRIBE", b"c", k(x)],
                    &[b"PSUBSCRIBE", b"c*"],
                    &[b"UNSUBSCRIBE"],
                    &[b"PUNSUBSCRIBE", b"c*"],
                    &[b"SSUBSCRIBE", k(x)],
                    &[b"PUBLISH", k(x), b"alert!"],
                    &[b"BLPOP", k(x), b"0.1"],
                    &[b"BLPOP", k(x), b"0"],
                    &[b"RESET"],
                    &[b"INFO"],
                    &[b"MONITOR"],
                    &[b"EVAL", b"s", b"2", k(x), k(y)],
                    &[b"WAIT", b"0", b"10"],
                    &[b"PUBSUB", b"NUMSUB", b"c"],
                    &[b"SCRIPT", b"EXISTS", b"a", b"b"],
                ];
                let c = cmds[usize::from(pick) % cmds.len()];
                forever |= c == [&b"BLPOP"[..], k(x), b"0"];
                h.scripted(c);
            }
            3 => {
                let c = h.cluster(input.byte().unwrap_or(0));
                let n = usize::from(input.byte().unwrap_or(0));
                let mut b = input.bytes(n).to_vec();
                // No forged markers from servers.
                while let Some(i) = b.windows(MARK.len()).position(|w| w == MARK) {
                    b[i] = b'X';
                }
                let mut out = Vec::new();
                h.s.on_upstream(c, &b, h.now, &mut out);
                h.apply(out);
            }
            4 | 5 => {
                let c = h.cluster(input.byte().unwrap_or(0));
                let r = REPLIES[usize::from(input.byte().unwrap_or(0)) % REPLIES.len()];
                let cut = usize::from(input.byte().unwrap_or(0)) % (r.len() + 1);
                for piece in [&r[..cut], &r[cut..]] {
                    let mut out = Vec::new();
                    h.s.on_upstream(c, piece, h.now, &mut out);
                    h.apply(out);
                }
            }
            6 => {
                let b = input.byte().unwrap_or(0);
                if b % 4 == 0 {
                    let c = h.cluster(input.byte().unwrap_or(0));
                    let kinds = [
                        UpstreamFailureKind::Eof,
                        UpstreamFailureKind::Refused,
                        UpstreamFailureKind::Stalled,
                        UpstreamFailureKind::BridgeLost,
                    ];
                    let f = UpstreamFailure {
                        kind: kinds[usize::from(b / 4) % kinds.len()],
                        message: "x".into(),
                    };
                    let mut out = Vec::new();
                    h.s.on_upstream_closed(c, &f, h.now, &mut out);
                    h.apply(out);
                } else if b % 4 == 1 {
                    let yaml = if b & 16 == 0 { TABLE_B } else { TABLE_A };
                    let t = Rc::new(
                        RoutingTable::succeed(&Config::parse(yaml.as_bytes()).unwrap(), &h.table)
                            .unwrap(),
                    );
                    h.table = t.clone();
                    h.s.on_new_table(t);
                } else {
                    let mut out = Vec::new();
                    h.s.on_downstream_closed(h.now, &mut out);
                    h.apply(out);
                }
            }
            _ => {
                h.now += u64::from(input.byte().unwrap_or(0)) * 8;
                let mut out = Vec::new();
                h.s.on_timeout(h.now, &mut out);
                h.apply(out);
            }
        }
    }
    // Everything expires in the end: every request is answered, markers included.
    h.now += 10 * 3_600_000;
    let mut out = Vec::new();
    h.s.on_timeout(h.now, &mut out);
    h.apply(out);
    assert!(
        h.closed || forever || h.s.pending() == 0,
        "{} requests never answered",
        h.s.pending()
    );
});
