//! Routing: single keys, same-shard keys, SCAN, local commands, unsupported commands, table changes (route.rs).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
    // The close follows the +OK in the callback that wrote it; the host closes the socket only
    // after those bytes left (the mux's `close_later`, the filters' one close-after-flush
    // mechanism: protocols/frame/src/mux/tests.rs, integration/tests/shell_close_later.rs).
    assert!(h.closed);
    assert_eq!(h.log("redis1"), Vec::<String>::new());
    // QUIT with nothing pending closes at once (the host flushes first).
    let mut h = Harness::new();
    h.cmd(&["QUIT"]);
    assert!(h.closed);
    assert_eq!(h.replies(), vec![Frame::ok()]);
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
