//! Stalled, closed and misbehaving shards, malformed client bytes (the pipeline's failures as Redis words them).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
