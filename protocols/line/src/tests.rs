//! The line protocol on the kit, against scripted servers (the kit's test harness).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

use geomesh_core::UpstreamFailureKind;
use geomesh_kit::testkit::{table, Harness, Shard};
use geomesh_kit::{Limits, Pipeline};

use super::*;

const TABLE: &str = "workload_type: redis\ndefault_cluster: a\nupstream_timeout_ms: 1000\nrouting_table:\n  user: b\n  tmp: { type: prefix, cluster: c }\n";

/// A line server: a map, one answer per line.
#[derive(Default)]
struct Server {
    map: BTreeMap<String, String>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    stalled: bool,
}

impl Shard for Server {
    fn feed(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        while let Some(i) = self.inbuf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=i).collect();
            let line = String::from_utf8(line).unwrap();
            let w: Vec<&str> = line.trim_end().split(' ').collect();
            let reply = match w.as_slice() {
                ["SET", k, v] => {
                    self.map.insert(k.to_string(), v.to_string());
                    "OK".to_owned()
                }
                ["GET", keys @ ..] => {
                    let vals: Vec<&str> = keys.iter().map(|k| self.map.get(*k).map_or("-", String::as_str)).collect();
                    format!("VALUES {}", vals.join(" "))
                }
                ["KEYS"] => {
                    let keys: Vec<&str> = self.map.keys().map(String::as_str).collect();
                    format!("KEYS {}", keys.join(" "))
                }
                _ => "ERR what".to_owned(),
            };
            if !self.stalled {
                self.out.extend_from_slice(reply.trim_end().as_bytes());
                self.out.push(b'\n');
            }
        }
    }
    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }
    fn close_connection(&mut self) {
        self.inbuf.clear();
        self.out.clear();
    }
}

fn harness() -> Harness<Pipeline<LineProtocol>, Server> {
    let t = table(TABLE);
    let limits = Limits {
        timeout_ms: 1000,
        granularity_ms: 50,
        store_keys: 0,
    };
    Harness::start(Pipeline::new(LineProtocol::default(), t.clone(), limits), t)
}

fn run(h: &mut Harness<Pipeline<LineProtocol>, Server>, line: &str) -> String {
    h.send(format!("{line}\n").as_bytes());
    h.deliver();
    let out = String::from_utf8(h.client.split().to_vec()).unwrap();
    out.trim_end().to_owned()
}

#[test]
fn routed_split_and_merged() {
    let mut h = harness();
    assert_eq!(run(&mut h, "SET user:1 alice"), "OK");
    assert_eq!(run(&mut h, "SET tmpx 1"), "OK");
    assert_eq!(run(&mut h, "SET other 2"), "OK");
    assert_eq!(h.fake("b").map.keys().collect::<Vec<_>>(), ["user:1"]);
    assert_eq!(h.fake("c").map.keys().collect::<Vec<_>>(), ["tmpx"]);
    assert_eq!(h.fake("a").map.keys().collect::<Vec<_>>(), ["other"]);
    assert_eq!(run(&mut h, "GET other user:1 nope tmpx"), "VALUES 2 alice - 1");
    assert_eq!(run(&mut h, "KEYS"), "KEYS other tmpx user:1");
    assert_eq!(run(&mut h, "FLY"), ERR_UNKNOWN);
    assert_eq!(run(&mut h, "GET"), ERR_ARITY);
}

#[test]
fn answers_keep_request_order_and_failures_name_the_cluster() {
    let mut h = harness();
    h.fake("b").stalled = true;
    h.send(b"GET user:1\nSET x 1\nGET x user:2\n");
    h.deliver();
    assert!(h.client.is_empty(), "the head waits for the stalled cluster");
    let now = h.now;
    h.timeout(now + 1100);
    let out = String::from_utf8(h.client.split().to_vec()).unwrap();
    assert_eq!(
        out,
        "ERR cluster b: no answer within 1000 ms\nOK\nERR cluster b: no answer within 1000 ms\n"
    );
    h.fake("b").stalled = false;
    h.close_upstream("b", UpstreamFailureKind::Refused, "");
    assert_eq!(run(&mut h, "GET user:1 x"), "VALUES - 1");
}

#[test]
fn a_long_line_is_refused_and_the_client_closed() {
    let mut h = harness();
    h.send(&vec![b'x'; MAX_LINE + 1]);
    assert!(h.closed);
    assert_eq!(String::from_utf8(h.client.to_vec()).unwrap(), format!("{ERR_TOO_LONG}\n"));
}

#[test]
fn getat_binds_an_endpoint_link_of_the_keys_cluster() {
    let mut h = harness();
    h.fakes
        .entry(ClusterId::endpoint(0))
        .or_default()
        .map
        .insert("user:1".into(), "there".into());
    assert_eq!(run(&mut h, "GETAT 10.0.0.9:7000 user:1"), "VALUES there");
    let b = h.id("b");
    assert_eq!(
        h.binds,
        vec![(ClusterId::endpoint(0), b, "10.0.0.9:7000".to_owned())]
    );
    // The same endpoint of the same cluster reuses its link; another gets the next one.
    run(&mut h, "GETAT 10.0.0.9:7000 user:2");
    run(&mut h, "GETAT 10.0.0.9:7000 other");
    let links: Vec<ClusterId> = h.binds.iter().map(|(l, _, _)| *l).collect();
    assert_eq!(
        links,
        [
            ClusterId::endpoint(0),
            ClusterId::endpoint(0),
            ClusterId::endpoint(1)
        ]
    );
    // A failed endpoint link names its cluster and endpoint.
    h.fakes.entry(ClusterId::endpoint(1)).or_default().stalled = true;
    assert_eq!(run(&mut h, "GETAT 10.0.0.9:7000 other"), "");
    h.close_upstream_id(
        ClusterId::endpoint(1),
        UpstreamFailureKind::UnknownTarget,
        "not allowed",
    );
    let out = String::from_utf8(h.client.split().to_vec()).unwrap();
    assert_eq!(out, "ERR cluster a at 10.0.0.9:7000: unknown cluster\n");
    for i in 2..MAX_ENDPOINTS {
        run(&mut h, &format!("GETAT 10.0.1.{i}:7000 k"));
    }
    assert_eq!(run(&mut h, "GETAT 10.0.2.1:7000 k"), ERR_ENDPOINTS);
}
