//! Connection state stored and replayed (state.rs).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
