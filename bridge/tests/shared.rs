//! Shared channels (`OPEN_SHARED`, `UNSHARE`): the bridge as a real process, two filter
//! connections driven by a GMB/1 client, a real redis-server.

mod common;

use std::time::Duration;

use common::*;
use geomesh_frame::CloseCode;

const FIVE: Duration = Duration::from_secs(5);

fn bridge() -> (Redis, BridgeProc) {
    let r = Redis::start();
    let cfg = config(
        "dc1",
        &format!("clusters:\n  redis1: {{ address: \"{}\" }}\n", r.addr()),
    );
    let b = BridgeProc::start(&cfg);
    (r, b)
}

/// Client connections of the server other than the asking one.
fn server_connections(r: &Redis) -> usize {
    let list = String::from_utf8(r.cmd(&["CLIENT", "LIST"])).unwrap();
    list.lines()
        .filter(|l| l.contains("id="))
        .count()
        .saturating_sub(1)
}

#[test]
fn shared_channels_of_many_filter_connections_ride_a_few_connections_in_order() {
    let (r, b) = bridge();
    let mut gs: Vec<Gmb> = (0..6).map(|_| b.client()).collect();
    for g in gs.iter_mut() {
        g.open_shared(1, "redis1", 5000);
    }
    // Pipelined, one request cut across two DATA frames: whole requests go to the pool.
    for (i, g) in gs.iter_mut().enumerate() {
        let key = format!("n{i}");
        let mut bytes = Vec::new();
        for _ in 0..50 {
            bytes.extend(resp(&["INCR", &key]));
        }
        let (a, rest) = bytes.split_at(bytes.len() / 2 + 3);
        g.send(1, a);
        g.send(1, rest);
    }
    for g in gs.iter_mut() {
        let want: Vec<u8> = (1..=50)
            .flat_map(|n| format!(":{n}\r\n").into_bytes())
            .collect();
        let got = g.read_until(1, b":50\r\n", want.len(), FIVE);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
    let n = server_connections(&r);
    assert!(
        (1..=2).contains(&n),
        "six filter connections on {n} server connections"
    );
    let (_, stats) = b.admin_get("/stats");
    assert!(stats.contains("shared_channels_total 6\n"), "{stats}");
}

#[test]
fn unshare_moves_a_channel_to_its_own_connection_in_order() {
    let (r, b) = bridge();
    let mut g = b.client();
    g.open_shared(1, "redis1", 5000);
    let mut other = b.client();
    other.open_shared(1, "redis1", 5000);
    assert_eq!(
        other.roundtrip(1, &["SET", "a", "zero"], b"\r\n"),
        b"+OK\r\n"
    );
    // In flight on the pool, then UNSHARE and state in one write: answers keep their order.
    let mut bytes = resp(&["GET", "a"]);
    bytes.extend(resp(&["SELECT", "1"]));
    bytes.extend(resp(&["SET", "a", "one"]));
    bytes.extend(resp(&["GET", "a"]));
    let (before, after) = bytes.split_at(resp(&["GET", "a"]).len());
    g.send(1, before);
    g.unshare(1);
    g.send(1, after);
    let got = g.read_until(1, b"$3\r\none\r\n", 0, FIVE);
    assert_eq!(got, b"$4\r\nzero\r\n+OK\r\n+OK\r\n$3\r\none\r\n");
    // The shared connections never saw the SELECT.
    assert_eq!(
        other.roundtrip(1, &["GET", "a"], b"\r\n"),
        b"$4\r\nzero\r\n"
    );
    assert_eq!(r.cmd(&["GET", "a"]), b"$4\r\nzero\r\n");
    // UNSHARE again is a no-op.
    g.unshare(1);
    assert_eq!(g.roundtrip(1, &["GET", "a"], b"\r\n"), b"$3\r\none\r\n");
}

#[test]
fn a_killed_shared_connection_fails_its_channels_and_the_next_request_reconnects() {
    let (r, b) = bridge();
    let mut g = b.client();
    g.open_shared(1, "redis1", 5000);
    assert_eq!(g.roundtrip(1, &["PING"], b"\r\n"), b"+PONG\r\n");
    // A request in flight (a script that keeps the server busy for 2 s), then the server killed.
    g.cmd(
        1,
        &[
            "EVAL",
            "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] \
             repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - t0 > 2000000 return 1",
            "0",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut r = r;
    r.kill();
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert!(
        matches!(code, CloseCode::Eof | CloseCode::Io),
        "{code:?} {msg}"
    );
    assert!(msg.contains("redis1"), "{msg}");
    // Reopened: the pool connects again (refused now, the server is gone), named.
    g.open_shared(1, "redis1", 5000);
    g.cmd(1, &["GET", "x"]);
    let (code, msg, _) = g.expect_closed(1, FIVE);
    assert_eq!(code, CloseCode::Refused, "{msg}");
    assert!(msg.contains("redis1"), "{msg}");
}
