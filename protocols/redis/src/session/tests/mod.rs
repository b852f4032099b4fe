//! The session against scripted fake servers (unit tests of the sans-IO state machine only:
//! the end-to-end tests in integration/ use real redis-servers through a real Envoy).
//!
//! A [`Harness`] drives a [`RedisSession`] like the host does: client bytes in, actions out;
//! `Send`s are fed to one small scripted server per cluster (a key-value map and the
//! connection state the session relies on), whose replies are fed back, cut as the test says.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::{Frame, Limits};
use geomesh_core::{Config, UpstreamFailureKind};

const TABLE: &str = "\
workload_type: redis
default_cluster: redis1
local_cluster: redis1
upstream_timeout_ms: 1000
routing_table:
  user1: { cluster: redis2 }
  alert: { type: value, cluster: redis2 }
  'tmp:': { type: prefix, cluster: redis3 }
";

fn table(yaml: &str) -> Rc<RoutingTable> {
    Rc::new(RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap())
}

#[derive(Default)]
struct Conn {
    dec: RequestDecoder,
    inbuf: BytesMut,
    resp3: bool,
    multi: Option<Vec<Vec<Vec<u8>>>>,
    subs: BTreeSet<Vec<u8>>,
    psubs: BTreeSet<Vec<u8>>,
    db: u8,
}

/// One scripted server (a cluster): its data survives reconnections, its connection does not.
#[derive(Default)]
struct Fake {
    db: BTreeMap<Vec<u8>, Vec<u8>>,
    conn: Conn,
    /// Replies not yet delivered to the session.
    out: Vec<u8>,
    /// Stalled: replies are held here until `unstall`.
    held: Vec<u8>,
    stalled: bool,
    /// Every command received, as text.
    log: Vec<String>,
    password: Option<Vec<u8>>,
    authed: bool,
    /// `databases` of this server (16 when 0).
    databases: u8,
}

fn enc(f: &Frame) -> Vec<u8> {
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

struct Harness {
    s: RedisSession,
    table: Rc<RoutingTable>,
    now: Millis,
    client: BytesMut,
    closed: bool,
    wakes: Vec<Millis>,
    fakes: HashMap<ClusterId, Fake>,
    closed_upstreams: Vec<ClusterId>,
}

impl Harness {
    fn new() -> Self {
        Self::with(TABLE, Settings::default())
    }

    fn with(yaml: &str, settings: Settings) -> Self {
        let t = table(yaml);
        let timeout = Config::parse(yaml.as_bytes()).unwrap().upstream_timeout_ms;
        Harness {
            s: RedisSession::new(t.clone(), timeout, &settings),
            table: t,
            now: 1_000_000,
            client: BytesMut::new(),
            closed: false,
            wakes: Vec::new(),
            fakes: HashMap::new(),
            closed_upstreams: Vec::new(),
        }
    }

    fn id(&self, name: &str) -> ClusterId {
        self.table.cluster_id(name).unwrap()
    }

    fn fake(&mut self, name: &str) -> &mut Fake {
        let id = self.id(name);
        self.fakes.entry(id).or_default()
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { cluster, bytes } => {
                    self.fakes.entry(cluster).or_default().feed(&bytes)
                }
                Action::Reply(b) => {
                    assert!(!self.closed, "bytes after close");
                    self.client.extend_from_slice(&b)
                }
                Action::CloseDownstream => self.closed = true,
                Action::CloseUpstream(c) => {
                    self.closed_upstreams.push(c);
                    let f = self.fakes.entry(c).or_default();
                    f.conn = Conn::default();
                    f.out.clear();
                    f.held.clear();
                }
                Action::WakeAt(t) => self.wakes.push(t),
                Action::Bind { .. } => {}
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let mut out = Vec::new();
        self.s.on_downstream(bytes, self.now, &mut out);
        self.apply(out);
    }

    fn cmd(&mut self, args: &[&str]) {
        let mut b = Vec::new();
        crate::write_command(
            &mut b,
            args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
        );
        self.send(&b);
    }

    /// Delivers everything the servers have, each cluster's bytes cut in `chunk`-byte pieces,
    /// clusters in `order` (ids), until nothing moves.
    fn deliver_with(&mut self, chunk: usize, reverse: bool) {
        loop {
            let mut ids: Vec<ClusterId> = self
                .fakes
                .iter()
                .filter(|(_, f)| !f.out.is_empty())
                .map(|(c, _)| *c)
                .collect();
            if ids.is_empty() {
                break;
            }
            ids.sort();
            if reverse {
                ids.reverse();
            }
            for c in ids {
                let bytes = std::mem::take(&mut self.fakes.get_mut(&c).unwrap().out);
                for piece in bytes.chunks(chunk.max(1)) {
                    let mut out = Vec::new();
                    self.s.on_upstream(c, piece, self.now, &mut out);
                    self.apply(out);
                }
            }
        }
    }

    fn deliver(&mut self) {
        self.deliver_with(usize::MAX, false)
    }

    fn run(&mut self, args: &[&str]) -> Frame {
        self.cmd(args);
        self.deliver();
        let mut r = self.replies();
        assert_eq!(r.len(), 1, "one reply to {args:?}, got {r:?}");
        r.remove(0)
    }

    fn replies(&mut self) -> Vec<Frame> {
        let mut dec = ReplyDecoder::new(Limits::default());
        let mut out = Vec::new();
        while let Some(r) = dec.decode(&mut self.client).unwrap() {
            out.push(r.to_frame());
        }
        assert!(
            self.client.is_empty(),
            "partial reply left: {:?}",
            self.client
        );
        out
    }

    fn timeout(&mut self, at: Millis) {
        self.now = at;
        let mut out = Vec::new();
        self.s.on_timeout(at, &mut out);
        self.apply(out);
    }

    fn close_upstream(&mut self, name: &str, kind: UpstreamFailureKind, msg: &str) {
        let c = self.id(name);
        let f = self.fakes.entry(c).or_default();
        f.conn = Conn::default();
        f.out.clear();
        let mut out = Vec::new();
        self.s.on_upstream_closed(
            c,
            &UpstreamFailure {
                kind,
                message: msg.into(),
            },
            self.now,
            &mut out,
        );
        self.apply(out);
    }

    fn log(&mut self, name: &str) -> Vec<String> {
        self.fake(name).log.clone()
    }
}

fn bulk(s: &str) -> Frame {
    Frame::bulk(s.to_owned())
}

fn arr(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

fn err_text(f: &Frame) -> String {
    match f {
        Frame::SimpleError(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn single_keys_go_where_the_table_says() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "user1", "a"]), Frame::ok());
    assert_eq!(h.run(&["SET", "user1:cart", "b"]), Frame::ok());
    assert_eq!(h.run(&["SET", "{user1}x", "c"]), Frame::ok(), "hash tag");
    assert_eq!(h.run(&["SET", "tmp:1", "d"]), Frame::ok());
    assert_eq!(h.run(&["SET", "other", "e"]), Frame::ok());
    assert_eq!(
        h.run(&["SET", "alert", "f"]),
        Frame::ok(),
        "value routes do not match keys"
    );
    let keys = |h: &mut Harness, n: &str| {
        h.fake(n)
            .db
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&mut h, "redis2"), ["user1", "user1:cart", "{user1}x"]);
    assert_eq!(keys(&mut h, "redis3"), ["tmp:1"]);
    assert_eq!(keys(&mut h, "redis1"), ["alert", "other"]);
    assert_eq!(h.run(&["GET", "user1"]), bulk("a"));
    assert_eq!(h.run(&["GET", "nope"]), Frame::NullBulk);
    // The exact client bytes were forwarded.
    assert_eq!(h.log("redis2")[0], "SET user1 a");
}

#[test]
fn replies_keep_request_order_whatever_order_servers_answer_in() {
    for reverse in [false, true] {
        let mut h = Harness::new();
        let mut b = Vec::new();
        for i in 0..50 {
            for (k, v) in [("user1", "u"), ("other", "o"), ("tmp:x", "t")] {
                crate::write_command(
                    &mut b,
                    [&b"SET"[..], k.as_bytes(), format!("{v}{i}").as_bytes()],
                );
                crate::write_command(&mut b, [&b"GET"[..], k.as_bytes()]);
            }
        }
        h.send(&b);
        assert!(h.client.is_empty());
        h.deliver_with(7, reverse);
        let r = h.replies();
        assert_eq!(r.len(), 300);
        for i in 0..50 {
            for (j, v) in ["u", "o", "t"].iter().enumerate() {
                assert_eq!(r[i * 6 + j * 2], Frame::ok());
                assert_eq!(r[i * 6 + j * 2 + 1], bulk(&format!("{v}{i}")));
            }
        }
    }
}

/// Mixed families, fed all at once or one byte at a time, with servers answering one byte at
/// a time: the same replies.
#[test]
fn one_byte_at_a_time_equals_all_at_once() {
    let script: &[&[&str]] = &[
        &["MSET", "user1", "1", "a", "2", "tmp:b", "3"],
        &["MGET", "tmp:b", "user1", "nope", "a"],
        &["PING"],
        &["DEL", "a", "user1", "zz"],
        &["KEYS", "*"],
        &["ECHO", "hi"],
        &["DBSIZE"],
        &["SINTER", "a", "user1"],
        &["EXISTS", "tmp:b", "tmp:b"],
    ];
    let mut bytes = Vec::new();
    for c in script {
        crate::write_command(
            &mut bytes,
            c.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
        );
    }
    bytes.extend_from_slice(b"PING inline\r\n");
    let mut results = Vec::new();
    for byte_wise in [false, true] {
        let mut h = Harness::new();
        if byte_wise {
            for b in &bytes {
                h.send(std::slice::from_ref(b));
                h.deliver_with(1, true);
            }
        } else {
            h.send(&bytes);
            h.deliver();
        }
        results.push(h.replies());
    }
    assert_eq!(results[0], results[1]);
    let r = &results[0];
    assert_eq!(r.len(), 10);
    assert_eq!(r[0], Frame::ok());
    assert_eq!(
        r[1],
        Frame::Array(vec![bulk("3"), bulk("1"), Frame::NullBulk, bulk("2")])
    );
    assert_eq!(r[2], Frame::SimpleString("PONG".into()));
    assert_eq!(r[3], Frame::Integer(2));
    assert_eq!(r[4], arr(&["tmp:b"]));
    assert_eq!(r[5], bulk("hi"));
    assert_eq!(r[6], Frame::Integer(1));
    assert!(err_text(&r[7]).starts_with("CROSSSLOT"));
    assert_eq!(r[8], Frame::Integer(2));
    assert_eq!(r[9], bulk("inline"));
}

#[test]
fn pipeline_of_a_thousand() {
    let mut h = Harness::new();
    let mut b = Vec::new();
    for i in 0..1000 {
        let k = match i % 3 {
            0 => format!("user1:{i}"),
            1 => format!("tmp:{i}"),
            _ => format!("k{i}"),
        };
        crate::write_command(
            &mut b,
            [&b"SET"[..], k.as_bytes(), i.to_string().as_bytes()],
        );
        crate::write_command(&mut b, [&b"MGET"[..], k.as_bytes(), b"user1:0", b"k2"]);
    }
    h.send(&b);
    h.deliver_with(1000, true);
    let r = h.replies();
    assert_eq!(r.len(), 2000);
    for i in 0..1000 {
        assert_eq!(r[2 * i], Frame::ok());
        let Frame::Array(v) = &r[2 * i + 1] else {
            panic!()
        };
        assert_eq!(v[0], bulk(&i.to_string()));
        assert_eq!(v[1], bulk("0"));
        assert_eq!(v[2], if i >= 2 { bulk("2") } else { Frame::NullBulk });
    }
    assert_eq!(h.s.pending(), 0);
}

#[test]
fn mget_is_batched_per_shard_and_merged_in_key_order() {
    let mut h = Harness::new();
    h.run(&[
        "MSET", "a", "1", "user1", "2", "b", "3", "tmp:c", "4", "user1:z", "5",
    ]);
    assert_eq!(h.log("redis1"), ["MSET a 1 b 3"]);
    assert_eq!(h.log("redis2"), ["MSET user1 2 user1:z 5"]);
    assert_eq!(h.log("redis3"), ["MSET tmp:c 4"]);
    let r = h.run(&["MGET", "user1:z", "a", "tmp:c", "user1", "missing", "b"]);
    assert_eq!(
        r,
        Frame::Array(vec![
            bulk("5"),
            bulk("1"),
            bulk("4"),
            bulk("2"),
            Frame::NullBulk,
            bulk("3")
        ])
    );
    assert_eq!(h.log("redis1")[1], "MGET a missing b");
    assert_eq!(h.log("redis2")[1], "MGET user1:z user1");
    // All keys on one shard: forwarded untouched.
    h.run(&["MGET", "a", "b"]);
    assert_eq!(h.log("redis1")[2], "MGET a b");
    assert_eq!(
        h.run(&["DEL", "a", "user1", "nope", "tmp:c"]),
        Frame::Integer(3)
    );
    assert_eq!(h.run(&["EXISTS", "a", "b", "user1:z"]), Frame::Integer(2));
}

#[test]
fn mset_failure_names_the_cluster() {
    let mut h = Harness::new();
    let r = h.run(&["MSET", "a", "1", "user1:fail", "2"]);
    let e = err_text(&r);
    assert!(
        e.starts_with("ERR geomesh: MSET failed on cluster redis2 (OOM"),
        "{e}"
    );
    assert!(e.ends_with("applied on redis1"), "{e}");
    let r = h.run(&["MSETNX", "a", "1", "user1", "2"]);
    assert_eq!(
        err_text(&r),
        "CROSSSLOT Keys in request don't hash to the same slot (geomesh: they route to clusters redis1, redis2)"
    );
    assert_eq!(
        h.run(&["MSETNX", "user1:a", "1", "{user1}b", "2"]),
        Frame::Integer(1)
    );
}

#[test]
fn broadcasts_merge() {
    let mut h = Harness::new();
    h.run(&["MSET", "a", "1", "user1", "2", "tmp:c", "4"]);
    let Frame::Array(mut keys) = h.run(&["KEYS", "*"]) else {
        panic!()
    };
    keys.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(keys, vec![bulk("a"), bulk("tmp:c"), bulk("user1")]);
    assert_eq!(h.run(&["DBSIZE"]), Frame::Integer(3));
    assert_eq!(h.run(&["RANDOMKEY"]), bulk("a"));
    assert_eq!(h.run(&["FLUSHDB"]), Frame::ok());
    assert_eq!(h.run(&["DBSIZE"]), Frame::Integer(0));
    assert_eq!(h.run(&["RANDOMKEY"]), Frame::NullBulk);
    assert_eq!(
        h.log("redis3"),
        [
            "MSET tmp:c 4",
            "KEYS *",
            "DBSIZE",
            "RANDOMKEY",
            "FLUSHDB",
            "DBSIZE",
            "RANDOMKEY"
        ]
    );
    // INFO goes to the local cluster only.
    assert_eq!(h.run(&["INFO"]), bulk("# Server\r\nfake"));
    assert_eq!(h.log("redis1").last().unwrap(), "INFO");
}

#[test]
fn scan_walks_every_shard_once() {
    let mut h = Harness::new();
    let mut all = BTreeSet::new();
    for i in 0..7 {
        for k in [format!("k{i}"), format!("user1:{i}"), format!("tmp:{i}")] {
            h.run(&["SET", &k, "v"]);
            all.insert(k);
        }
    }
    let mut seen = Vec::new();
    let mut cursor = "0".to_owned();
    let mut calls = 0;
    loop {
        let r = h.run(&["SCAN", &cursor, "COUNT", "2"]);
        let Frame::Array(v) = r else { panic!() };
        let Frame::BulkString(c) = &v[0] else {
            panic!()
        };
        let Frame::Array(keys) = &v[1] else { panic!() };
        for k in keys {
            let Frame::BulkString(k) = k else { panic!() };
            seen.push(String::from_utf8_lossy(k).into_owned());
        }
        cursor = String::from_utf8_lossy(c).into_owned();
        calls += 1;
        if cursor == "0" {
            break;
        }
        assert!(calls < 100);
    }
    let set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(set.len(), seen.len(), "no key twice");
    assert_eq!(set, all);
    // The server got its own cursors; COUNT passed through.
    assert_eq!(
        h.log("redis2")
            .iter()
            .filter(|l| l.starts_with("SCAN"))
            .count(),
        4
    );
    assert!(h.log("redis2").contains(&"SCAN 2 COUNT 2".to_owned()));
    assert_eq!(err_text(&h.run(&["SCAN", "x"])), "ERR invalid cursor");
    assert_eq!(
        h.run(&["SCAN", "4095"]),
        Frame::Array(vec![bulk("0"), Frame::Array(vec![])]),
        "index past the end"
    );
}

#[test]
fn local_commands_and_quit() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["PING"]), Frame::SimpleString("PONG".into()));
    assert_eq!(h.run(&["PING", "x"]), bulk("x"));
    // As Redis's pingCommand: at most one message (the table's arity is -1).
    assert_eq!(
        err_text(&h.run(&["PING", "x", "y"])),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(h.run(&["ECHO", "y"]), bulk("y"));
    assert!(h.fakes.is_empty(), "answered locally");
    // QUIT behind a pending request: +OK after its reply, then close.
    h.cmd(&["GET", "user1"]);
    h.cmd(&["QUIT"]);
    h.cmd(&["GET", "ignored"]);
    assert!(!h.closed);
    h.deliver();
    assert_eq!(h.replies(), vec![Frame::NullBulk, Frame::ok()]);
    assert!(!h.closed, "not in the callback that wrote the reply");
    let wake = *h.wakes.iter().min().unwrap();
    h.timeout(wake);
    assert!(h.closed);
    assert_eq!(h.log("redis1"), Vec::<String>::new());
    // QUIT with nothing pending closes at once (the host flushes first).
    let mut h = Harness::new();
    h.cmd(&["QUIT"]);
    assert!(h.closed);
    assert_eq!(h.replies(), vec![Frame::ok()]);
}

#[test]
fn multi_key_commands_need_one_shard() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SINTER", "user1:a", "{user1}b"]), Frame::ok());
    assert_eq!(h.log("redis2"), ["SINTER user1:a {user1}b"]);
    for c in [
        &["RENAME", "a", "user1"][..],
        &["SMOVE", "a", "tmp:b", "m"],
        &["LMOVE", "a", "user1", "LEFT", "RIGHT"],
        &["EVAL", "return 1", "2", "a", "user1"],
    ] {
        let e = err_text(&h.run(c));
        assert!(e.starts_with("CROSSSLOT Keys in request don't hash to the same slot (geomesh: they route to clusters"), "{e}");
    }
    assert_eq!(
        h.run(&["EVAL", "return 1", "2", "user1", "user1:x"]),
        Frame::ok()
    );
    assert_eq!(h.run(&["EVAL", "return 1", "0"]), Frame::ok());
    assert_eq!(
        h.log("redis1"),
        ["EVAL return 1 0"],
        "no keys: default cluster"
    );
}

#[test]
fn transactions_go_to_one_cluster() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["MULTI"]), Frame::ok());
    assert_eq!(
        h.run(&["SET", "user1:a", "1"]),
        Frame::SimpleString("QUEUED".into())
    );
    assert_eq!(
        h.run(&["GET", "user1:a"]),
        Frame::SimpleString("QUEUED".into())
    );
    assert_eq!(h.run(&["PING"]), Frame::SimpleString("QUEUED".into()));
    assert!(h.fakes.is_empty(), "buffered until EXEC");
    assert_eq!(
        h.run(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), bulk("1"), Frame::ok()])
    );
    assert_eq!(
        h.log("redis2"),
        ["MULTI", "SET user1:a 1", "GET user1:a", "PING", "EXEC"]
    );
    // Across shards: the command that crosses gets CROSSSLOT, EXEC aborts, nothing is sent.
    h.run(&["MULTI"]);
    h.run(&["SET", "a", "1"]);
    assert_eq!(
        err_text(&h.run(&["SET", "user1", "1"])),
        "CROSSSLOT Keys in request don't hash to the same slot (geomesh: they route to clusters redis1, redis2)"
    );
    assert_eq!(
        err_text(&h.run(&["EXEC"])),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert!(h.log("redis1").is_empty());
    // A queuing error aborts the transaction, as in Redis.
    h.run(&["MULTI"]);
    assert!(err_text(&h.run(&["GET"])).contains("wrong number of arguments"));
    h.run(&["SET", "a", "1"]);
    assert_eq!(
        err_text(&h.run(&["EXEC"])),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(err_text(&h.run(&["EXEC"])), "ERR EXEC without MULTI");
    assert_eq!(err_text(&h.run(&["DISCARD"])), "ERR DISCARD without MULTI");
    h.run(&["MULTI"]);
    assert_eq!(
        err_text(&h.run(&["MULTI"])),
        "ERR MULTI calls can not be nested"
    );
    assert!(err_text(&h.run(&["SUBSCRIBE", "x"])).contains("not supported inside MULTI"));
    assert_eq!(
        err_text(&h.run(&["EXEC"])),
        "EXECABORT Transaction discarded because of previous errors."
    );
    // WATCH pins the cluster.
    assert_eq!(h.run(&["WATCH", "tmp:a"]), Frame::ok());
    assert!(err_text(&h.run(&["WATCH", "a"])).contains("already watches keys on redis3"));
    h.run(&["MULTI"]);
    h.run(&["INCR", "tmp:n"]);
    h.run(&["TIME"]);
    assert_eq!(
        h.run(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::ok()])
    );
    assert_eq!(
        h.log("redis3"),
        ["WATCH tmp:a", "MULTI", "INCR tmp:n", "TIME", "EXEC"],
        "keyless: the transaction's cluster"
    );
    // A broadcast cannot run inside one cluster's transaction.
    h.run(&["MULTI"]);
    assert!(err_text(&h.run(&["DBSIZE"])).contains("it runs on every cluster"));
    h.run(&["DISCARD"]);
    // DISCARD unwatches.
    h.run(&["WATCH", "user1"]);
    h.run(&["MULTI"]);
    assert_eq!(h.run(&["DISCARD"]), Frame::ok());
    assert_eq!(h.log("redis2").last().unwrap(), "UNWATCH");
    // A WATCH whose connection went away makes EXEC fail as a watched change does.
    h.run(&["WATCH", "user1"]);
    h.close_upstream("redis2", UpstreamFailureKind::Eof, "");
    h.run(&["MULTI"]);
    h.run(&["SET", "user1", "x"]);
    assert_eq!(h.run(&["EXEC"]), Frame::NullArray);
}

#[test]
fn session_state_is_applied_to_open_connections_and_replayed_on_new_ones() {
    let mut h = Harness::new();
    h.run(&["SET", "user1", "x"]); // opens redis2
    assert_eq!(h.run(&["SELECT", "3"]), Frame::ok());
    assert_eq!(h.log("redis1"), ["SELECT 3"]);
    assert_eq!(h.log("redis2"), ["SET user1 x", "SELECT 3"]);
    assert_eq!(h.fake("redis2").conn.db, 3);
    h.run(&["CLIENT", "SETNAME", "me"]);
    // A new connection (redis3) gets the state first.
    h.run(&["GET", "tmp:1"]);
    assert_eq!(
        h.log("redis3"),
        ["CLIENT SETNAME me", "SELECT 3", "GET tmp:1"]
    );
    // A refused SELECT is not stored.
    assert_eq!(
        err_text(&h.run(&["SELECT", "99"])),
        "ERR DB index is out of range"
    );
    h.close_upstream("redis3", UpstreamFailureKind::Eof, "");
    h.run(&["GET", "tmp:1"]);
    assert_eq!(
        &h.log("redis3")[4..],
        ["CLIENT SETNAME me", "SELECT 3", "GET tmp:1"]
    );
}

#[test]
fn auth_is_replayed_and_disagreement_names_the_cluster() {
    let mut h = Harness::new();
    for n in ["redis1", "redis2", "redis3"] {
        h.fake(n).password = Some(b"pw".to_vec());
    }
    h.fake("redis3").password = Some(b"other".to_vec());
    assert!(err_text(&h.run(&["GET", "a"])).starts_with("NOAUTH"));
    assert_eq!(
        err_text(&h.run(&["AUTH", "bad"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(h.run(&["AUTH", "default", "pw"]), Frame::ok());
    assert_eq!(
        h.run(&["SET", "user1", "1"]),
        Frame::ok(),
        "AUTH replayed on redis2"
    );
    assert_eq!(h.log("redis2"), ["AUTH default pw", "SET user1 1"]);
    // redis3 refuses the replayed AUTH: the request behind it gets no answer produced without
    // the session's state, and the connection is reset.
    let e = err_text(&h.run(&["GET", "tmp:1"]));
    assert_eq!(e, "ERR geomesh: cluster redis3: refused the session's AUTH: WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(h.closed_upstreams, [h.id("redis3")]);
    // A state command an open connection refuses: the local reply is the client's, the
    // refusing connection is reset, the requests behind the command on it fail.
    h.fake("redis2").password = Some(b"new".to_vec());
    h.cmd(&["AUTH", "default", "pw"]);
    h.cmd(&["GET", "user1"]);
    h.deliver();
    let r = h.replies();
    assert_eq!(r[0], Frame::ok());
    assert_eq!(err_text(&r[1]), "ERR geomesh: cluster redis2: refused AUTH: WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(h.closed_upstreams, [h.id("redis3"), h.id("redis2")]);
}

#[test]
fn a_state_command_one_connection_refuses_resets_that_connection() {
    let mut h = Harness::new();
    h.fake("redis2").databases = 4;
    assert_eq!(h.run(&["SET", "user1", "x"]), Frame::ok()); // opens redis2
    assert_eq!(h.run(&["SET", "a", "y"]), Frame::ok()); // opens redis1 (local)
                                                        // Local accepts SELECT 5, redis2 refuses it. The client is told OK (the local reply); the
                                                        // GET pipelined behind it on redis2 ran in DB 0 there: it fails rather than answer.
    h.cmd(&["SELECT", "5"]);
    h.cmd(&["GET", "user1"]);
    h.cmd(&["GET", "a"]);
    h.deliver();
    let r = h.replies();
    assert_eq!(r[0], Frame::ok());
    assert_eq!(
        err_text(&r[1]),
        "ERR geomesh: cluster redis2: refused SELECT: ERR DB index is out of range"
    );
    assert_eq!(r[2], bulk("y"), "redis1 is in DB 5 and answers");
    assert_eq!(h.fake("redis1").conn.db, 5);
    assert_eq!(h.closed_upstreams, [h.id("redis2")]);
    // The same with the servers answering in the other order (redis2 before the local
    // cluster): the reply redis2 gave in DB 0 must not leave either.
    let mut h2 = Harness::new();
    h2.fake("redis2").databases = 4;
    h2.run(&["SET", "user1", "x"]);
    h2.run(&["SET", "a", "y"]);
    h2.cmd(&["SELECT", "5"]);
    h2.cmd(&["GET", "user1"]);
    h2.deliver_with(usize::MAX, true);
    let r = h2.replies();
    assert_eq!(r[0], Frame::ok());
    assert_eq!(
        err_text(&r[1]),
        "ERR geomesh: cluster redis2: refused SELECT: ERR DB index is out of range"
    );
    // The state stays stored: a new connection replays it, and refuses it again.
    let e = err_text(&h.run(&["GET", "user1"]));
    assert_eq!(
        e,
        "ERR geomesh: cluster redis2: refused the session's SELECT: ERR DB index is out of range"
    );
    assert_eq!(&h.log("redis2")[3..], ["SELECT 5", "GET user1"]);
    // A state redis2 accepts: it works there again.
    assert_eq!(h.run(&["SELECT", "2"]), Frame::ok());
    assert_eq!(h.run(&["GET", "user1"]), bulk("x"));
    assert_eq!(h.fake("redis2").conn.db, 2);

    // The other way round: the local cluster refuses, an open connection accepted. The client
    // gets the local error, the state is not stored, redis2 is reset and reopened with the
    // state as it was (SELECT 2).
    let mut h = Harness::new();
    h.fake("redis1").databases = 4;
    h.run(&["SET", "user1", "x"]);
    h.run(&["SELECT", "2"]);
    h.cmd(&["SELECT", "7"]);
    h.cmd(&["GET", "user1"]);
    h.deliver();
    let r = h.replies();
    assert_eq!(err_text(&r[0]), "ERR DB index is out of range");
    assert_eq!(
        err_text(&r[1]),
        "ERR geomesh: cluster redis2: connection reset: it accepted SELECT, which failed on the local cluster"
    );
    assert_eq!(h.closed_upstreams, [h.id("redis2")]);
    assert_eq!(h.run(&["GET", "user1"]), bulk("x"));
    assert_eq!(h.fake("redis2").conn.db, 2);
    assert_eq!(h.fake("redis1").conn.db, 2);

    // No reply from the local cluster in time: the command fails, is rolled back, and the
    // connections that accepted it or may still apply it (the stalled one) are reset.
    let mut h = Harness::new();
    h.run(&["SET", "user1", "x"]);
    h.run(&["SET", "a", "y"]);
    h.fake("redis1").stalled = true;
    h.cmd(&["SELECT", "3"]);
    h.deliver();
    h.timeout(h.now + 1_200);
    let r = h.replies();
    assert!(err_text(&r[0]).contains("no reply within"), "{r:?}");
    assert_eq!(h.closed_upstreams, [h.id("redis1"), h.id("redis2")]);
    h.fake("redis1").stalled = false;
    h.fake("redis1").held.clear();
    h.run(&["GET", "user1"]);
    assert_eq!(
        h.fake("redis2").conn.db,
        0,
        "reopened without the failed SELECT"
    );
}

#[test]
fn a_local_connection_opened_by_a_state_command_gets_the_rest_of_the_state_in_order() {
    let mut h = Harness::new();
    for n in ["redis1", "redis2", "redis3"] {
        h.fake(n).password = Some(b"pw".to_vec());
    }
    // The first command: AUTH is sent once, its own reply (not a replay's) answers.
    assert_eq!(
        err_text(&h.run(&["AUTH", "nope"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(h.run(&["AUTH", "pw"]), Frame::ok());
    assert_eq!(h.run(&["SELECT", "3"]), Frame::ok());
    assert_eq!(h.log("redis1"), ["AUTH nope", "AUTH pw", "SELECT 3"]);
    // Local connection lost; the next state command opens it: AUTH (stored) first, then the
    // command, then the state that comes after it in replay order.
    h.close_upstream("redis1", UpstreamFailureKind::Eof, "");
    assert_eq!(h.run(&["CLIENT", "SETNAME", "me"]), Frame::ok());
    assert_eq!(
        &h.log("redis1")[3..],
        ["AUTH pw", "CLIENT SETNAME me", "SELECT 3"]
    );
    // A new password: AUTH opens the connection without replaying the old one.
    h.close_upstream("redis1", UpstreamFailureKind::Eof, "");
    h.fake("redis1").password = Some(b"pw2".to_vec());
    assert_eq!(h.run(&["AUTH", "pw2"]), Frame::ok());
    assert_eq!(
        &h.log("redis1")[6..],
        ["AUTH pw2", "CLIENT SETNAME me", "SELECT 3"]
    );
    // RESET opens without any replay.
    h.close_upstream("redis1", UpstreamFailureKind::Eof, "");
    h.run(&["RESET"]);
    assert_eq!(&h.log("redis1")[9..], ["RESET"]);
}

#[test]
fn hello_3_switches_the_session_to_resp3() {
    let mut h = Harness::new();
    h.run(&["SET", "user1", "x"]);
    let r = h.run(&["HELLO", "3", "SETNAME", "py"]);
    assert!(matches!(r, Frame::Map(_)), "{r:?}");
    assert_eq!(h.s.protocol(), Protocol::Resp3);
    assert_eq!(h.log("redis2").last().unwrap(), "HELLO 3 SETNAME py");
    // Merged replies now carry RESP3 nulls from the servers; our own nulls too.
    assert_eq!(
        h.run(&["MGET", "user1", "nope"]),
        Frame::Array(vec![bulk("x"), Frame::Null])
    );
    assert_eq!(h.run(&["GET", "nope"]), Frame::Null);
    h.run(&["FLUSHALL"]);
    assert_eq!(h.run(&["RANDOMKEY"]), Frame::Null);
    // Replayed as parts on a new connection.
    h.run(&["GET", "tmp:x"]);
    assert_eq!(
        h.log("redis3"),
        [
            "HELLO 3",
            "CLIENT SETNAME py",
            "FLUSHALL",
            "RANDOMKEY",
            "GET tmp:x"
        ]
    );
    assert!(h.fake("redis3").conn.resp3);
    // Unsupported versions: the server's NOPROTO, the session stays in RESP3.
    assert!(err_text(&h.run(&["HELLO", "4"])).starts_with("NOPROTO"));
    assert_eq!(h.s.protocol(), Protocol::Resp3);
    // RESET goes back to RESP2 and forgets the state.
    h.run(&["RESET"]);
    assert_eq!(h.s.protocol(), Protocol::Resp2);
    h.close_upstream("redis3", UpstreamFailureKind::Eof, "");
    h.run(&["GET", "tmp:x"]);
    assert_eq!(h.log("redis3").last().unwrap(), "GET tmp:x");
    assert_eq!(h.log("redis3")[h.log("redis3").len() - 2], "RESET");
}

#[test]
fn pubsub_fans_out_and_in() {
    let mut h = Harness::new();
    let r = {
        h.cmd(&["SUBSCRIBE", "news", "alerts"]);
        h.deliver();
        h.replies()
    };
    let conf =
        |kind: &str, ch: &str, n: i64| Frame::Array(vec![bulk(kind), bulk(ch), Frame::Integer(n)]);
    assert_eq!(
        r,
        vec![conf("subscribe", "news", 1), conf("subscribe", "alerts", 2)]
    );
    // A channel is listened to where its messages can be published: the default cluster
    // (no key route matches) and redis2 (the value route `alert`); not redis3.
    for n in ["redis1", "redis2"] {
        assert_eq!(h.log(n), ["SUBSCRIBE news alerts"], "{n}");
    }
    assert!(h.log("redis3").is_empty());
    // Subscribed (RESP2): only pub/sub commands; PING answers the pub/sub way.
    assert!(err_text(&h.run(&["GET", "a"])).starts_with("ERR Can't execute 'get'"));
    assert_eq!(h.run(&["PING"]), arr(&["pong", ""]));
    assert_eq!(
        err_text(&h.run(&["PING", "a", "b"])),
        "ERR wrong number of arguments for 'ping' command"
    );
    // Messages published on the servers are fanned in.
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("news"),
        bulk("hello"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    assert_eq!(h.replies(), vec![arr(&["message", "news", "hello"])]);
    assert_eq!(h.run(&["PSUBSCRIBE", "n*"]), conf("psubscribe", "n*", 3));
    let r = {
        h.cmd(&["UNSUBSCRIBE"]);
        h.deliver();
        h.replies()
    };
    assert_eq!(
        r,
        vec![
            conf("unsubscribe", "alerts", 2),
            conf("unsubscribe", "news", 1)
        ]
    );
    assert_eq!(h.log("redis1").last().unwrap(), "UNSUBSCRIBE alerts news");
    assert_eq!(h.log("redis3"), ["PSUBSCRIBE n*"], "patterns go everywhere");
    h.run(&["PUNSUBSCRIBE", "n*"]);
    assert_eq!(
        h.run(&["UNSUBSCRIBE"]),
        Frame::Array(vec![
            bulk("unsubscribe"),
            Frame::NullBulk,
            Frame::Integer(0)
        ])
    );
    // Out of subscribed mode.
    assert_eq!(h.run(&["GET", "a"]), Frame::NullBulk);
}

#[test]
fn pubsub_counts_a_subscription_once_though_it_is_on_several_clusters() {
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    // `news` is listened to on redis1 and redis2, `n*` on every cluster: a sum would say
    // 2 subscribers and 3 patterns for this one client (Redis: 1 and 1).
    h.cmd(&["SUBSCRIBE", "news"]);
    h.cmd(&["PSUBSCRIBE", "n*"]);
    h.deliver();
    assert_eq!(h.replies().len(), 2);
    assert_eq!(
        h.run(&["PUBSUB", "NUMSUB", "news", "other"]),
        Frame::Array(vec![
            bulk("news"),
            Frame::Integer(1),
            bulk("other"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(h.run(&["PUBSUB", "NUMPAT"]), Frame::Integer(1));
    for n in ["redis1", "redis2", "redis3"] {
        assert_eq!(h.log(n).last().unwrap(), "PUBSUB NUMPAT", "{n}");
    }
}

#[test]
fn a_channel_is_subscribed_where_its_messages_can_be_published() {
    let mut h = Harness::new();
    // `user1:chan`: the key route user1 (redis2); the value route `alert` is not longer than
    // `user1`, so a message on this channel always goes to redis2, whatever its payload.
    // `tmp:x`: the prefix route `tmp:` (redis3), beaten by the longer value route `alert`
    // (redis2) when the payload matches. `other`: default (redis1) or `alert`.
    h.cmd(&["SUBSCRIBE", "user1:chan", "tmp:x", "other"]);
    h.deliver();
    assert_eq!(h.replies().len(), 3);
    assert_eq!(h.log("redis2"), ["SUBSCRIBE user1:chan tmp:x other"]);
    assert_eq!(h.log("redis3"), ["SUBSCRIBE tmp:x"]);
    assert_eq!(h.log("redis1"), ["SUBSCRIBE other"]);
    for ch in ["user1:chan", "tmp:x", "other"] {
        let mut want: Vec<ClusterId> = h.table.message_clusters(ch.as_bytes());
        want.sort();
        let mut got: Vec<ClusterId> = ["redis1", "redis2", "redis3"]
            .iter()
            .filter(|n| h.fakes[&h.id(n)].conn.subs.contains(ch.as_bytes()))
            .map(|n| h.id(n))
            .collect();
        got.sort();
        assert_eq!(got, want, "{ch}");
        // route_message always lands in the set.
        for payload in ["", "alert!", "x"] {
            let c = h
                .table
                .route_message(Some(ch.as_bytes()), Some(payload.as_bytes()));
            assert!(want.contains(&c), "{ch} {payload}");
        }
    }
    // Subscribing again sends nothing new; the confirmation still comes.
    let r = h.run(&["SUBSCRIBE", "other"]);
    assert_eq!(
        r,
        Frame::Array(vec![bulk("subscribe"), bulk("other"), Frame::Integer(3)])
    );
    assert_eq!(h.log("redis1"), ["SUBSCRIBE other"]);
}

#[test]
fn losing_a_connection_that_carries_subscriptions_closes_the_client() {
    let mut h = Harness::new();
    h.cmd(&["SUBSCRIBE", "user1:chan"]);
    h.deliver();
    h.replies();
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("user1:chan"),
        bulk("m1"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    assert_eq!(h.replies(), vec![arr(&["message", "user1:chan", "m1"])]);
    assert!(!h.closed);
    // Another cluster going away does not matter.
    h.run(&["PING"]);
    h.close_upstream("redis3", UpstreamFailureKind::Eof, "");
    assert!(!h.closed);
    // The one carrying the subscription: what was received is delivered, then the close.
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("user1:chan"),
        bulk("m2"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    h.close_upstream("redis2", UpstreamFailureKind::Eof, "");
    assert!(h.closed, "the client must reconnect and resubscribe");
    assert_eq!(h.replies(), vec![arr(&["message", "user1:chan", "m2"])]);
    // Nothing more is read or written.
    h.cmd(&["PING"]);
    assert!(h.replies().is_empty());

    // Unsubscribed first: losing the connection is an ordinary loss.
    let mut h = Harness::new();
    h.run(&["SUBSCRIBE", "user1:chan"]);
    h.run(&["UNSUBSCRIBE", "user1:chan"]);
    h.close_upstream("redis2", UpstreamFailureKind::Eof, "");
    assert!(!h.closed);
    assert_eq!(h.run(&["GET", "user1"]), Frame::NullBulk);

    // RESP3, a subscription and requests in flight on the lost connection: they are answered
    // (errors) before the close.
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    h.run(&["SSUBSCRIBE", "user1:s"]);
    h.fake("redis2").stalled = true;
    h.cmd(&["GET", "user1"]);
    h.deliver();
    h.close_upstream("redis2", UpstreamFailureKind::Refused, "");
    assert!(h.closed);
    let r = h.replies();
    assert!(
        err_text(&r[0]).starts_with("ERR geomesh: cluster redis2: "),
        "{r:?}"
    );
}

#[test]
fn publish_routes_by_channel_and_payload() {
    let mut h = Harness::new();
    h.run(&["PUBLISH", "sensors", "temperature 20C"]);
    h.run(&["PUBLISH", "sensors", "temperature alert: 90C"]);
    h.run(&["PUBLISH", "user1", "x"]);
    assert_eq!(h.log("redis1"), ["PUBLISH sensors temperature 20C"]);
    assert_eq!(
        h.log("redis2"),
        ["PUBLISH sensors temperature alert: 90C", "PUBLISH user1 x"]
    );
}

#[test]
fn resp3_pushes_pass_between_replies() {
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    h.cmd(&["SUBSCRIBE", "ch"]);
    h.deliver();
    let r = h.replies();
    assert_eq!(
        r,
        vec![Frame::Push(vec![
            bulk("subscribe"),
            bulk("ch"),
            Frame::Integer(1)
        ])]
    );
    // RESP3: other commands are allowed while subscribed; a message published on the same
    // connection arrives as a push before the PUBLISH reply.
    assert_eq!(h.run(&["SET", "a", "1"]), Frame::ok());
    h.cmd(&["PUBLISH", "ch", "m"]);
    h.deliver();
    assert_eq!(
        h.replies(),
        vec![
            Frame::Push(vec![bulk("message"), bulk("ch"), bulk("m")]),
            Frame::Integer(1)
        ]
    );
}

#[test]
fn a_stalled_shard_times_out_and_others_are_unaffected() {
    let mut h = Harness::new();
    h.fake("redis2").stalled = true;
    let t0 = h.now;
    h.cmd(&["SET", "a", "1"]);
    h.cmd(&["GET", "user1"]);
    h.cmd(&["MGET", "a", "user1"]);
    h.cmd(&["GET", "a"]);
    h.deliver();
    assert_eq!(
        h.replies(),
        vec![Frame::ok()],
        "the head is written, the rest waits behind GET user1"
    );
    let wake = *h.wakes.iter().max().unwrap();
    assert!(wake >= t0 + 1000 && wake <= t0 + 1000 + 50, "{wake}");
    h.timeout(t0 + 999);
    assert!(h.replies().is_empty());
    h.timeout(wake);
    let r = h.replies();
    assert_eq!(r.len(), 3);
    assert_eq!(
        err_text(&r[0]),
        "ERR geomesh: cluster redis2: no reply within 1000 ms"
    );
    assert_eq!(
        err_text(&r[1]),
        "ERR geomesh: cluster redis2: no reply within 1000 ms"
    );
    assert_eq!(r[2], bulk("1"));
    // The late replies are discarded; the connection keeps working in order.
    let f = h.fake("redis2");
    f.stalled = false;
    let held = std::mem::take(&mut f.held);
    f.out.extend(held);
    h.deliver();
    assert!(h.replies().is_empty());
    assert_eq!(h.run(&["GET", "user1"]), Frame::NullBulk);
}

#[test]
fn blocking_commands_get_their_timeout_on_top() {
    let mut h = Harness::new();
    h.fake("redis2").stalled = true;
    let t0 = h.now;
    h.cmd(&["BLPOP", "user1", "2.5"]);
    let wake = *h.wakes.iter().max().unwrap();
    assert!(wake >= t0 + 3500, "{wake}");
    h.timeout(t0 + 3000);
    assert!(h.replies().is_empty());
    h.timeout(wake);
    assert_eq!(
        err_text(&h.replies()[0]),
        "ERR geomesh: cluster redis2: no reply within 3500 ms"
    );
    let n = h.wakes.len();
    h.cmd(&["BLPOP", "user1", "0"]);
    assert_eq!(
        h.wakes.len(),
        n,
        "no deadline for a command that blocks forever"
    );
    let mut h = Harness::new();
    assert!(err_text(&h.run(&["BLPOP", "a", "user1", "0"])).starts_with("CROSSSLOT"));
    assert_eq!(
        err_text(&h.run(&["BLPOP", "a", "x"])),
        "ERR timeout is not a float or out of range"
    );
}

#[test]
fn a_closed_shard_fails_its_requests_and_reopens() {
    let mut h = Harness::new();
    h.run(&["SELECT", "2"]);
    h.fake("redis2").stalled = true;
    h.cmd(&["GET", "user1"]);
    h.cmd(&["GET", "a"]);
    h.deliver();
    h.close_upstream(
        "redis2",
        UpstreamFailureKind::Refused,
        "127.0.0.1:1: connection refused",
    );
    h.deliver();
    let r = h.replies();
    assert_eq!(
        err_text(&r[0]),
        "ERR geomesh: cluster redis2: connection refused: 127.0.0.1:1: connection refused"
    );
    assert_eq!(r[1], Frame::NullBulk);
    h.fake("redis2").stalled = false;
    assert_eq!(h.run(&["GET", "user1"]), Frame::NullBulk);
    assert_eq!(
        &h.log("redis2")[2..],
        ["SELECT 2", "GET user1"],
        "state replayed on the new connection"
    );
}

#[test]
fn malformed_client_bytes_close_the_connection() {
    let mut h = Harness::new();
    h.send(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$x\r\n");
    assert!(h.closed);
    let r = h.replies();
    assert_eq!(r[0], Frame::SimpleString("PONG".into()));
    assert!(err_text(&r[1]).starts_with("ERR Protocol error"), "{r:?}");
    for bad in [
        &b"*1\r\n$536870912\r\n"[..],
        &"*1\r\n".repeat(10_000).into_bytes(),
    ] {
        let mut h = Harness::new();
        h.send(bad);
        assert!(h.closed);
        assert!(err_text(&h.replies()[0]).starts_with("ERR Protocol error"));
    }
}

#[test]
fn malformed_server_bytes_fail_that_cluster_only() {
    let mut h = Harness::new();
    h.fake("redis2").stalled = true;
    h.cmd(&["GET", "user1"]);
    h.cmd(&["GET", "a"]);
    h.fake("redis2").out.extend(b"?garbage\r\n");
    h.deliver();
    let r = h.replies();
    assert!(
        err_text(&r[0]).starts_with("ERR geomesh: cluster redis2: protocol error"),
        "{r:?}"
    );
    assert_eq!(r[1], Frame::NullBulk);
    assert_eq!(h.closed_upstreams, [h.id("redis2")]);
    assert!(!h.closed);
    // An unexpected reply (nobody waiting) is a desync too.
    h.fake("redis1").out.extend(b"+OK\r\n");
    h.deliver();
    assert_eq!(h.closed_upstreams.len(), 2);
}

#[test]
fn unsupported_and_unknown_commands_keep_the_connection() {
    let mut h = Harness::new();
    assert_eq!(
        err_text(&h.run(&["MONITOR"])),
        "ERR geomesh: MONITOR is not supported through the sharding proxy: MONITOR streams the traffic of one server: connect to it directly"
    );
    assert!(err_text(&h.run(&["CONFIG", "SET", "a", "b"]))
        .starts_with("ERR geomesh: CONFIG SET is not supported"));
    assert_eq!(
        err_text(&h.run(&["NOPE", "x"])),
        "ERR unknown command 'NOPE', with args beginning with: 'x' "
    );
    assert_eq!(h.run(&["PING"]), Frame::SimpleString("PONG".into()));
    assert!(!h.closed);
}

#[test]
fn a_new_table_routes_new_requests_in_flight_ones_keep_their_cluster() {
    let mut h = Harness::new();
    h.fake("redis2").stalled = true;
    h.cmd(&["SET", "user1", "old"]);
    let cfg = Config::parse(
        b"workload_type: redis\ndefault_cluster: redis1\nrouting_table:\n  user1: redis3\n",
    )
    .unwrap();
    let t2 = Rc::new(RoutingTable::succeed(&cfg, &h.table).unwrap());
    h.s.on_new_table(t2.clone());
    h.cmd(&["SET", "user1", "new"]);
    let f = h.fake("redis2");
    f.stalled = false;
    let held = std::mem::take(&mut f.held);
    f.out.extend(held);
    h.deliver();
    assert_eq!(h.replies(), vec![Frame::ok(), Frame::ok()]);
    assert_eq!(
        h.fake("redis2").db.get(&b"user1"[..]),
        Some(&b"old".to_vec())
    );
    assert_eq!(
        h.fake("redis3").db.get(&b"user1"[..]),
        Some(&b"new".to_vec())
    );
}

#[test]
fn too_many_pending_requests_get_an_error() {
    let mut h = Harness::with(
        TABLE,
        Settings {
            max_pending_requests: 3,
            ..Settings::default()
        },
    );
    h.fake("redis1").stalled = true;
    for _ in 0..4 {
        h.cmd(&["GET", "a"]);
    }
    h.timeout(h.now + 2000);
    let r = h.replies();
    assert_eq!(r.len(), 4);
    assert!(err_text(&r[3]).contains("too many requests"), "{r:?}");
}

/// Cost of the hot path, natively: `cargo test --release -p geomesh-redis --lib hot_path -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run explicitly (see the doc comment)"]
fn hot_path_cost() {
    let yaml = "workload_type: redis\ndefault_cluster: a\nrouting_table:\n  '*': { type: hash, clusters: [a, b] }\n";
    let t = table(yaml);
    let mut s = RedisSession::new(t.clone(), 5000, &Settings::default());
    let mut get = Vec::new();
    crate::write_command(&mut get, [&b"GET"[..], b"key:000000000123"]);
    let mut mget = Vec::new();
    crate::write_command(
        &mut mget,
        (0..11)
            .map(|i| {
                if i == 0 {
                    b"MGET".to_vec()
                } else {
                    format!("k{i}:00000000012{i}").into_bytes()
                }
            })
            .collect::<Vec<_>>(),
    );
    for (name, req) in [("GET", &get), ("MGET10", &mget)] {
        let n = 200_000u64;
        let t0 = std::time::Instant::now();
        let mut out = Vec::new();
        for i in 0..n {
            out.clear();
            s.on_downstream(req, i, &mut out);
            let sends: Vec<(ClusterId, usize)> = out
                .iter()
                .filter_map(|a| match a {
                    Action::Send { cluster, bytes } => {
                        Some((*cluster, bytes.iter().filter(|b| **b == b'$').count() - 1))
                    }
                    _ => None,
                })
                .collect();
            for (c, nkeys) in sends {
                let reply: Vec<u8> = if name == "GET" {
                    b"$3\r\nxxx\r\n".to_vec()
                } else {
                    let mut r = format!("*{nkeys}\r\n").into_bytes();
                    for _ in 0..nkeys {
                        r.extend_from_slice(b"$3\r\nxxx\r\n");
                    }
                    r
                };
                out.clear();
                s.on_upstream(c, &reply, i, &mut out);
            }
        }
        let dt = t0.elapsed();
        println!(
            "{name}: {:.0} ns per request (both directions)",
            dt.as_nanos() as f64 / n as f64
        );
    }
}
