//! The bridge as a real process, driven by a filter-side GMB/1 client, against real
//! redis-server processes (and a real Envoy for the admin API lookup).

mod common;

use std::time::{Duration, Instant};

use common::*;
use geomesh_frame::{parse_wake_reply, CloseCode, Header, Kind};

const SEC: Duration = Duration::from_secs(1);
const FIVE: Duration = Duration::from_secs(5);

fn two_redis_bridge(extra: &str) -> (Redis, Redis, BridgeProc) {
    let r1 = Redis::start();
    let r2 = Redis::start();
    let cfg = config(
        "dc1",
        &format!(
            "clusters:\n  redis1: {{ address: \"{}\" }}\n  redis2: {{ address: \"{}\" }}\n{extra}",
            r1.addr(),
            r2.addr()
        ),
    );
    let b = BridgeProc::start(&cfg);
    (r1, r2, b)
}

#[test]
fn two_channels_reach_two_servers_at_once() {
    let (r1, r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    g.open(2, "redis2", 0, 0);
    // Both requests in flight before either reply is read.
    g.cmd(1, &["SET", "k1", "one"]);
    g.cmd(2, &["SET", "k2", "two"]);
    assert_eq!(g.read_until(2, b"\r\n", 0, FIVE), b"+OK\r\n");
    assert_eq!(g.read_until(1, b"\r\n", 0, FIVE), b"+OK\r\n");
    assert_eq!(g.roundtrip(1, &["GET", "k1"], b"one\r\n"), b"$3\r\none\r\n");
    assert_eq!(g.roundtrip(2, &["GET", "k2"], b"two\r\n"), b"$3\r\ntwo\r\n");
    assert_eq!(
        g.roundtrip(1, &["GET", "k2"], b"\r\n"),
        b"$-1\r\n",
        "k2 is not on redis1"
    );
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    // The servers themselves agree.
    assert_eq!(r1.cmd(&["GET", "k1"]), b"$3\r\none\r\n");
    assert_eq!(r2.cmd(&["GET", "k2"]), b"$3\r\ntwo\r\n");
    assert_eq!(r2.cmd(&["GET", "k1"]), b"$-1\r\n");
    // The admin endpoint saw it.
    let (status, text) = b.admin_get("/stats");
    assert!(status.contains("200"), "{status}");
    assert!(text.contains("filter_connections_active 1\n"), "{text}");
    assert!(text.contains("channels_active 2\n"), "{text}");
    let (_, json) = b.admin_get("/stats?format=json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["site"], "dc1");
    assert!(v["bytes_from_backends"].as_u64().unwrap() >= 30, "{json}");
    assert_eq!(
        b.admin_get("/ready"),
        ("HTTP/1.1 200 OK".to_owned(), "ready\n".to_owned())
    );
}

#[test]
fn close_answers_local_and_the_id_can_be_reused() {
    let (_r1, r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(5, "redis1", 0, 0);
    assert_eq!(g.roundtrip(5, &["SET", "where", "r1"], b"\r\n"), b"+OK\r\n");
    g.close(5);
    let (code, _, _) = g.expect_closed(5, FIVE);
    assert_eq!(code, CloseCode::Local);
    // Same id, other cluster.
    g.open(5, "redis2", 0, 0);
    assert_eq!(g.roundtrip(5, &["GET", "where"], b"\r\n"), b"$-1\r\n");
    assert_eq!(g.roundtrip(5, &["SET", "where", "r2"], b"\r\n"), b"+OK\r\n");
    assert_eq!(r2.cmd(&["GET", "where"]), b"$2\r\nr2\r\n");
    // DATA and CLOSE for a channel that is not open are ignored, not fatal.
    g.send(9, b"*1\r\n$4\r\nPING\r\n");
    g.close(9);
    assert_eq!(g.roundtrip(5, &["PING"], b"\r\n"), b"+PONG\r\n");
}

#[test]
fn pipelining_many_requests_in_one_frame_and_across_frames() {
    let (r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    let mut batch = Vec::new();
    for _ in 0..2000 {
        batch.extend_from_slice(&resp(&["INCR", "n"]));
    }
    g.send(1, &batch);
    // And more, in many small frames, before reading anything.
    for _ in 0..500 {
        g.cmd(1, &["INCR", "n"]);
    }
    let got = g.read_until(1, b":2500\r\n", 0, Duration::from_secs(10));
    let replies = got.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(replies, 2500);
    assert!(got.starts_with(b":1\r\n:2\r\n:3\r\n"));
    assert_eq!(r1.cmd(&["GET", "n"]), b"$4\r\n2500\r\n");
    // A value larger than one read, in one frame.
    let big = "x".repeat(300_000);
    g.cmd(1, &["SET", "big", &big]);
    assert_eq!(g.read_until(1, b"\r\n", 0, FIVE), b"+OK\r\n");
    g.cmd(1, &["GET", "big"]);
    let got = g.read_until(1, b"\r\n", 300_000, FIVE);
    assert_eq!(got.len(), "$300000\r\n".len() + 300_000 + 2);
}

#[test]
fn frames_delivered_one_byte_at_a_time() {
    let (_r1, _r2, b) = two_redis_bridge("");
    let mut g = Gmb::connect(&b.listen);
    let mut bytes = Vec::new();
    geomesh_frame::encode_hello(&mut bytes, "bytewise");
    geomesh_frame::encode_open(&mut bytes, 3, 0, 0, "redis2");
    geomesh_frame::encode_data(&mut bytes, Kind::Data, 3, &resp(&["SET", "slow", "ok"]));
    geomesh_frame::encode_wake(&mut bytes, 77, 0);
    geomesh_frame::encode_data(&mut bytes, Kind::Data, 3, &resp(&["GET", "slow"]));
    for byte in &bytes {
        g.raw(&[*byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let w = g.wait_for(FIVE, |f| f.kind == Kind::WakeReply).expect("WAKE reply");
    assert_eq!(parse_wake_reply(&w.payload).unwrap(), 77);
    assert_eq!(g.read_until(3, b"ok\r\n", 0, FIVE), b"+OK\r\n$2\r\nok\r\n");
}

#[test]
fn refused_connect_is_reported_fast() {
    let (_r1, _r2, b) = {
        let port = free_port();
        two_redis_bridge(&format!("  dead: {{ address: \"127.0.0.1:{port}\" }}\n"))
    };
    let mut g = b.client();
    let t = Instant::now();
    g.open(1, "dead", 0, 2000);
    g.cmd(1, &["PING"]);
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::Refused, "{msg}");
    assert!(t.elapsed() < Duration::from_millis(500), "took {:?}", t.elapsed());
    assert!(msg.contains("dead"), "{msg}");
}

#[test]
fn connect_timeout_and_backpressure_while_connecting() {
    let hole = Blackhole::new();
    let (_r1, _r2, b) = two_redis_bridge(&format!(
        "  hole: {{ address: \"{}\" }}\ndefaults: {{ connect_timeout_ms: 5000, channel_buffer_bytes: 1000 }}\n",
        hole.addr
    ));
    let mut g = b.client();
    // The OPEN's connect timeout wins over the default.
    g.open(1, "hole", 0, 300);
    let (code, msg, waited) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::ConnectTimeout, "{msg}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    // Data for a channel still connecting is bounded: past `channel_buffer_bytes` its next
    // DATA frame, and every frame after it, waits (the filter connection is not read) until
    // the channel can take bytes or goes; here its connect timeout closes it.
    g.open(2, "hole", 0, 300);
    for _ in 0..3 {
        g.send(2, &[b'x'; 600]);
    }
    g.open(3, "redis1", 0, 0);
    g.cmd(3, &["PING"]);
    let (code, msg, waited) = g.expect_closed(2, FIVE);
    assert_eq!(code, CloseCode::ConnectTimeout, "{msg}");
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
    // The frames held behind it were then handled, in order: channel 3 answers.
    assert_eq!(g.read_until(3, b"\r\n", 0, FIVE), b"+PONG\r\n");
}

#[test]
fn frames_larger_than_the_channel_buffer_pass_and_a_stalled_backend_releases_the_input() {
    let (r1, _r2, b) = two_redis_bridge("defaults: { channel_buffer_bytes: 1000 }\n");
    let mut g = b.client();
    g.open(1, "redis1", 2000, 0);
    g.open(2, "redis2", 2000, 0);
    // One SET of 3 MB (a single frame 3000 times the channel buffer), pipelined with more.
    let big = "v".repeat(3 << 20);
    for i in 0..4 {
        g.cmd(1, &["SET", &format!("big{i}"), &big]);
    }
    let ok = g.read_until(1, b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n", 20, FIVE);
    assert_eq!(ok, b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n");
    assert_eq!(g.roundtrip(1, &["STRLEN", "big3"], b"\r\n"), format!(":{}\r\n", 3 << 20).into_bytes());
    // A backend that stops reading while the filter connection waits for it: closed STALLED
    // within its reply timeout, and the frames held behind it go on.
    r1.stop();
    let t = Instant::now();
    for i in 0..8 {
        g.cmd(1, &["SET", &format!("late{i}"), &big]);
    }
    g.cmd(2, &["PING"]);
    let (code, msg, _) = g.expect_closed(1, Duration::from_secs(10));
    let waited = t.elapsed();
    r1.cont();
    assert_eq!(code, CloseCode::Stalled, "{msg}");
    assert!(waited < Duration::from_millis(4000), "STALLED after {waited:?}");
    assert_eq!(g.read_until(2, b"\r\n", 0, FIVE), b"+PONG\r\n");
}

#[test]
fn backend_killed_gives_eof_and_others_continue() {
    let (mut r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    g.open(2, "redis2", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    r1.kill();
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::Eof, "{msg}");
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    // A new channel to the dead server is refused.
    g.open(1, "redis1", 0, 0);
    assert_eq!(g.expect_closed(1, FIVE).0, CloseCode::Refused);
}

#[test]
fn stalled_backend_is_closed_and_the_other_channel_keeps_working() {
    let (r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "redis1", 300, 0);
    g.open(2, "redis2", 300, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    r1.stop();
    let t = Instant::now();
    g.cmd(1, &["PING"]);
    // Meanwhile channel 2 answers, several times, well inside its own 300 ms clock.
    for i in 0..3 {
        assert_eq!(
            g.roundtrip(2, &["INCR", "c"], b"\r\n"),
            format!(":{}\r\n", i + 1).into_bytes()
        );
    }
    let (code, msg, _) = g.expect_closed(1, FIVE);
    let waited = t.elapsed();
    r1.cont();
    assert_eq!(code, CloseCode::Stalled, "{msg}");
    assert!(
        waited >= Duration::from_millis(280) && waited <= Duration::from_millis(700),
        "STALLED after {waited:?}"
    );
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    // An idle channel (nothing written) never stalls.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
}

#[test]
fn wake_timers_fire_at_their_time() {
    let (_r1, _r2, b) = two_redis_bridge("defaults: { max_timers: 4 }\n");
    let mut g = b.client();
    let t0 = Instant::now();
    g.wake(1, 300);
    g.wake(2, 100);
    g.wake(3, 0);
    g.wake(4, 300);
    g.wake(2, 100); // the same token twice: both fire
    let mut fired = Vec::new();
    while fired.len() < 5 {
        let f = g.wait_for(SEC, |f| f.kind == Kind::WakeReply).expect("a WAKE reply");
        fired.push((parse_wake_reply(&f.payload).unwrap(), t0.elapsed()));
    }
    let tokens: Vec<u64> = fired.iter().map(|f| f.0).collect();
    assert_eq!(tokens[0], 3);
    assert_eq!(&tokens[1..3], &[2, 2]);
    let mut last: Vec<u64> = tokens[3..].to_vec();
    last.sort();
    assert_eq!(last, [1, 4]);
    assert!(fired[0].1 < Duration::from_millis(80), "{fired:?}");
    for (_, at) in &fired[1..3] {
        assert!(
            *at >= Duration::from_millis(100) && *at < Duration::from_millis(280),
            "{fired:?}"
        );
    }
    for (_, at) in &fired[3..] {
        assert!(
            *at >= Duration::from_millis(300) && *at < Duration::from_millis(480),
            "{fired:?}"
        );
    }
    assert!(g.wait_for(Duration::from_millis(300), |f| f.kind == Kind::WakeReply).is_none());
    // More pending timers than `max_timers` is a connection error.
    let mut greedy = b.client();
    for t in 0..5 {
        greedy.wake(t, 10_000);
    }
    let f = greedy.wait_for(FIVE, |f| f.kind == Kind::Error).expect("ERROR");
    assert!(String::from_utf8_lossy(&f.payload).contains("timers"));
    assert!(greedy.wait_eof(FIVE));
}

#[test]
fn several_addresses_take_turns_and_skip_a_dead_one() {
    let port = free_port();
    let (r1, r2, b) = two_redis_bridge("");
    let text = std::fs::read_to_string(&b.config_path).unwrap();
    drop(b);
    let text = text.replace(
        "clusters:\n",
        &format!(
            "clusters:\n  pair: {{ addresses: [\"127.0.0.1:{port}\", \"{}\", \"{}\"] }}\n",
            r1.addr(),
            r2.addr()
        ),
    );
    let b = BridgeProc::start(&text);
    let mut g = b.client();
    for chan in 1..=6u16 {
        g.open(chan, "pair", 0, 0);
        assert_eq!(g.roundtrip(chan, &["INCR", "hits"], b"\r\n").first(), Some(&b':'));
    }
    let hits = |r: &Redis| String::from_utf8(r.cmd(&["GET", "hits"])).unwrap();
    // Six opens starting at each of the three addresses in turn: the dead one is skipped, so
    // redis1 gets its own two turns and the dead one's two.
    assert_eq!(hits(&r1), "$1\r\n4\r\n");
    assert_eq!(hits(&r2), "$1\r\n2\r\n");
}

#[test]
fn unknown_target() {
    let (_r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(4, "no-such-cluster", 0, 0);
    g.cmd(4, &["PING"]);
    let (code, msg, _) = g.expect_closed(4, FIVE);
    assert_eq!(code, CloseCode::UnknownTarget);
    assert!(msg.contains("no-such-cluster"), "{msg}");
}

#[test]
fn malformed_frames_end_only_their_connection() {
    let (_r1, _r2, b) = two_redis_bridge("");
    let mut good = b.client();
    good.open(1, "redis1", 0, 0);
    assert_eq!(good.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");

    let bad_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("unknown kind", {
            let mut v = Vec::new();
            geomesh_frame::encode_hello(&mut v, "x");
            v.extend_from_slice(b"\0\0\0\0\x42\0\0");
            v
        }),
        ("no HELLO first", resp(&["PING"])),
        ("bad version", {
            let mut v = Vec::new();
            Header::write(&mut v, Kind::Hello, 0, 4);
            v.extend_from_slice(b"GMB\x07");
            v
        }),
        ("OPEN on channel 0", {
            let mut v = Vec::new();
            geomesh_frame::encode_hello(&mut v, "x");
            geomesh_frame::encode_open(&mut v, 0, 0, 0, "redis1");
            v
        }),
        ("too long", {
            let mut v = Vec::new();
            geomesh_frame::encode_hello(&mut v, "x");
            Header::write(&mut v, Kind::Data, 1, 0x7fff_ffff);
            v
        }),
        ("a bridge frame from the filter", {
            let mut v = Vec::new();
            geomesh_frame::encode_hello(&mut v, "x");
            geomesh_frame::encode_wake_reply(&mut v, 1);
            v
        }),
        ("OPEN twice", {
            let mut v = Vec::new();
            geomesh_frame::encode_hello(&mut v, "x");
            geomesh_frame::encode_open(&mut v, 1, 0, 0, "redis1");
            geomesh_frame::encode_open(&mut v, 1, 0, 0, "redis1");
            v
        }),
    ];
    for (what, bytes) in bad_inputs {
        let mut bad = Gmb::connect(&b.listen);
        bad.raw(&bytes);
        let f = bad
            .wait_for(FIVE, |f| f.kind == Kind::Error)
            .unwrap_or_else(|| panic!("{what}: no ERROR frame"));
        assert!(!f.payload.is_empty(), "{what}: empty ERROR");
        assert!(bad.wait_eof(FIVE), "{what}: the connection stayed open");
        // The other connection is unaffected.
        assert_eq!(good.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n", "after {what}");
    }
    let (_, stats) = b.admin_get("/stats");
    assert!(stats.contains("errors 7\n"), "{stats}");
}

#[test]
fn pubsub_messages_arrive_unasked() {
    let (r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    // No reply clock on a subscription channel.
    g.open(1, "redis1", 0, 0);
    let sub = g.roundtrip(1, &["SUBSCRIBE", "news"], b":1\r\n");
    assert!(
        sub.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"),
        "{}",
        String::from_utf8_lossy(&sub)
    );
    for i in 0..3 {
        let body = format!("hello-{i}");
        assert_eq!(r1.cmd(&["PUBLISH", "news", &body]), b":1\r\n");
        let expected = format!("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${}\r\n{body}\r\n", body.len());
        assert_eq!(
            g.read_until(1, format!("{body}\r\n").as_bytes(), 0, FIVE),
            expected.into_bytes()
        );
    }
}

#[test]
fn unix_socket_listener() {
    let r = Redis::start();
    let dir = TempDir::new("unix");
    let sock = dir.path("bridge.sock");
    let cfg = format!(
        "site: dc1\nlisten: unix:{}\nclusters:\n  r: {{ address: \"{}\" }}\n",
        sock.display(),
        r.addr()
    );
    let b = BridgeProc::start_in(&dir.0, &cfg);
    assert_eq!(b.listen, format!("unix:{}", sock.display()));
    let mut g = b.client();
    g.open(1, "r", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
}

#[test]
fn sighup_reloads_the_config_for_new_channels() {
    let (_r1, r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "late", 0, 0);
    assert_eq!(g.expect_closed(1, FIVE).0, CloseCode::UnknownTarget);
    let text = std::fs::read_to_string(&b.config_path).unwrap();
    std::fs::write(
        &b.config_path,
        format!("{text}  late: {{ address: \"{}\" }}\n", r2.addr()),
    )
    .unwrap();
    b.sighup();
    let deadline = Instant::now() + FIVE;
    loop {
        g.open(1, "late", 0, 0);
        g.cmd(1, &["PING"]);
        let f = g
            .wait_for(FIVE, |f| {
                f.chan == 1 && matches!(f.kind, Kind::BridgeData | Kind::Closed)
            })
            .unwrap();
        if f.kind == Kind::BridgeData {
            assert_eq!(f.payload, b"+PONG\r\n");
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken config on SIGHUP keeps the one in force.
    std::fs::write(&b.config_path, "site: [\n").unwrap();
    b.sighup();
    std::thread::sleep(Duration::from_millis(200));
    g.open(2, "redis1", 0, 0);
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    assert!(b.log_text().contains("keeping the configuration in force"));
}

#[test]
fn check_flag_validates_configs() {
    let dir = TempDir::new("check");
    let good = dir.path("good.yaml");
    std::fs::write(
        &good,
        "site: dc1\nlisten: 127.0.0.1:15000\nclusters:\n  a: { address: 127.0.0.1:6379 }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let bad = dir.path("bad.yaml");
    std::fs::write(
        &bad,
        "site: dc1\nlisten: 127.0.0.1:15000\nclusters:\n  a: { site: dc9 }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
        .args(["--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clusters.a.site") && err.contains("dc9"), "{err}");
}

/// dc2's bridge serves redis "far"; dc1's bridge reaches it through gRPC.
fn two_sites() -> (Redis, Redis, BridgeProc, BridgeProc) {
    let near = Redis::start();
    let far = Redis::start();
    let dc2 = BridgeProc::start(&format!(
        "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nplaintext: true\nadmin_listen: 127.0.0.1:0\nclusters:\n  far: {{ address: \"{}\" }}\n",
        far.addr()
    ));
    let dc1 = BridgeProc::start(&format!(
        "site: dc1\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndefaults: {{ ping_interval_ms: 100 }}\nclusters:\n  near: {{ address: \"{}\" }}\n  far: {{ site: dc2 }}\n  ghost: {{ site: dc2 }}\nplaintext: true\nsites:\n  dc2: {{ grpc: \"http://{}\" }}\n",
        near.addr(),
        dc2.grpc.as_ref().unwrap()
    ));
    (near, far, dc1, dc2)
}

#[test]
fn a_channel_reaches_another_sites_redis_through_grpc() {
    let (near, far, dc1, dc2) = two_sites();
    let mut g = dc1.client();
    g.open(1, "near", 0, 0);
    g.open(2, "far", 300, 0);
    g.cmd(2, &["SET", "where", "far"]);
    g.cmd(1, &["SET", "where", "near"]);
    assert_eq!(g.read_until(2, b"\r\n", 0, FIVE), b"+OK\r\n");
    assert_eq!(g.read_until(1, b"\r\n", 0, FIVE), b"+OK\r\n");
    assert_eq!(far.cmd(&["GET", "where"]), b"$3\r\nfar\r\n");
    assert_eq!(near.cmd(&["GET", "where"]), b"$4\r\nnear\r\n");
    // Pipelined through the tunnel.
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend_from_slice(&resp(&["INCR", "n"]));
    }
    g.send(2, &batch);
    g.read_until(2, b":1000\r\n", 0, FIVE);
    // Push through the tunnel.
    g.open(3, "far", 0, 0);
    g.roundtrip(3, &["SUBSCRIBE", "alerts"], b":1\r\n");
    assert_eq!(far.cmd(&["PUBLISH", "alerts", "fire"]), b":1\r\n");
    assert_eq!(
        g.read_until(3, b"fire\r\n", 0, FIVE),
        b"*3\r\n$7\r\nmessage\r\n$6\r\nalerts\r\n$4\r\nfire\r\n"
    );
    // A target dc2 does not know.
    g.open(4, "ghost", 0, 0);
    let (code, msg, _) = g.expect_closed(4, FIVE);
    assert_eq!(code, CloseCode::UnknownTarget, "{msg}");
    assert!(msg.contains("dc2"), "{msg}");
    // A stall at dc2 is reported by dc2's clock (300 ms), through the tunnel.
    far.stop();
    let t = Instant::now();
    g.cmd(2, &["PING"]);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    let (code, msg, _) = g.expect_closed(2, FIVE);
    let waited = t.elapsed();
    far.cont();
    assert_eq!(code, CloseCode::Stalled, "{msg}");
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(800),
        "{waited:?}"
    );
    assert!(msg.contains("dc2"), "{msg}");
    // The stats of both sides.
    let (_, s2) = dc2.admin_get("/stats");
    assert!(s2.contains("tunnels_in_total 3\n"), "{s2}");
    let (_, s1) = dc1.admin_get("/stats");
    assert!(s1.contains("remote_channels_total 3\n"), "{s1}");
    assert!(s1.contains("site.dc2.rtt_us "), "{s1}");
    // CLOSE of a remote channel ends the far connection.
    let before = far.cmd(&["INFO", "clients"]);
    assert!(
        String::from_utf8_lossy(&before).contains("connected_clients:2"),
        "{}",
        String::from_utf8_lossy(&before)
    );
    g.close(3);
    assert_eq!(g.expect_closed(3, FIVE).0, CloseCode::Local);
    let deadline = Instant::now() + FIVE;
    while !String::from_utf8_lossy(&far.cmd(&["INFO", "clients"])).contains("connected_clients:1") {
        assert!(
            Instant::now() < deadline,
            "dc2 kept the backend connection of a closed channel"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unreachable_site_and_a_site_that_dies() {
    let (_near, far, dc1, mut dc2) = two_sites();
    let mut g = dc1.client();
    g.open(1, "far", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    g.open(2, "near", 0, 0);
    dc2.kill();
    // The open tunnel breaks...
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
    // ...new channels to dc2 fail within the connect timeout...
    let t = Instant::now();
    g.open(3, "far", 0, 500);
    let (code, msg, _) = g.expect_closed(3, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
    assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());
    // ...and the local channel is fine.
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    // dc2 comes back at the same address: dc1 reconnects by itself.
    let grpc = dc2.grpc.clone().unwrap();
    let _dc2 = BridgeProc::start(&format!(
        "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: {grpc}\nplaintext: true\nclusters:\n  far: {{ address: \"{}\" }}\n",
        far.addr()
    ));
    let deadline = Instant::now() + FIVE;
    loop {
        g.open(4, "far", 0, 500);
        g.cmd(4, &["PING"]);
        let f = g
            .wait_for(FIVE, |f| {
                f.chan == 4 && matches!(f.kind, Kind::BridgeData | Kind::Closed)
            })
            .unwrap();
        if f.kind == Kind::BridgeData {
            assert_eq!(f.payload, b"+PONG\r\n");
            break;
        }
        assert!(Instant::now() < deadline, "dc1 never reached dc2 again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_blackholed_site_fails_within_the_connect_timeout() {
    let hole = Blackhole::new();
    let r = Redis::start();
    let b = BridgeProc::start(&config(
        "dc1",
        &format!(
            "clusters:\n  far: {{ site: dc2 }}\n  near: {{ address: \"{}\" }}\nplaintext: true\nsites:\n  dc2: {{ grpc: \"http://{}\" }}\n",
            r.addr(),
            hole.addr
        ),
    ));
    let mut g = b.client();
    g.open(1, "near", 0, 0);
    let t = Instant::now();
    g.open(2, "far", 0, 400);
    g.cmd(2, &["PING"]);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    let (code, msg, _) = g.expect_closed(2, FIVE);
    assert_eq!(code, CloseCode::SiteUnreachable, "{msg}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

/// Envoy's admin API resolves clusters the bridge config does not name.
#[test]
fn clusters_from_envoys_admin_api() {
    let envoy = std::env::var("GEOMESH_ENVOY")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/envoy/bin/envoy").to_owned());
    assert!(
        std::path::Path::new(&envoy).exists(),
        "Envoy not found at {envoy}: run scripts/bootstrap.sh or set GEOMESH_ENVOY"
    );
    let r = Redis::start();
    let dir = TempDir::new("envoy");
    let admin_port = free_port();
    let envoy_cfg = format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  clusters:
  - name: "outbound|6379||redis.test.svc.cluster.local"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "outbound|6379||redis.test.svc.cluster.local"
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
  - name: nobody_home
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: nobody_home
      endpoints: []
"#,
        r.port
    );
    let cfg_path = dir.path("envoy.yaml");
    std::fs::write(&cfg_path, envoy_cfg).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let base_id = 40000 + (std::process::id() % 10000);
    let _envoy = Kill(
        std::process::Command::new(&envoy)
            .arg("-c")
            .arg(&cfg_path)
            .args([
                "--base-id",
                &base_id.to_string(),
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < deadline, "Envoy's admin did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = BridgeProc::start(&config(
        "dc1",
        &format!(
            "envoy_admin: http://127.0.0.1:{admin_port}\nclusters:\n  local: {{ address: \"{}\" }}\n",
            r.addr()
        ),
    ));
    let mut g = b.client();
    g.open(1, "outbound|6379||redis.test.svc.cluster.local", 0, 0);
    assert_eq!(g.roundtrip(1, &["SET", "via", "envoy"], b"\r\n"), b"+OK\r\n");
    assert_eq!(r.cmd(&["GET", "via"]), b"$5\r\nenvoy\r\n");
    g.open(2, "nobody_home", 0, 0);
    assert_eq!(g.expect_closed(2, FIVE).0, CloseCode::Refused);
    g.open(3, "not_in_envoy", 0, 0);
    let (code, msg, _) = g.expect_closed(3, FIVE);
    assert_eq!(code, CloseCode::UnknownTarget, "{msg}");
}

/// GET `/ready` until it answers `want` (the drain starts asynchronously after the signal).
fn wait_ready_body(b: &BridgeProc, want: &str) {
    let deadline = Instant::now() + FIVE;
    loop {
        let (status, body) = b.admin_get("/ready");
        if body == want {
            if want == "draining\n" {
                assert!(status.contains("503"), "{status}");
            }
            return;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status} {body:?}, wanted {want:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_drains_open_connections_then_cuts_them() {
    let (_r1, _r2, mut b) = two_redis_bridge("defaults: { drain_timeout_ms: 1500 }\n");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    assert_eq!(g.roundtrip(1, &["SET", "k", "v"], b"\r\n"), b"+OK\r\n");
    let t0 = Instant::now();
    b.sigterm();
    wait_ready_body(&b, "draining\n");
    // New filter connections are refused...
    let deadline = Instant::now() + FIVE;
    while std::net::TcpStream::connect(&b.listen).is_ok() {
        assert!(Instant::now() < deadline, "the filter listener still accepts while draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...while the open one keeps working, new channels included.
    assert_eq!(g.roundtrip(1, &["GET", "k"], b"v\r\n"), b"$1\r\nv\r\n");
    g.open(2, "redis2", 0, 0);
    assert_eq!(g.roundtrip(2, &["PING"], b"\r\n"), b"+PONG\r\n");
    // At the end of the drain period: ERROR saying why, then FIN, then exit 0.
    let f = g
        .wait_for(FIVE, |f| f.kind == Kind::Error)
        .expect("ERROR at the end of the drain period");
    let waited = t0.elapsed();
    let msg = String::from_utf8_lossy(&f.payload).into_owned();
    assert!(msg.contains("shutting down"), "{msg}");
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(3000),
        "{waited:?}"
    );
    assert!(g.wait_eof(FIVE), "the connection was not closed after ERROR");
    let status = b.wait_exit(FIVE).expect("the bridge exits after the drain");
    assert!(status.success(), "{status}");
    let log = b.log_text();
    assert!(log.contains("connections_cut=1"), "{log}");
    assert!(log.contains("left_over=0"), "{log}");
}

#[test]
fn sigterm_exits_as_soon_as_the_last_connection_ends() {
    let (_r1, _r2, mut b) = two_redis_bridge("defaults: { drain_timeout_ms: 30000 }\n");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    b.sigterm();
    wait_ready_body(&b, "draining\n");
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    let t = Instant::now();
    drop(g);
    let status = b.wait_exit(FIVE).expect("the bridge exits once its last connection is gone");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let log = b.log_text();
    assert!(log.contains("connections_cut=0"), "{log}");
}

#[test]
fn a_draining_site_ends_its_incoming_tunnels_with_a_reason() {
    let (_near, _far, dc1, mut dc2) = {
        let near = Redis::start();
        let far = Redis::start();
        let dc2 = BridgeProc::start(&format!(
            "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nplaintext: true\nadmin_listen: 127.0.0.1:0\ndefaults: {{ drain_timeout_ms: 800 }}\nclusters:\n  far: {{ address: \"{}\" }}\n",
            far.addr()
        ));
        let dc1 = BridgeProc::start(&format!(
            "site: dc1\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nclusters:\n  near: {{ address: \"{}\" }}\n  far: {{ site: dc2 }}\nplaintext: true\nsites:\n  dc2: {{ grpc: \"http://{}\" }}\n",
            near.addr(),
            dc2.grpc.as_ref().unwrap()
        ));
        (near, far, dc1, dc2)
    };
    let mut g = dc1.client();
    g.open(1, "far", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    dc2.sigterm();
    wait_ready_body(&dc2, "draining\n");
    // The open tunnel still carries requests during the drain.
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::Io, "{msg}");
    assert!(msg.contains("shutting down") && msg.contains("dc2"), "{msg}");
    let status = dc2.wait_exit(FIVE).expect("dc2 exits after its drain");
    assert!(status.success(), "{status}");
    assert!(dc2.log_text().contains("tunnels_cut=1"), "{}", dc2.log_text());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let r = Redis::start();
    let cfg = config("dc1", &format!("clusters:\n  redis1: {{ address: \"{}\" }}\n", r.addr()));
    let mut b = BridgeProc::start_with_env(&cfg, &[("GEOMESH_LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
    let mut g = b.client();
    g.open(1, "nowhere", 0, 0);
    assert_eq!(g.expect_closed(1, FIVE).0, CloseCode::UnknownTarget);
    drop(g);
    b.sigterm();
    assert!(b.wait_exit(FIVE).expect("exits").success());
    let log = b.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.len() >= 3, "{log}");
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string() && e["message"].is_string(), "{e}");
    }
    let ready = events
        .iter()
        .find(|e| e["message"] == "bridge ready")
        .unwrap_or_else(|| panic!("no ready event: {log}"));
    assert_eq!(ready["site"], "dc1", "{ready}");
    let drained = events
        .iter()
        .find(|e| e["message"] == "drained")
        .unwrap_or_else(|| panic!("no drained event: {log}"));
    assert_eq!(drained["connections_cut"], 0, "{drained}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file: {log}");
}

fn probe(addr: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
        .args(["--probe", addr])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn probe_follows_ready_then_draining() {
    let (_r1, _r2, mut b) = two_redis_bridge("defaults: { drain_timeout_ms: 3000 }\n");
    let admin = b.admin.clone().unwrap();
    assert_eq!(probe(&admin), (true, String::new()));
    let mut g = b.client();
    // Accepted (not still in the listen queue, which the drain's close of the listener
    // would reset, letting the bridge exit at once).
    g.wake(1, 0);
    assert!(g.wait_for(FIVE, |f| f.kind == Kind::WakeReply).is_some());
    b.sigterm();
    wait_ready_body(&b, "draining\n");
    let (ok, err) = probe(&admin);
    assert!(!ok && err.contains("503") && err.contains("draining"), "{err}");
    drop(g);
    assert!(b.wait_exit(FIVE).expect("exits").success());
    let (ok, err) = probe(&admin);
    assert!(!ok && err.contains(&admin), "{err}");
}

/// Reads every frame until the bridge closes the connection: (frames, when the EOF came).
fn frames_until_eof(g: &mut Gmb, timeout: Duration) -> (Vec<Frame>, Instant) {
    let deadline = Instant::now() + timeout;
    let mut frames = Vec::new();
    loop {
        match g.next_frame(deadline.saturating_duration_since(Instant::now())) {
            Some(f) => frames.push(f),
            None if g.eof => return (frames, Instant::now()),
            None => panic!("no EOF within {timeout:?}; got {} frames", frames.len()),
        }
    }
}

fn data_of(frames: &[Frame], chan: u16) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.chan == chan && f.kind == Kind::BridgeData)
        .flat_map(|f| f.payload.iter().copied())
        .collect()
}

fn closed_of(frames: &[Frame], chan: u16) -> Vec<(CloseCode, String)> {
    frames
        .iter()
        .filter(|f| f.chan == chan && f.kind == Kind::Closed)
        .map(|f| {
            let c = geomesh_frame::Closed::parse(&f.payload).unwrap();
            (c.code, c.message.to_owned())
        })
        .collect()
}

/// A TCP peer that accepts and then neither answers nor closes (it ignores our FIN), for the
/// bound of the drain after a filter's end of stream.
struct Deaf {
    addr: String,
    _listener: std::net::TcpListener,
    held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Deaf {
    fn new() -> Deaf {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (l2, h2) = (l.try_clone().unwrap(), held.clone());
        std::thread::spawn(move || {
            for s in l2.incoming().flatten() {
                h2.lock().unwrap().push(s);
            }
        });
        Deaf {
            addr,
            _listener: l,
            held,
        }
    }
}

#[test]
fn a_half_closed_filter_connection_gets_every_reply_then_eof() {
    let (r1, _r2, b) = two_redis_bridge("");
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    assert_eq!(g.roundtrip(1, &["SET", "hc", "0"], b"\r\n"), b"+OK\r\n");
    // 2000 pipelined requests, a WAKE, then the end of stream, all in one write: the
    // backend must get every request, then the FIN, and every reply must come back.
    let mut b2 = Vec::new();
    geomesh_frame::encode_data(&mut b2, Kind::Data, 1, &{
        let mut batch = Vec::new();
        for _ in 0..2000 {
            batch.extend_from_slice(&resp(&["INCR", "hc"]));
        }
        batch
    });
    geomesh_frame::encode_wake(&mut b2, 7, 0);
    g.raw(&b2);
    g.sock.shutdown_write();
    let t0 = Instant::now();
    let (frames, eof_at) = frames_until_eof(&mut g, FIVE);
    let data = data_of(&frames, 1);
    let expected: Vec<u8> = (1..=2000).flat_map(|i| format!(":{i}\r\n").into_bytes()).collect();
    assert_eq!(data.len(), expected.len(), "{}", String::from_utf8_lossy(&data[data.len().saturating_sub(40)..]));
    assert_eq!(data, expected);
    assert!(frames.iter().any(|f| f.kind == Kind::WakeReply && parse_wake_reply(&f.payload) == Ok(7)));
    // redis-server closed after its replies: CLOSED(EOF), the last frame, then our EOF.
    assert_eq!(closed_of(&frames, 1).len(), 1);
    assert_eq!(closed_of(&frames, 1)[0].0, CloseCode::Eof);
    assert_eq!(frames.last().map(|f| f.kind), Some(Kind::Closed));
    assert!(eof_at - t0 < SEC, "{:?}", eof_at - t0);
    assert_eq!(r1.cmd(&["GET", "hc"]), b"$4\r\n2000\r\n");
}

#[test]
fn a_half_closed_filter_connection_waits_for_slow_backends_within_the_drain() {
    let r1 = Redis::start();
    let deaf = Deaf::new();
    let cfg = config(
        "dc1",
        &format!(
            "defaults: {{ half_close_drain_ms: 800 }}\nclusters:\n  redis1: {{ address: \"{}\" }}\n  deaf: {{ address: \"{}\" }}\n",
            r1.addr(),
            deaf.addr
        ),
    );
    let b = BridgeProc::start(&cfg);
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    g.open(2, "deaf", 0, 0);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    // A reply that comes late (DEBUG SLEEP 0.3 holds redis-server), a timer that fires during
    // the drain, and a backend that never closes.
    g.cmd(1, &["DEBUG", "SLEEP", "0.3"]);
    g.cmd(1, &["PING"]);
    g.send(2, b"hello\r\n");
    g.wake(9, 150);
    let t0 = Instant::now();
    g.sock.shutdown_write();
    let (frames, eof_at) = frames_until_eof(&mut g, FIVE);
    assert_eq!(data_of(&frames, 1), b"+OK\r\n+PONG\r\n");
    assert!(frames.iter().any(|f| f.kind == Kind::WakeReply && parse_wake_reply(&f.payload) == Ok(9)));
    assert_eq!(closed_of(&frames, 1).first().map(|c| c.0), Some(CloseCode::Eof));
    // The deaf backend got the bytes and the FIN, and is closed at the end of the drain.
    let c2 = closed_of(&frames, 2);
    assert_eq!(c2.len(), 1, "{c2:?}");
    assert_eq!(c2[0].0, CloseCode::Stalled, "{}", c2[0].1);
    assert!(c2[0].1.contains("800 ms"), "{}", c2[0].1);
    let waited = eof_at - t0;
    assert!(waited >= Duration::from_millis(750) && waited < Duration::from_millis(2000), "{waited:?}");
    let held = deaf.held.lock().unwrap();
    let mut s = held.first().expect("the deaf backend was connected").try_clone().unwrap();
    s.set_read_timeout(Some(SEC)).unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut got).unwrap();
    assert_eq!(got, b"hello\r\n", "the backend gets the bytes, then EOF");
}

#[test]
fn half_close_drain_zero_ends_at_once_and_no_channel_ends_at_once() {
    let (_r1, _r2, b) = two_redis_bridge("defaults: { half_close_drain_ms: 0 }\n");
    // No channel: the end of stream ends the connection at once (after the WAKE reply).
    let mut g = b.client();
    g.wake(3, 0);
    g.sock.shutdown_write();
    let t0 = Instant::now();
    let (frames, eof_at) = frames_until_eof(&mut g, FIVE);
    assert!(eof_at - t0 < Duration::from_millis(500), "{:?}", eof_at - t0);
    assert_eq!(frames.len(), 1);
    assert_eq!(parse_wake_reply(&frames[0].payload), Ok(3));
    // A drain of 0: a channel still open at the end of stream is closed with STALLED.
    let mut g = b.client();
    g.open(1, "redis1", 0, 0);
    g.cmd(1, &["BLPOP", "nothing", "0"]);
    std::thread::sleep(Duration::from_millis(100));
    g.sock.shutdown_write();
    let (frames, _) = frames_until_eof(&mut g, FIVE);
    let c = closed_of(&frames, 1);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(matches!(c[0].0, CloseCode::Stalled | CloseCode::Eof), "{c:?}");
}

#[test]
fn a_half_closed_filter_connection_gets_the_replies_of_another_site() {
    let (_near, far, dc1, _dc2) = two_sites();
    let mut g = dc1.client();
    g.open(1, "far", 0, 0);
    g.open(2, "near", 0, 0);
    assert_eq!(g.roundtrip(1, &["SET", "big", "0"], b"\r\n"), b"+OK\r\n");
    // A 6 MiB value in one DATA frame (more than a gRPC message may carry by default), then
    // 1000 pipelined requests, then the end of stream.
    let value = "v".repeat(6 << 20);
    g.cmd(1, &["SET", "big", &value]);
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend_from_slice(&resp(&["INCR", "n"]));
    }
    batch.extend_from_slice(&resp(&["STRLEN", "big"]));
    g.send(1, &batch);
    g.cmd(2, &["PING"]);
    g.sock.shutdown_write();
    let (frames, _) = frames_until_eof(&mut g, Duration::from_secs(10));
    let mut expected = b"+OK\r\n".to_vec();
    for i in 1..=1000 {
        expected.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    expected.extend_from_slice(format!(":{}\r\n", 6 << 20).as_bytes());
    let data = data_of(&frames, 1);
    assert!(
        data == expected,
        "channel 1: {} bytes, wanted {}; ends with {:?}; closed {:?}",
        data.len(),
        expected.len(),
        String::from_utf8_lossy(&data[data.len().saturating_sub(30)..]),
        closed_of(&frames, 1)
    );
    assert_eq!(data_of(&frames, 2), b"+PONG\r\n");
    let c1 = closed_of(&frames, 1);
    assert_eq!(c1.len(), 1, "{c1:?}");
    assert_eq!(c1[0].0, CloseCode::Eof, "{}", c1[0].1);
    assert!(c1[0].1.contains("dc2"), "{}", c1[0].1);
    assert_eq!(closed_of(&frames, 2).first().map(|c| c.0), Some(CloseCode::Eof));
    assert_eq!(far.cmd(&["GET", "n"]), b"$4\r\n1000\r\n");
}
