//! MULTI/EXEC/WATCH on one cluster (transaction.rs).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
