//! The pipeline's mechanisms that the Redis and line protocols do not use, on a small scripted
//! protocol (one line per request or answer):
//!
//! * `ID n key` goes to the key's cluster, answered `ACK n` in any order (correlation keys);
//! * `PUB key` is sent with no answer owed (MQTT QoS 0, Kafka acks=0) and answered locally;
//! * `ALL` goes to every cluster, a failed part is handed to the merge (Kafka-style);
//! * `LOGIN u` is stored and replayed on every cluster (`StoreTargets::Active`); a server that
//!   refuses it is reset;
//! * `VIA host:port` goes to an endpoint link of cluster `a`;
//! * `MSG ...` from a server is pushed to the client.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::{Bytes, BytesMut};
use geomesh_core::{ClusterId, Metric, RoutingTable, Session, UpstreamFailureKind};
use geomesh_kit::testkit::{table, Harness, Shard};
use geomesh_kit::{
    Answer, Ctx, Disposition, Failure, Limits, MergeCx, Part, PartSend, Pipeline, Plan, Protocol, SlotView, StoreTargets,
};

#[derive(Debug, Clone)]
struct L(Bytes);

impl Answer for L {
    fn raw(&self) -> &Bytes {
        &self.0
    }
    fn is_error(&self) -> bool {
        self.0.starts_with(b"ERR")
    }
}

fn line(s: &str) -> Bytes {
    Bytes::from(format!("{s}\n"))
}

fn words(l: &L) -> Vec<String> {
    String::from_utf8_lossy(&l.0).split_whitespace().map(str::to_owned).collect()
}

#[derive(Default)]
struct Script {
    lost: Vec<ClusterId>,
}

impl Protocol for Script {
    type Request = L;
    type Answer = L;
    /// Whether failed parts are merged (`ALL`) rather than failing the request.
    type Merge = bool;
    type Link = ();
    type Expect = ();

    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<L>, Bytes> {
        Ok(buf.iter().position(|b| *b == b'\n').map(|i| L(buf.split_to(i + 1).freeze())))
    }

    fn decode_answer(&mut self, _: &mut (), buf: &mut BytesMut, _: Option<&()>) -> Result<Option<L>, String> {
        Ok(buf.iter().position(|b| *b == b'\n').map(|i| L(buf.split_to(i + 1).freeze())))
    }

    fn family(&mut self, r: &L) -> &'static str {
        match words(r).first().map(String::as_str) {
            Some("ID") => "id",
            Some("ALL") => "all",
            _ => "other",
        }
    }

    fn plan(&mut self, r: L, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let w = words(&r);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        let table = cx.table().clone();
        match w.as_slice() {
            ["ID", n, key] => {
                let mut p = PartSend::new(table.route(key.as_bytes()), r.0.to_vec());
                p.key = n.parse().ok();
                let budget = cx.budget();
                cx.dispatch(vec![p], false, budget);
                Plan::Done
            }
            ["PUB", key] => {
                cx.send_only(table.route(key.as_bytes()), &r.0);
                Plan::Local(line("OK"))
            }
            ["ALL"] => Plan::Broadcast { bytes: r.0, merge: true },
            ["LOGIN", _] => {
                cx.store_and_send(vec![(0, r.0.clone())], &r.0, (), true, StoreTargets::Active);
                Plan::Done
            }
            ["VIA", endpoint] => {
                let link = ClusterId::endpoint(0);
                cx.bind(link, table.default_cluster(), endpoint);
                Plan::Forward {
                    cluster: link,
                    bytes: line("WHO"),
                }
            }
            _ => Plan::Refuse(line("ERR unknown")),
        }
    }

    fn classify(&mut self, _: ClusterId, _: &mut (), a: &L, _: Option<SlotView<'_, ()>>) -> Disposition {
        let w = words(a);
        match w.first().map(String::as_str) {
            Some("MSG") => Disposition::Push(a.0.clone()),
            Some("ACK") => w.get(1).and_then(|n| n.parse().ok()).map_or(Disposition::Answer, Disposition::Keyed),
            _ => Disposition::Answer,
        }
    }

    fn merge(&mut self, _: &mut bool, parts: &[Part<L>], cx: &mut MergeCx<'_>) -> Bytes {
        let all: Vec<String> = parts
            .iter()
            .map(|p| match (&p.answer, &p.failure) {
                (Some(a), _) => String::from_utf8_lossy(&a.0).trim_end().to_owned(),
                (None, Some(_)) => format!("FAIL:{}", cx.table().cluster_name(p.cluster)),
                (None, None) => "?".to_owned(),
            })
            .collect();
        if parts.first().and_then(|p| p.answer.as_ref()).is_some_and(Answer::is_error) {
            cx.rollback();
        }
        line(&all.join(" "))
    }

    fn failure_answer(&mut self, cluster: ClusterId, f: &Failure, table: &RoutingTable) -> Bytes {
        match f {
            Failure::Reset(m) => line(m),
            _ => line(&format!("ERR {}", table.cluster_name(cluster))),
        }
    }

    fn fails_whole_request(&self, partial: &bool) -> bool {
        !partial
    }

    fn replay_refused(&mut self, cluster: ClusterId, _: usize, _: &L, table: &RoutingTable) -> String {
        format!("ERR reset {}", table.cluster_name(cluster))
    }

    fn state_lost(&mut self, _: &bool, cluster: ClusterId, table: &RoutingTable) -> String {
        format!("ERR lost {}", table.cluster_name(cluster))
    }

    fn link_lost(&mut self, cluster: ClusterId, _: ()) -> bool {
        self.lost.push(cluster);
        false
    }
}

/// A server: answers `ID n k` with `ACK n`, `ALL` and `WHO` with its name, `LOGIN u` with `OK`
/// (or `ERR` when `refuse`); with `hold`, answers wait in `held` until the test releases them.
#[derive(Default)]
struct Server {
    name: String,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    held: Vec<String>,
    hold: bool,
    refuse: bool,
    got: Vec<String>,
}

impl Shard for Server {
    fn feed(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        while let Some(i) = self.inbuf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = self.inbuf.drain(..=i).collect();
            let l = String::from_utf8(l).unwrap().trim_end().to_owned();
            self.got.push(l.clone());
            let w: Vec<&str> = l.split(' ').collect();
            let a = match w.as_slice() {
                ["ID", n, _] => format!("ACK {n}"),
                ["ALL"] | ["WHO"] => self.name.clone(),
                ["LOGIN", _] if self.refuse => "ERR no".to_owned(),
                ["LOGIN", _] => "OK".to_owned(),
                _ => continue,
            };
            if self.hold {
                self.held.push(a);
            } else {
                self.out.extend_from_slice(format!("{a}\n").as_bytes());
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
        self.held.clear();
    }
}

const TABLE: &str = "workload_type: line\ndefault_cluster: a\nupstream_timeout_ms: 1000\nrouting_table:\n  b: b\n  c: c\n";

type H = Harness<Pipeline<Script>, Server>;

fn harness() -> H {
    let t = table(TABLE);
    let limits = Limits {
        timeout_ms: 1000,
        granularity_ms: 10,
        store_keys: 1,
    };
    let mut h: H = Harness::start(Pipeline::new(Script::default(), t.clone(), limits), t);
    for n in ["a", "b", "c"] {
        h.fake(n).name = n.to_owned();
    }
    h
}

fn take(h: &mut H) -> String {
    String::from_utf8(h.client.split().to_vec()).unwrap()
}

#[test]
fn keyed_answers_settle_their_own_slot_and_leave_in_request_order() {
    let mut h = harness();
    h.fake("b").hold = true;
    h.send(b"ID 1 b\nID 2 b\nID 3 b\n");
    let held: Vec<String> = std::mem::take(&mut h.fake("b").held);
    // The server answers 3, then 1, then 2.
    for i in [2, 0, 1] {
        h.fake("b").out.extend_from_slice(format!("{}\n", held[i]).as_bytes());
        h.deliver();
    }
    assert_eq!(take(&mut h), "ACK 1\nACK 2\nACK 3\n");
    // An answer no slot waits for breaks the link, and what waits on it fails.
    h.send(b"ID 4 b\n");
    h.fake("b").out.extend_from_slice(b"ACK 9\n");
    h.deliver();
    assert_eq!(take(&mut h), "ERR b\n");
    assert!(h.closed_upstreams.contains(&h.id("b")));
}

#[test]
fn unanswered_sends_and_pushes() {
    let mut h = harness();
    h.fake("b").hold = true;
    h.send(b"PUB b\nID 1 b\n");
    assert_eq!(h.fake("b").got, ["PUB b", "ID 1 b"]);
    h.fake("b").out.extend_from_slice(b"MSG hello\nACK 1\n");
    h.deliver();
    assert_eq!(take(&mut h), "OK\nMSG hello\nACK 1\n", "the push goes out between whole answers");
}

#[test]
fn a_failed_part_is_merged_with_the_others() {
    let mut h = harness();
    h.fake("b").hold = true;
    h.fake("c").hold = true;
    h.send(b"ALL\n");
    h.deliver();
    h.close_upstream("b", UpstreamFailureKind::Refused, "");
    assert_eq!(take(&mut h), "", "c still owes its part");
    let now = h.now;
    h.timeout(now + 1100);
    assert_eq!(take(&mut h), "a FAIL:b FAIL:c\n");
    assert_eq!(h.s.protocol().lost, [h.id("b")]);
}

#[test]
fn stored_state_goes_everywhere_and_is_replayed_on_reopened_links() {
    let mut h = harness();
    h.send(b"LOGIN u\n");
    h.deliver();
    assert_eq!(take(&mut h), "OK OK OK\n");
    for n in ["a", "b", "c"] {
        assert_eq!(h.fake(n).got, ["LOGIN u"], "{n}");
    }
    // A link that closes is reopened with the state first.
    h.close_upstream("c", UpstreamFailureKind::Eof, "");
    h.send(b"ID 1 c\n");
    h.deliver();
    assert_eq!(h.fake("c").got, ["LOGIN u", "LOGIN u", "ID 1 c"]);
    assert_eq!(take(&mut h), "ACK 1\n");
    // A server that refuses the replay is reset; what it answered after fails.
    h.close_upstream("b", UpstreamFailureKind::Eof, "");
    h.fake("b").refuse = true;
    h.send(b"ID 2 b\n");
    h.deliver();
    assert_eq!(take(&mut h), "ERR reset b\n");
    assert!(h.closed_upstreams.contains(&h.id("b")));
}

#[test]
fn a_refused_store_is_rolled_back() {
    let mut h = harness();
    h.fake("a").refuse = true;
    h.send(b"LOGIN u\n");
    h.deliver();
    assert_eq!(take(&mut h), "ERR no OK OK\n");
    assert!(h.s.store().is_empty(), "the local cluster refused: nothing stays stored");
}

#[test]
fn endpoint_links_are_bound_before_use() {
    let mut h = harness();
    let link = ClusterId::endpoint(0);
    h.fakes.entry(link).or_default().name = "broker7".into();
    h.send(b"VIA 10.0.0.7:9092\n");
    assert_eq!(h.binds, [(link, h.id("a"), "10.0.0.7:9092".to_owned())]);
    assert_eq!(h.fakes[&link].got, ["WHO"]);
    h.deliver();
    assert_eq!(take(&mut h), "broker7\n");
}

#[test]
fn the_meter_counts_requests_answers_and_pipeline_events() {
    let mut h = harness();
    h.send(b"ID 1 b\nALL\nNOPE\n");
    h.deliver();
    let m: Vec<(Metric, u64)> = h.s.meter().unwrap().drain().collect();
    let count = |f: &dyn Fn(&Metric) -> bool| m.iter().filter(|(x, _)| f(x)).count();
    use geomesh_core::metrics::{CommandStat, PipelineStat, UpstreamStat};
    assert_eq!(count(&|x| matches!(x, Metric::Command { stat: CommandStat::Total, .. })), 3);
    assert_eq!(count(&|x| matches!(x, Metric::Command { stat: CommandStat::Latency, .. })), 3);
    assert_eq!(count(&|x| *x == Metric::Pipeline(PipelineStat::Broadcast)), 1);
    assert_eq!(count(&|x| *x == Metric::Pipeline(PipelineStat::Unsupported)), 1);
    assert_eq!(
        count(&|x| matches!(x, Metric::Upstream { stat: UpstreamStat::Requests, .. })),
        4,
        "ID to b, ALL to a, b, c"
    );
}
