//! Against a real redis-server (Debian's 7.0 here): the codec decodes what Redis sends (every
//! RESP3 type via DEBUG PROTOCOL, pushes, big nested replies), Redis agrees with how we split
//! inline commands, and the command table agrees with `COMMAND INFO` and `COMMAND GETKEYS`.
//!
//! Needs `redis-server` on PATH (apt install redis-server); the test fails without it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use geomesh_redis::commands::{self, BeginSearch, FindKeys, KeySpec};
use geomesh_redis::{BytesMut, Command, Kind, Reply, ReplyDecoder, Value};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts a server on a free port. The port is picked by binding port 0 and released before
    /// redis-server binds it, so another process can take it in between (tests run in parallel
    /// with other suites): a server that exits, or a port that answers without being ours, means
    /// another port is tried.
    fn start() -> Server {
        for _ in 0..5 {
            if let Some(server) = Server::try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    fn try_start() -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Process::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt install redis-server)");
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.child.try_wait().ok().flatten().is_some() {
                return None; // exited: the port was taken
            }
            // The server on the port is ours (another test's may hold it: ours then exits).
            if serves_pid(port, server.child.id()) {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None // dropped: killed
    }

    fn connect(&self) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            s,
            buf: BytesMut::new(),
            dec: ReplyDecoder::default(),
            chunk: 1 << 16,
        }
    }
}

/// Whether the Redis server answering on `port` is process `pid` (its `INFO server` says so).
fn serves_pid(port: u16, pid: u32) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    let want = format!("process_id:{pid}\r\n");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The bulk reply is a few KiB; read until the field shows or the reply stops.
    while seen.len() < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.windows(want.len()).any(|w| w == want.as_bytes()) {
            return true;
        }
    }
    false
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    s: TcpStream,
    buf: BytesMut,
    dec: ReplyDecoder,
    /// Bytes read per `read` call (1 = the decoder sees one byte at a time).
    chunk: usize,
}

impl Conn {
    fn send(&mut self, args: &[&str]) {
        self.s.write_all(Command::new(args).raw()).unwrap();
    }

    fn read(&mut self) -> Reply {
        let mut tmp = vec![0u8; self.chunk];
        loop {
            if let Some(r) = self.dec.decode(&mut self.buf).unwrap() {
                return r;
            }
            let n = self.s.read(&mut tmp).unwrap();
            assert!(n > 0, "server closed");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn call(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read()
    }
}

fn text(v: Value<'_>) -> String {
    String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned()
}

/// A RESP3 map entry by (string) key.
fn entry<'a>(map: Value<'a>, key: &str) -> Option<Value<'a>> {
    let mut it = map.elements();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if text(k) == key {
            return Some(v);
        }
    }
    None
}

#[test]
fn every_resp3_type_from_a_real_server() {
    let server = Server::start();
    let mut c = server.connect();
    c.chunk = 1; // one byte per read: the decoder resumes across every split
    let hello = c.call(&["HELLO", "3"]);
    assert_eq!(hello.root().kind(), Kind::Map);
    assert_eq!(
        entry(hello.root(), "proto").and_then(|v| v.as_integer()),
        Some(3)
    );
    let cases = [
        ("string", Kind::BulkString),
        ("integer", Kind::Integer),
        ("double", Kind::Double),
        ("bignum", Kind::BigNumber),
        ("null", Kind::Null),
        ("array", Kind::Array),
        ("set", Kind::Set),
        ("map", Kind::Map),
        ("push", Kind::Push),
        ("verbatim", Kind::Verbatim),
        ("true", Kind::Boolean),
        ("false", Kind::Boolean),
    ];
    for (name, kind) in cases {
        let r = c.call(&["DEBUG", "PROTOCOL", name]);
        assert_eq!(r.root().kind(), kind, "DEBUG PROTOCOL {name}: {r:?}");
        if name == "push" {
            // Redis follows the push with the command's own reply.
            assert!(r.is_push());
            assert_eq!(c.read().root().kind(), Kind::BulkString);
        }
    }
    let r = c.call(&["DEBUG", "PROTOCOL", "attrib"]);
    assert!(r.root().attributes().is_some(), "{r:?}");
    assert_eq!(
        c.call(&["DEBUG", "PROTOCOL", "true"]).root().as_bool(),
        Some(true)
    );
    assert_eq!(
        c.call(&["DEBUG", "PROTOCOL", "verbatim"])
            .root()
            .verbatim_format(),
        Some(&b"txt"[..])
    );
    // The same in RESP2: the nulls differ.
    c.call(&["HELLO", "2"]);
    assert_eq!(c.call(&["GET", "nope"]).root().kind(), Kind::NullBulk);
    assert_eq!(
        c.call(&["DEBUG", "PROTOCOL", "null"]).root().kind(),
        Kind::NullBulk
    );
}

#[test]
fn resp3_pushes_and_pipelines() {
    let server = Server::start();
    let mut sub = server.connect();
    sub.call(&["HELLO", "3"]);
    let r = sub.call(&["SUBSCRIBE", "alerts"]);
    assert!(r.is_push());
    let mut publisher = server.connect();
    assert_eq!(
        publisher
            .call(&["PUBLISH", "alerts", "fire"])
            .root()
            .as_integer(),
        Some(1)
    );
    let m = sub.read();
    assert!(m.is_push());
    let parts: Vec<String> = m.root().elements().map(text).collect();
    assert_eq!(parts, ["message", "alerts", "fire"]);

    // 1000 pipelined commands in one write; replies decoded in order.
    let mut wire = Vec::new();
    for i in 0..1000 {
        wire.extend_from_slice(Command::new(["SET", &format!("k{i}"), &format!("v{i}")]).raw());
        wire.extend_from_slice(Command::new(["GET", &format!("k{i}")]).raw());
    }
    publisher.s.write_all(&wire).unwrap();
    for i in 0..1000 {
        assert_eq!(publisher.read().root().as_bytes(), Some(&b"OK"[..]));
        assert_eq!(text(publisher.read().root()), format!("v{i}"));
    }
    // A big nested reply: COMMAND (every command's description).
    let r = publisher.call(&["COMMAND"]);
    assert!(r.root().len() >= 200);
    assert!(r.node_count() > 5000);
}

#[test]
fn redis_splits_inline_commands_as_we_do() {
    let server = Server::start();
    let mut c = server.connect();
    let lines: [&[u8]; 5] = [
        b"ECHO \"a\\x41\\n\\t\\\"b\"\r\n",
        b"ECHO 'it\\'s'\r\n",
        b"ECHO a\"b c\"\r\n",
        b"  ECHO    spaced   \n",
        b"ECHO \"\"\r\n",
    ];
    for line in lines {
        let mut buf = BytesMut::from(line);
        let ours = geomesh_redis::RequestDecoder::default()
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        c.s.write_all(line).unwrap();
        let r = c.read();
        assert_eq!(
            r.root().as_bytes(),
            ours.arg(1),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // An unbalanced quote: Redis answers a protocol error and closes; we refuse too.
    let line = b"ECHO \"abc\r\n";
    let mut buf = BytesMut::from(&line[..]);
    assert!(geomesh_redis::RequestDecoder::default()
        .decode(&mut buf)
        .is_err());
    c.s.write_all(line).unwrap();
    let r = c.read();
    assert!(r.is_error());
    assert!(text(r.root()).contains("unbalanced quotes"), "{r:?}");
}

/// Our key specs, in the shape COMMAND INFO reports them.
fn our_specs(spec: &commands::CommandSpec) -> Vec<String> {
    spec.keys
        .iter()
        .filter_map(|k| match k {
            KeySpec::SortStore => None,
            KeySpec::Search { begin, find } => {
                let b = match begin {
                    BeginSearch::Index(i) => format!("index {i}"),
                    BeginSearch::Keyword {
                        keyword,
                        start_from,
                    } => {
                        format!("keyword {keyword} {start_from}")
                    }
                };
                let f = match find {
                    FindKeys::Range {
                        last_key,
                        step,
                        limit,
                    } => {
                        format!("range {last_key} {step} {limit}")
                    }
                    FindKeys::KeyNum {
                        keynum_idx,
                        first_key,
                        step,
                    } => {
                        format!("keynum {keynum_idx} {first_key} {step}")
                    }
                };
                Some(format!("{b} / {f}"))
            }
        })
        .collect()
}

fn their_specs(info: Value<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for ks in info.get(8).unwrap().elements() {
        let flags: Vec<String> = entry(ks, "flags").unwrap().elements().map(text).collect();
        if flags.iter().any(|f| f == "not_key") {
            continue;
        }
        let bs = entry(ks, "begin_search").unwrap();
        let fk = entry(ks, "find_keys").unwrap();
        let (bt, bspec) = (text(entry(bs, "type").unwrap()), entry(bs, "spec").unwrap());
        let (ft, fspec) = (text(entry(fk, "type").unwrap()), entry(fk, "spec").unwrap());
        if bt == "unknown" {
            continue; // SORT's STORE and BY/GET: handled by code, as in Redis
        }
        let int = |m: Value<'_>, k: &str| entry(m, k).and_then(|v| v.as_integer()).unwrap();
        let b = match bt.as_str() {
            "index" => format!("index {}", int(bspec, "index")),
            _ => format!(
                "keyword {} {}",
                text(entry(bspec, "keyword").unwrap()),
                int(bspec, "startfrom")
            ),
        };
        let f = match ft.as_str() {
            "range" => format!(
                "range {} {} {}",
                int(fspec, "lastkey"),
                int(fspec, "keystep"),
                int(fspec, "limit")
            ),
            _ => format!(
                "keynum {} {} {}",
                int(fspec, "keynumidx"),
                int(fspec, "firstkey"),
                int(fspec, "keystep")
            ),
        };
        out.push(format!("{b} / {f}"));
    }
    out
}

#[test]
fn command_table_matches_command_info() {
    let server = Server::start();
    let mut c = server.connect();
    c.call(&["HELLO", "3"]);
    let info = c.call(&["COMMAND", "INFO"]);
    let mut checked = 0;
    let mut todo: Vec<Value<'_>> = info.root().elements().collect();
    while let Some(cmd) = todo.pop() {
        let name = text(cmd.get(0).unwrap());
        let arity = cmd.get(1).unwrap().as_integer().unwrap();
        let ours = match name.split_once('|') {
            None => commands::lookup_name(name.as_bytes()),
            Some((parent, _)) => commands::lookup_name(parent.as_bytes())
                .and_then(|p| p.subcommands.iter().find(|s| s.name == name)),
        }
        .unwrap_or_else(|| panic!("{name} missing from the table"));
        assert_eq!(i64::from(ours.arity), arity, "arity of {name}");
        assert_eq!(our_specs(ours), their_specs(cmd), "key specs of {name}");
        let subs: Vec<Value<'_>> = cmd.get(9).unwrap().elements().collect();
        assert_eq!(
            subs.len(),
            ours.subcommands
                .iter()
                .filter(|s| !is_newer(s.name))
                .count(),
            "subcommands of {name}"
        );
        todo.extend(subs);
        checked += 1;
    }
    assert!(checked > 350, "{checked}");
}

/// Subcommands the generator adds for Redis > 7.0.
fn is_newer(name: &str) -> bool {
    matches!(
        name,
        "client|setinfo" | "client|no-touch" | "cluster|myshardid"
    )
}

#[test]
fn key_extraction_matches_command_getkeys() {
    let corpus: &[&[&str]] = &[
        &["GET", "a"],
        &["SET", "a", "v", "EX", "10", "GET"],
        &["MGET", "a", "b", "c"],
        &["MSET", "a", "1", "b", "2"],
        &["MSETNX", "a", "1", "b", "2"],
        &["DEL", "a", "b"],
        &["UNLINK", "a"],
        &["EXISTS", "a", "a", "b"],
        &["TOUCH", "a", "b"],
        &["RENAME", "a", "b"],
        &["COPY", "a", "b", "REPLACE"],
        &["SMOVE", "a", "b", "m"],
        &["LMOVE", "a", "b", "LEFT", "RIGHT"],
        &["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
        &["RPOPLPUSH", "a", "b"],
        &["BRPOPLPUSH", "a", "b", "1"],
        &["BLPOP", "a", "b", "c", "0"],
        &["BZPOPMAX", "a", "1.5"],
        &["LMPOP", "2", "a", "b", "LEFT", "COUNT", "3"],
        &["BLMPOP", "0", "3", "a", "b", "c", "RIGHT"],
        &["ZMPOP", "1", "z", "MIN"],
        &["BZMPOP", "1", "2", "z", "y", "MAX"],
        &["SINTERCARD", "2", "a", "b", "LIMIT", "5"],
        &["SINTER", "a", "b", "c"],
        &["SUNIONSTORE", "d", "a", "b"],
        &["SDIFFSTORE", "d", "a"],
        &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
        &["ZINTERSTORE", "d", "1", "a"],
        &["ZDIFFSTORE", "d", "2", "a", "b"],
        &["ZUNION", "2", "a", "b", "WITHSCORES"],
        &["ZINTERCARD", "3", "a", "b", "c"],
        &["ZRANGESTORE", "d", "s", "0", "-1"],
        &["EVAL", "return 1", "2", "k1", "k2", "a1"],
        &["EVALSHA", "abc", "1", "k1"],
        &["EVAL_RO", "return 1", "1", "k1", "a"],
        &["FCALL", "f", "2", "k1", "k2"],
        &["FCALL_RO", "f", "1", "k1"],
        &[
            "XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "s1", "s2", "0", "0",
        ],
        &["XREAD", "STREAMS", "s1", "$"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "STREAMS",
            "s1",
            "s2",
            ">",
            ">",
        ],
        &["XADD", "s", "*", "f", "v"],
        &["XINFO", "STREAM", "s"],
        &["XGROUP", "CREATE", "s", "g", "$"],
        &["OBJECT", "ENCODING", "k"],
        &["MEMORY", "USAGE", "k"],
        &["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"],
        &["GEORADIUSBYMEMBER", "g", "m", "1", "km", "STOREDIST", "d"],
        &[
            "GEOSEARCHSTORE",
            "d",
            "s",
            "FROMMEMBER",
            "m",
            "BYRADIUS",
            "1",
            "km",
        ],
        &["SORT", "s", "LIMIT", "0", "10", "STORE", "d"],
        &["SORT", "s", "STORE", "d1", "STORE", "d2"],
        &["SORT_RO", "s", "ALPHA"],
        &["BITOP", "AND", "d", "a", "b"],
        &["PFCOUNT", "a", "b"],
        &["PFMERGE", "d", "a", "b"],
        &["LCS", "a", "b"],
        &["WATCH", "a", "b"],
        &["HSET", "h", "f", "v"],
        &["ZADD", "z", "1", "m"],
        &["SPUBLISH", "ch", "m"],
        &["PUBLISH", "ch", "m"],
        &["PING"],
        &["DBSIZE"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["EVAL", "return 1", "0"],
    ];
    let server = Server::start();
    let mut c = server.connect();
    for args in corpus {
        let cmd = Command::new(*args);
        let spec = commands::lookup(&cmd).unwrap_or_else(|e| panic!("{}", e.message(&cmd)));
        let ours: Vec<String> = spec
            .keys(&cmd)
            .unwrap()
            .map(|i| String::from_utf8_lossy(cmd.arg(i).unwrap()).into_owned())
            .collect();
        let mut q = vec!["COMMAND", "GETKEYS"];
        q.extend_from_slice(args);
        let r = c.call(&q);
        let theirs: Vec<String> = if r.is_error() {
            let msg = text(r.root());
            // Redis 7.0 refuses `COMMAND GETKEYS <name>` alone as an arity error.
            let alone = args.len() == 1 && msg.contains("wrong number of arguments");
            assert!(
                msg.contains("no key arguments") || msg.contains("Invalid arguments") || alone,
                "{args:?}: {msg}"
            );
            Vec::new()
        } else {
            r.root().elements().map(text).collect()
        };
        assert_eq!(ours, theirs, "{args:?}");
    }
}
