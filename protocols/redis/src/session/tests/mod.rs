//! The session against scripted fake servers (unit tests of the sans-IO state machine only:
//! the end-to-end tests in integration/ use real redis-servers through a real Envoy).
//!
//! A [`Harness`] (the kit's `geomesh_kit::testkit::Harness`, with Redis helpers) drives a
//! [`RedisSession`] like the host does: client bytes in, actions out; `Send`s are fed to one
//! small scripted server per cluster ([`Fake`]: a key-value map and the connection state the
//! session relies on), whose replies are fed back, cut as the test says. The tests mirror the
//! session's files: `route`, `merge`, `state`, `transaction`, `pubsub`, and the pipeline's
//! behaviour as Redis clients see it (`queue`, `faults`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};

pub(super) use super::RedisSession;
pub(super) use crate::{Frame, Limits, Protocol, ReplyDecoder, RequestDecoder, Settings};
pub(super) use bytes::BytesMut;
pub(super) use geomesh_core::{Action, ClusterId, Config, RoutingTable, Session, UpstreamFailureKind};
pub(super) use std::rc::Rc;

mod faults;
mod merge;
mod pubsub;
mod queue;
mod route;
mod state;
mod transaction;

pub(super) const TABLE: &str = "\
workload_type: redis
default_cluster: redis1
local_cluster: redis1
upstream_timeout_ms: 1000
routing_table:
  user1: { cluster: redis2 }
  alert: { type: value, cluster: redis2 }
  'tmp:': { type: prefix, cluster: redis3 }
";

pub(super) fn table(yaml: &str) -> Rc<RoutingTable> {
    Rc::new(RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap())
}

#[derive(Default)]
pub(super) struct Conn {
    pub(super) dec: RequestDecoder,
    pub(super) inbuf: BytesMut,
    pub(super) resp3: bool,
    pub(super) multi: Option<Vec<Vec<Vec<u8>>>>,
    pub(super) subs: BTreeSet<Vec<u8>>,
    pub(super) psubs: BTreeSet<Vec<u8>>,
    pub(super) db: u8,
}

/// One scripted server (a cluster): its data survives reconnections, its connection does not.
#[derive(Default)]
pub(super) struct Fake {
    pub(super) db: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(super) conn: Conn,
    /// Replies not yet delivered to the session.
    pub(super) out: Vec<u8>,
    /// Stalled: replies are held here until `unstall`.
    pub(super) held: Vec<u8>,
    pub(super) stalled: bool,
    /// Every command received, as text.
    pub(super) log: Vec<String>,
    pub(super) password: Option<Vec<u8>>,
    pub(super) authed: bool,
    /// `databases` of this server (16 when 0).
    pub(super) databases: u8,
}

pub(super) fn enc(f: &Frame) -> Vec<u8> {
    f.to_vec()
}

impl Fake {
    fn null(&self) -> Frame {
        if self.conn.resp3 {
            Frame::Null
        } else {
            Frame::NullBulk
        }
    }

    fn push(&self, items: Vec<Frame>) -> Frame {
        if self.conn.resp3 {
            Frame::Push(items)
        } else {
            Frame::Array(items)
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.conn.inbuf.extend_from_slice(bytes);
        while let Some(cmd) = self.conn.dec.decode(&mut self.conn.inbuf).unwrap() {
            let args: Vec<Vec<u8>> = cmd.args().map(<[u8]>::to_vec).collect();
            self.log.push(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            let mut out = Vec::new();
            if let Some(q) = self.conn.multi.as_mut() {
                let name = args[0].to_ascii_uppercase();
                if name == b"EXEC" {
                    let q = self.conn.multi.take().unwrap();
                    let mut replies = Vec::new();
                    for c in q {
                        replies.push(self.exec(&c));
                    }
                    out.extend(enc(&Frame::Array(replies)));
                } else {
                    q.push(args);
                    out.extend(b"+QUEUED\r\n");
                }
            } else {
                let f = self.exec(&args);
                out.extend(enc(&f));
            }
            if self.stalled {
                self.held.extend(out);
            } else {
                self.out.extend(out);
            }
        }
    }

    fn exec(&mut self, a: &[Vec<u8>]) -> Frame {
        let name = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
        let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
        if self.password.is_some() && !self.authed && name != "AUTH" && name != "HELLO" {
            return Frame::error("NOAUTH Authentication required.");
        }
        match name.as_str() {
            "AUTH" => {
                if Some(a.last().unwrap()) == self.password.as_ref() {
                    self.authed = true;
                    Frame::ok()
                } else {
                    Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
                }
            }
            "HELLO" => {
                let v = arg(1);
                if v != b"2" && v != b"3" {
                    return Frame::error("NOPROTO unsupported protocol version");
                }
                self.conn.resp3 = v == b"3";
                let pairs = vec![
                    (Frame::bulk("server"), Frame::bulk("fake")),
                    (
                        Frame::bulk("proto"),
                        Frame::Integer(if self.conn.resp3 { 3 } else { 2 }),
                    ),
                ];
                if self.conn.resp3 {
                    Frame::Map(pairs)
                } else {
                    Frame::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
                }
            }
            "SELECT" => {
                let n: u8 = String::from_utf8_lossy(&arg(1)).parse().unwrap_or(99);
                let dbs = if self.databases == 0 {
                    16
                } else {
                    self.databases
                };
                if n >= dbs {
                    return Frame::error("ERR DB index is out of range");
                }
                self.conn.db = n;
                Frame::ok()
            }
            "CLIENT" | "READONLY" | "READWRITE" | "WATCH" | "UNWATCH" | "FLUSHDB" | "FLUSHALL" => {
                if name.starts_with("FLUSH") {
                    self.db.clear();
                }
                Frame::ok()
            }
            "MULTI" => {
                self.conn.multi = Some(Vec::new());
                Frame::ok()
            }
            "GET" => self
                .db
                .get(&arg(1))
                .map(|v| Frame::bulk(v.clone()))
                .unwrap_or_else(|| self.null()),
            "SET" => {
                if arg(1).windows(4).any(|w| w == b"fail") {
                    return Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
                }
                self.db.insert(arg(1), arg(2));
                Frame::ok()
            }
            "MGET" => Frame::Array(
                a[1..]
                    .iter()
                    .map(|k| {
                        self.db
                            .get(k)
                            .map(|v| Frame::bulk(v.clone()))
                            .unwrap_or_else(|| self.null())
                    })
                    .collect(),
            ),
            "MSET" | "MSETNX" => {
                if a[1..]
                    .iter()
                    .step_by(2)
                    .any(|k| k.windows(4).any(|w| w == b"fail"))
                {
                    return Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
                }
                for kv in a[1..].chunks(2) {
                    self.db.insert(kv[0].clone(), kv[1].clone());
                }
                if name == "MSETNX" {
                    Frame::Integer(1)
                } else {
                    Frame::ok()
                }
            }
            "DEL" | "EXISTS" => Frame::Integer(
                a[1..]
                    .iter()
                    .filter(|k| {
                        if name == "DEL" {
                            self.db.remove(*k).is_some()
                        } else {
                            self.db.contains_key(*k)
                        }
                    })
                    .count() as i64,
            ),
            "DBSIZE" => Frame::Integer(self.db.len() as i64),
            "KEYS" => Frame::Array(self.db.keys().map(|k| Frame::bulk(k.clone())).collect()),
            "RANDOMKEY" => self
                .db
                .keys()
                .next()
                .map(|k| Frame::bulk(k.clone()))
                .unwrap_or_else(|| self.null()),
            "SCAN" => {
                // Cursor = index into the sorted keys, 2 keys per call.
                let c: usize = String::from_utf8_lossy(&arg(1)).parse().unwrap();
                let keys: Vec<Frame> = self
                    .db
                    .keys()
                    .skip(c)
                    .take(2)
                    .map(|k| Frame::bulk(k.clone()))
                    .collect();
                let next = if c + 2 >= self.db.len() { 0 } else { c + 2 };
                Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
            }
            "INFO" => Frame::bulk("# Server\r\nfake"),
            "BLPOP" => Frame::Array(vec![Frame::bulk(arg(1)), Frame::bulk("v")]),
            "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" => {
                // Replies for every argument but the last are written here; the last is returned.
                let mut replies = Vec::new();
                for ch in &a[1..] {
                    match name.as_str() {
                        "SUBSCRIBE" => {
                            self.conn.subs.insert(ch.clone());
                        }
                        "PSUBSCRIBE" => {
                            self.conn.psubs.insert(ch.clone());
                        }
                        _ => {
                            self.conn.subs.remove(ch);
                        }
                    }
                    let n = (self.conn.subs.len() + self.conn.psubs.len()) as i64;
                    replies.push(self.push(vec![
                        Frame::bulk(name.to_ascii_lowercase()),
                        Frame::bulk(ch.clone()),
                        Frame::Integer(n),
                    ]));
                }
                let last = replies.pop().unwrap();
                for r in replies {
                    self.out.extend(enc(&r));
                }
                last
            }
            // This connection's subscriptions (the only client of the fake).
            "PUBSUB" if arg(1).eq_ignore_ascii_case(b"NUMPAT") => {
                Frame::Integer(self.conn.psubs.len() as i64)
            }
            "PUBSUB" if arg(1).eq_ignore_ascii_case(b"NUMSUB") => Frame::Array(
                a[2..]
                    .iter()
                    .flat_map(|ch| {
                        let n = i64::from(self.conn.subs.contains(ch));
                        [Frame::bulk(ch.clone()), Frame::Integer(n)]
                    })
                    .collect(),
            ),
            "PUBLISH" => {
                let n = i64::from(self.conn.subs.contains(&arg(1)));
                if n == 1 {
                    let m = self.push(vec![
                        Frame::bulk("message"),
                        Frame::bulk(arg(1)),
                        Frame::bulk(arg(2)),
                    ]);
                    // The message is delivered before the reply to PUBLISH (same connection).
                    self.out.extend(enc(&m));
                }
                Frame::Integer(n)
            }
            _ => Frame::ok(),
        }
    }
}

impl geomesh_kit::testkit::Shard for Fake {
    fn feed(&mut self, bytes: &[u8]) {
        Fake::feed(self, bytes)
    }
    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }
    fn close_connection(&mut self) {
        self.conn = Conn::default();
        self.out.clear();
        self.held.clear();
    }
}

/// The kit's harness around a [`RedisSession`] and [`Fake`] servers, with Redis helpers.
pub(super) struct Harness(geomesh_kit::testkit::Harness<RedisSession, Fake>);

impl Deref for Harness {
    type Target = geomesh_kit::testkit::Harness<RedisSession, Fake>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with(TABLE, Settings::default())
    }

    pub(super) fn with(yaml: &str, settings: Settings) -> Self {
        let t = table(yaml);
        let timeout = Config::parse(yaml.as_bytes()).unwrap().upstream_timeout_ms;
        Harness(geomesh_kit::testkit::Harness::start(
            RedisSession::new(t.clone(), timeout, &settings),
            t,
        ))
    }

    pub(super) fn cmd(&mut self, args: &[&str]) {
        let mut b = Vec::new();
        crate::write_command(&mut b, args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
        self.send(&b);
    }

    pub(super) fn run(&mut self, args: &[&str]) -> Frame {
        self.cmd(args);
        self.deliver();
        let mut r = self.replies();
        assert_eq!(r.len(), 1, "one reply to {args:?}, got {r:?}");
        r.remove(0)
    }

    pub(super) fn replies(&mut self) -> Vec<Frame> {
        let mut dec = ReplyDecoder::new(Limits::default());
        let mut out = Vec::new();
        while let Some(r) = dec.decode(&mut self.client).unwrap() {
            out.push(r.to_frame());
        }
        assert!(self.client.is_empty(), "partial reply left: {:?}", self.client);
        out
    }

    /// Time passes to `at` (inherent, so that `h.timeout(h.now + n)` borrows in two phases).
    pub(super) fn timeout(&mut self, at: geomesh_core::Millis) {
        self.0.timeout(at)
    }

    pub(super) fn log(&mut self, name: &str) -> Vec<String> {
        self.fake(name).log.clone()
    }
}

pub(super) fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_owned())
}

pub(super) fn arr(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

pub(super) fn err_text(f: &Frame) -> String {
    match f {
        Frame::SimpleError(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

