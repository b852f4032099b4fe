//! The Redis session (decoder, splitter, merger, state machine) on the kit's shared fuzz shape
//! (`geomesh_kit::testkit::fuzz`): random client bytes, random and plausible server replies,
//! connection closures, timeouts and table swaps must never panic, and replies must leave in
//! request order.
//!
//! Order check: after every scripted client command the driver sends `ECHO <marker n>`, which
//! the session answers itself but only once every earlier request is answered. Markers must
//! reach the client in increasing order, none twice. Server bytes are scrubbed of the marker
//! prefix so that a server cannot forge one. Nothing may reach the client after the session
//! closed it; in the end every request is answered.
#![no_main]

use std::rc::Rc;

use geomesh_core::RoutingTable;
use geomesh_kit::testkit::fuzz::{run, Input, Target};
use geomesh_redis::{BytesMut, Frame, Limits, RedisSession, ReplyDecoder, Settings};
use libfuzzer_sys::fuzz_target;

mod common;

use common::small_limits;

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

struct Redis;

impl Target for Redis {
    type S = RedisSession;

    fn tables(&self) -> &[&str] {
        &[TABLE_A, TABLE_B]
    }

    fn session(&self, table: Rc<RoutingTable>) -> RedisSession {
        let settings = Settings {
            limits: small_limits(),
            max_pending_requests: 64,
            max_transaction_commands: 8,
            timer_granularity_ms: 0,
        };
        RedisSession::new(table, 500, &settings)
    }

    fn request(&self, input: &mut Input<'_>) -> (Vec<u8>, bool) {
        let pick = input.byte_or(0);
        let k = |i: u8| KEYS[usize::from(i) % KEYS.len()].as_bytes();
        let (x, y, z) = (input.byte_or(0), input.byte_or(1), input.byte_or(2));
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
        let mut b = Vec::new();
        command(&mut b, c);
        (b, c == [&b"BLPOP"[..], k(x), b"0"])
    }

    fn answer(&self, input: &mut Input<'_>) -> Vec<u8> {
        REPLIES[usize::from(input.byte_or(0)) % REPLIES.len()].to_vec()
    }

    fn marker(&self, n: u64) -> Option<Vec<u8>> {
        let mut m = MARK.to_vec();
        m.extend(n.to_string().bytes());
        let mut b = Vec::new();
        command(&mut b, &[b"ECHO", &m]);
        Some(b)
    }

    fn read_markers(&self, client: &mut BytesMut) -> Vec<u64> {
        let mut dec = ReplyDecoder::new(Limits::default());
        let mut seen = Vec::new();
        loop {
            match dec.decode(client) {
                Ok(Some(r)) => {
                    if let Frame::BulkString(b) = r.to_frame() {
                        if let Some(rest) = b.strip_prefix(MARK) {
                            seen.push(std::str::from_utf8(rest).unwrap().parse().unwrap());
                        }
                    }
                }
                Ok(None) => {
                    assert!(client.is_empty(), "the session wrote part of a reply");
                    break;
                }
                Err(e) => panic!("the session wrote an undecodable reply: {e}"),
            }
        }
        seen
    }

    fn scrub(&self, b: &mut [u8]) {
        let mut i = 0;
        while i + MARK.len() <= b.len() {
            if &b[i..i + MARK.len()] == MARK {
                b[i] = b'X';
            }
            i += 1;
        }
    }

    fn pending(&self, s: &RedisSession) -> usize {
        s.pending()
    }
}

fuzz_target!(|data: &[u8]| run(&Redis, data));
