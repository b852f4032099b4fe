//! The pending queue as Redis clients see it: order, pipelining, cut bytes, limits (the kit's pipeline).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

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
