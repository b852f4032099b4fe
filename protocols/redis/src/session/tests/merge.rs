//! Merges: MGET/MSET split per shard, broadcasts (merge.rs).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
