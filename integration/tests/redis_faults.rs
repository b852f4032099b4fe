//! Redis sharding under faults, end to end (real Envoy + filter in V8, real geomesh-bridge, real
//! redis-servers): a shard killed mid-pipeline, a shard frozen (SIGSTOP), clients sending
//! garbage, a 512 MB bulk header, 10 000-deep arrays, a server reply nested too deep.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use geomesh_integration::redis_mesh::RedisMesh;
use geomesh_redis::{BytesMut, Frame, Limits, ReplyDecoder};
use redis::Commands;

const TABLE: &str = "\
workload_type: redis
default_cluster: redis1
upstream_timeout_ms: 1000
routing_table:
  user1: redis2
";

fn raw_client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads `n` replies (or until EOF); returns them and whether EOF was seen.
fn read_replies(s: &mut TcpStream, n: usize) -> (Vec<Frame>, bool) {
    let mut dec = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while let Some(r) = dec.decode(&mut buf).unwrap() {
            out.push(r.to_frame());
        }
        if out.len() >= n {
            return (out, false);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => panic!("read after {} replies: {e}", out.len()),
        }
    }
}

fn command(out: &mut Vec<u8>, args: &[&str]) {
    out.extend(format!("*{}\r\n", args.len()).bytes());
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
}

fn err_text(f: &Frame) -> String {
    match f {
        Frame::SimpleError(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_shard_killed_mid_pipeline() {
    let mut mesh = RedisMesh::start("redis-kill", &["redis1", "redis2"], TABLE).unwrap();
    let mut c = mesh.client().unwrap();
    for i in 0..100 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
        let _: () = c.set(format!("user1:{i}"), i).unwrap();
    }
    // Freeze redis2 so that the pipeline is surely in flight there, then kill it.
    mesh.shard("redis2").proc.signal(libc::SIGSTOP).unwrap();
    let mut s = raw_client(mesh.port);
    let mut b = Vec::new();
    for i in 0..100 {
        command(&mut b, &["GET", &format!("k{i}")]);
        command(&mut b, &["GET", &format!("user1:{i}")]);
    }
    let t0 = Instant::now();
    s.write_all(&b).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    mesh.shard_mut("redis2").proc.signal(libc::SIGKILL).unwrap();
    let (r, eof) = read_replies(&mut s, 200);
    let took = t0.elapsed();
    assert!(!eof);
    assert_eq!(r.len(), 200);
    for i in 0..100 {
        assert_eq!(
            r[2 * i],
            Frame::bulk(i.to_string()),
            "redis1's replies are intact"
        );
        let e = err_text(&r[2 * i + 1]);
        assert!(e.starts_with("ERR geomesh: cluster redis2: "), "{e}");
    }
    assert!(
        took < Duration::from_millis(1000 + 500),
        "within the timeout: {took:?}"
    );
    eprintln!("killed shard: {} after {took:?}", err_text(&r[1]));
    // The dead shard keeps answering with errors, the other keeps working, on the same
    // connection.
    let mut b = Vec::new();
    command(&mut b, &["GET", "user1:1"]);
    command(&mut b, &["GET", "k1"]);
    s.write_all(&b).unwrap();
    let (r, _) = read_replies(&mut s, 2);
    let e = err_text(&r[0]);
    assert!(
        e.starts_with("ERR geomesh: cluster redis2: connection refused"),
        "{e}"
    );
    assert_eq!(r[1], Frame::bulk("1"));
}

#[test]
fn a_stalled_shard_gets_an_error_within_the_timeout() {
    let mesh = RedisMesh::start("redis-stall", &["redis1", "redis2"], TABLE).unwrap();
    let mut c = mesh.client().unwrap();
    let _: () = c.set("k", "v1").unwrap();
    let _: () = c.set("user1", "v2").unwrap();
    mesh.shard("redis2").proc.signal(libc::SIGSTOP).unwrap();
    let mut s = raw_client(mesh.port);
    let mut b = Vec::new();
    command(&mut b, &["GET", "user1"]);
    command(&mut b, &["GET", "k"]);
    let t0 = Instant::now();
    s.write_all(&b).unwrap();
    // Meanwhile another client reads redis1 at full speed.
    let mut other = mesh.client().unwrap();
    let t1 = Instant::now();
    for _ in 0..50 {
        let v: String = other.get("k").unwrap();
        assert_eq!(v, "v1");
    }
    assert!(
        t1.elapsed() < Duration::from_millis(900),
        "redis1 unaffected: {:?}",
        t1.elapsed()
    );
    let (r, _) = read_replies(&mut s, 2);
    let took = t0.elapsed();
    assert_eq!(
        err_text(&r[0]),
        "ERR geomesh: cluster redis2: no reply within 1000 ms"
    );
    assert_eq!(r[1], Frame::bulk("v1"));
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_millis(1000 + 50 + 300),
        "{took:?}"
    );
    // Thawed: late replies are dropped, the connection answers in order again.
    mesh.shard("redis2").proc.signal(libc::SIGCONT).unwrap();
    let mut b = Vec::new();
    command(&mut b, &["GET", "user1"]);
    command(&mut b, &["GET", "k"]);
    s.write_all(&b).unwrap();
    let (r, _) = read_replies(&mut s, 2);
    assert_eq!(r, vec![Frame::bulk("v2"), Frame::bulk("v1")]);
}

/// Sends `bytes`, expects `-ERR Protocol error...` then the connection closed, within 2 s.
fn expect_protocol_error(port: u16, bytes: &[u8]) -> String {
    let mut s = raw_client(port);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    s.write_all(bytes).unwrap();
    let (r, eof) = read_replies(&mut s, usize::MAX);
    assert!(eof, "connection closed");
    assert!(t0.elapsed() < Duration::from_secs(2));
    let e = err_text(r.last().unwrap());
    assert!(e.starts_with("ERR Protocol error"), "{e}");
    e
}

fn envoy_rss_kb(mesh: &mut RedisMesh) -> u64 {
    let pid = mesh.envoy.proc().pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn garbage_huge_headers_and_deep_nesting_close_only_that_client() {
    let mut mesh = RedisMesh::start("redis-garbage", &["redis1", "redis2"], TABLE).unwrap();
    let mut bystander = mesh.client().unwrap();
    let _: () = bystander.set("user1", "still here").unwrap();
    let rss0 = envoy_rss_kb(&mut mesh);

    let e = expect_protocol_error(mesh.port, b"*2\r\n$3\r\nGET\r\n$x\r\n");
    eprintln!("garbage: {e}");
    expect_protocol_error(mesh.port, b"*2\r\n$3\r\nGET\r\n$1\r\nabXY\r\n");
    // 512 MB announced: refused at the header, nothing allocated or awaited.
    let e = expect_protocol_error(mesh.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n");
    assert!(e.contains("bulk"), "{e}");
    // 10 000-deep nested arrays.
    expect_protocol_error(mesh.port, "*1\r\n".repeat(10_000).as_bytes());
    // A request after valid ones: the valid ones are answered first, then the error.
    let mut s = raw_client(mesh.port);
    s.write_all(b"*2\r\n$3\r\nGET\r\n$5\r\nuser1\r\n*1\r\n$-5\r\n")
        .unwrap();
    let (r, eof) = read_replies(&mut s, usize::MAX);
    assert!(eof);
    assert_eq!(r[0], Frame::bulk("still here"));
    assert!(err_text(&r[1]).starts_with("ERR Protocol error"));

    let rss1 = envoy_rss_kb(&mut mesh);
    assert!(rss1 < rss0 + 64 * 1024, "Envoy RSS {rss0} kB -> {rss1} kB");
    // The other client on the same Envoy (same worker, same Wasm VM) never noticed.
    let v: String = bystander.get("user1").unwrap();
    assert_eq!(v, "still here");
    let n: usize = redis::cmd("DBSIZE").query(&mut bystander).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_server_reply_nested_too_deep_fails_that_cluster_only() {
    let mesh = RedisMesh::start("redis-deep-reply", &["redis1", "redis2"], TABLE).unwrap();
    let mut c = mesh.client().unwrap();
    let _: () = c.set("user1", "u").unwrap();
    // redis-server turns a nested Lua table into nested arrays: 100 levels, over the limit (64).
    let r: redis::RedisResult<redis::Value> = redis::cmd("EVAL")
        .arg("local t = 1 for i = 1, 100 do t = {t} end return t")
        .arg(0)
        .query(&mut c);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("geomesh: cluster redis1: protocol error"), "{e}");
    // Within the limit it comes through.
    let v: redis::Value = redis::cmd("EVAL")
        .arg("local t = 1 for i = 1, 30 do t = {t} end return t")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert!(matches!(v, redis::Value::Array(_)));
    let u: String = c.get("user1").unwrap();
    assert_eq!(u, "u");
}

#[test]
fn large_values_cross_in_pieces() {
    let mesh = RedisMesh::start("redis-large", &["redis1", "redis2"], TABLE).unwrap();
    let mut c = mesh.client().unwrap();
    let big1: String = "a".repeat(3 << 20);
    let big2: String = "b".repeat(5 << 20);
    let _: () = c.mset(&[("k", &big1), ("user1", &big2)]).unwrap();
    let v: Vec<String> = c.mget(&["user1", "k"]).unwrap();
    assert_eq!(v[0].len(), big2.len());
    assert_eq!(v[1].len(), big1.len());
    assert!(v[0] == big2 && v[1] == big1);
}

const PUBSUB_TABLE: &str = "\
workload_type: redis
default_cluster: redis1
upstream_timeout_ms: 1000
routing_table:
  user1: redis2
";

/// redis-py subscribed through the mesh: prints one JSON line per event (message, error) with
/// its time, reconnecting and resubscribing as the library does, until the message `stop`.
const PY_SUBSCRIBER: &str = r#"
import json, sys, time
import redis

port, channel = int(sys.argv[1]), sys.argv[2]
def emit(**kw):
    kw["t"] = time.time()
    print(json.dumps(kw), flush=True)

r = redis.Redis(port=port, decode_responses=True)
ps = r.pubsub()
ps.subscribe(channel)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        m = ps.get_message(timeout=0.2)
    except redis.ConnectionError as e:
        emit(event="connection_error", error=str(e))
        time.sleep(0.2)
        continue
    except redis.ResponseError as e:
        emit(event="response_error", error=str(e))
        continue
    if m is None:
        continue
    emit(event=m["type"], data=m["data"])
    if m["type"] == "message" and m["data"] == "stop":
        break
"#;

fn python_redis_path() -> std::path::PathBuf {
    let p = geomesh_integration::paths::repo_root().join(".cache/pyredis");
    assert!(
        p.join("redis").is_dir(),
        "redis-py not installed: pip install --target .cache/pyredis redis (scripts/bootstrap.sh)"
    );
    p
}

/// The JSON lines the subscriber has printed so far.
fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_event(
    path: &std::path::Path,
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
    mut meanwhile: impl FnMut(),
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        if let Some(e) = events(path).into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            t0.elapsed() < timeout,
            "no {what} within {timeout:?}; events: {:?}",
            events(path)
        );
        meanwhile();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shard carrying subscriptions dies: the subscribers' connections are closed at once (no
/// silent loss), the redis crate sees the connection end, redis-py reconnects and resubscribes
/// by itself and receives messages again once the shard is back.
#[test]
fn a_subscriber_is_disconnected_when_its_shard_dies_and_resubscribes() {
    let mut mesh = RedisMesh::start("redis-sub-kill", &["redis1", "redis2"], PUBSUB_TABLE).unwrap();
    let channel = "user1:news"; // routed to redis2 only
                                // redis-py (its default RESP3) in a child process.
    let script = mesh.dir.write("subscriber.py", PY_SUBSCRIBER).unwrap();
    let py_out = mesh.dir.join("subscriber.jsonl");
    let mut py = std::process::Command::new("python3")
        .arg(&script)
        .arg(mesh.port.to_string())
        .arg(channel)
        .env("PYTHONPATH", python_redis_path())
        .stdout(std::fs::File::create(&py_out).unwrap())
        .stderr(std::fs::File::create(mesh.dir.join("subscriber.stderr")).unwrap())
        .spawn()
        .unwrap();
    // The redis crate (RESP2), subscribed too.
    let mut rs = mesh.client().unwrap();
    let mut sub = rs.as_pubsub();
    sub.subscribe(channel).unwrap();
    let mut publisher = mesh.client().unwrap();
    let publish = |c: &mut redis::Connection, m: &str| -> i64 {
        redis::cmd("PUBLISH").arg(channel).arg(m).query(c).unwrap()
    };
    wait_event(
        &py_out,
        "redis-py subscribed",
        Duration::from_secs(20),
        |e| e["event"] == "subscribe",
        || {},
    );
    assert_eq!(
        publish(&mut publisher, "before"),
        2,
        "both subscribers on redis2"
    );
    wait_event(
        &py_out,
        "message before",
        Duration::from_secs(10),
        |e| e["data"] == "before",
        || {},
    );
    let m = sub.get_message().unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "before");

    // A last message, then the kill: once redis2 holds no output for its subscribers (redis can
    // answer PUBLISH before it has written the subscribers' copies), the message has left it, so
    // it must be delivered before the close, not dropped with it.
    assert_eq!(publish(&mut publisher, "last"), 2);
    let mut direct = mesh.direct("redis2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut direct).unwrap();
        let subs: Vec<&str> = list.lines().filter(|l| l.contains(" sub=1 ")).collect();
        if !subs.is_empty() && subs.iter().all(|l| l.contains(" obl=0 ") && l.contains(" oll=0 ")) {
            break;
        }
        assert!(Instant::now() < deadline, "redis2 kept output buffered: {list}");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(direct);
    mesh.shard_mut("redis2").proc.signal(libc::SIGKILL).unwrap();
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The redis crate: its connection ends (an error, not a silent wait for messages that
    // will never come).
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let m = sub.get_message().unwrap();
    assert_eq!(m.get_payload::<String>().unwrap(), "last");
    let r = sub.get_message();
    let took = killed.elapsed();
    let err = r.expect_err("the subscriber's connection must be closed");
    assert!(
        !err.is_timeout(),
        "the connection must end, not time out: {err:?}"
    );
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    eprintln!("redis crate subscriber: {err} after {took:?}");
    drop(sub);

    // Shard back (empty, same port): redis-py's own reconnection resubscribes and messages flow.
    mesh.restart_shard("redis2").unwrap();
    wait_event(
        &py_out,
        "redis-py resubscribed",
        Duration::from_secs(30),
        |e| e["event"] == "subscribe" && e["t"].as_f64().unwrap() > killed_at,
        || {},
    );
    let after = wait_event(
        &py_out,
        "message after",
        Duration::from_secs(10),
        |e| e["data"] == "after",
        || {
            publish(&mut publisher, "after");
        },
    );
    publish(&mut publisher, "stop");
    let status = py.wait().unwrap();
    assert!(status.success());
    let ev = events(&py_out);
    eprintln!("redis-py events: {ev:?}");
    assert!(after["t"].as_f64().unwrap() > killed_at);
    let pos = |d: &str| ev.iter().position(|e| e["data"] == d).unwrap();
    assert!(pos("before") < pos("last") && pos("last") < pos("after"));
    assert_eq!(ev.iter().filter(|e| e["data"] == "last").count(), 1);
}

/// A state command an open shard connection refuses (SELECT beyond redis2's `databases 4`):
/// the client is told the local cluster's answer, the refusing connection is reset, the
/// requests behind the command on it fail, and no later request there runs in the wrong DB.
#[test]
fn a_select_one_open_shard_refuses_resets_that_shard_connection() {
    let mut opts =
        geomesh_integration::redis_mesh::MeshOptions::new(&["redis1", "redis2"], PUBSUB_TABLE);
    opts.shard_args = vec![("redis2".into(), vec!["--databases".into(), "4".into()])];
    let mesh = RedisMesh::start_with("redis-select-refused", opts).unwrap();
    let mut s = raw_client(mesh.port);
    let mut b = Vec::new();
    command(&mut b, &["SET", "user1", "x"]);
    command(&mut b, &["SET", "a", "y"]);
    s.write_all(&b).unwrap();
    let (r, _) = read_replies(&mut s, 2);
    assert_eq!(r, [Frame::ok(), Frame::ok()]);
    let mut b = Vec::new();
    command(&mut b, &["SELECT", "5"]);
    command(&mut b, &["GET", "user1"]);
    command(&mut b, &["GET", "a"]);
    s.write_all(&b).unwrap();
    let (r, eof) = read_replies(&mut s, 3);
    assert!(!eof);
    assert_eq!(r[0], Frame::ok(), "the local cluster (redis1) accepted it");
    assert_eq!(
        err_text(&r[1]),
        "ERR geomesh: cluster redis2: refused SELECT: ERR DB index is out of range"
    );
    assert_eq!(r[2], Frame::NullBulk, "redis1 is in DB 5");
    // The state stays: redis2 refuses it again, nothing is answered from its DB 0.
    let mut b = Vec::new();
    command(&mut b, &["GET", "user1"]);
    s.write_all(&b).unwrap();
    let (r, _) = read_replies(&mut s, 1);
    assert_eq!(
        err_text(&r[0]),
        "ERR geomesh: cluster redis2: refused the session's SELECT: ERR DB index is out of range"
    );
    // A DB redis2 has: it works again, in that DB.
    let mut b = Vec::new();
    command(&mut b, &["SELECT", "2"]);
    command(&mut b, &["GET", "user1"]);
    command(&mut b, &["SET", "user1", "in-db-2"]);
    s.write_all(&b).unwrap();
    let (r, _) = read_replies(&mut s, 3);
    assert_eq!(r, [Frame::ok(), Frame::NullBulk, Frame::ok()]);
    let (out, _, _) = geomesh_integration::redis_mesh::redis_cli(
        mesh.shard("redis2").port,
        &["-n", "2", "GET", "user1"],
    )
    .unwrap();
    assert_eq!(out.trim(), "in-db-2");
    let (out, _, _) =
        geomesh_integration::redis_mesh::redis_cli(mesh.shard("redis2").port, &["GET", "user1"])
            .unwrap();
    assert_eq!(out.trim(), "x", "DB 0 untouched");
}

geomesh_integration::native_shell_too!(
    a_shard_killed_mid_pipeline,
    a_stalled_shard_gets_an_error_within_the_timeout,
    garbage_huge_headers_and_deep_nesting_close_only_that_client,
    a_server_reply_nested_too_deep_fails_that_cluster_only,
    large_values_cross_in_pieces,
    a_subscriber_is_disconnected_when_its_shard_dies_and_resubscribes,
    a_select_one_open_shard_refuses_resets_that_shard_connection,
);
