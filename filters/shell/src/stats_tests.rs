#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use geomesh_core::metrics::{CommandStat, ConfigStat, PipelineStat, UpstreamStat};
use geomesh_core::Config;

use super::*;

/// Envoy as a test sees it: every call, and metrics by id.
#[derive(Default)]
struct FakeEnvoy {
    /// (kind, name) by id - 1.
    defined: Vec<(MetricKind, String)>,
    /// Every host call, in order: `define NAME`, `incr ID N`, `record ID V`.
    calls: Vec<String>,
    /// Ids this host answers NotFound for.
    unknown: Vec<u32>,
    /// Answers NotFound for every id.
    forgets_everything: bool,
}

impl MetricHost for FakeEnvoy {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        self.calls.push(format!("define {name}"));
        self.defined.push((kind, name.to_owned()));
        Some(self.defined.len() as u32)
    }

    fn increment(&mut self, id: u32, n: u64) -> Recorded {
        self.calls.push(format!("incr {id} {n}"));
        if self.forgets_everything || self.unknown.contains(&id) {
            return Recorded::UnknownId;
        }
        assert_eq!(self.defined[id as usize - 1].0, MetricKind::Counter);
        assert!(n > 0, "Envoy refuses an increment of 0");
        Recorded::Ok
    }

    fn record(&mut self, id: u32, value: u64) -> Recorded {
        self.calls.push(format!("record {id} {value}"));
        assert_eq!(self.defined[id as usize - 1].0, MetricKind::Histogram);
        Recorded::Ok
    }
}

fn table() -> Rc<RoutingTable> {
    let c = Config::parse(b"workload_type: redis\ndefault_cluster: shard_a\nrouting_table:\n  u: shard_b\n").unwrap();
    Rc::new(RoutingTable::new(&c).unwrap())
}

fn cmd(family: &'static str, stat: CommandStat) -> Metric {
    Metric::Command { family, stat }
}

#[test]
fn names_use_the_prefix_and_the_tables_cluster_names() {
    let t = table();
    let s = Stats::new(WorkloadType::Redis, "shop", Some(t.clone()));
    let b = t.cluster_id("shard_b").unwrap();
    assert_eq!(s.name(&cmd("get", CommandStat::Total)), "redis.shop.command.get.total");
    assert_eq!(
        s.name(&Metric::Upstream { cluster: b, stat: UpstreamStat::Timeouts }),
        "redis.shop.upstream.shard_b.rq_timeout"
    );
    // An id the table does not name (an endpoint link) still gets a name.
    assert_eq!(
        s.name(&Metric::Upstream { cluster: ClusterId::endpoint(3), stat: UpstreamStat::Requests }),
        "redis.shop.upstream.unknown.rq_total"
    );
    let h = Stats::new(WorkloadType::Http, "edge", None);
    assert_eq!(h.name(&Metric::Config(ConfigStat::Rejected)), "http.edge.config.rejected");
    assert_eq!(h.stat_prefix(), "edge");
}

#[test]
fn one_host_call_per_distinct_counter_and_none_when_nothing_was_recorded() {
    let (mut reg, mut envoy) = (Registry::default(), FakeEnvoy::default());
    let s = Stats::new(WorkloadType::Redis, "p", Some(table()));
    let mut m = Meter::new();
    s.drain_with(&mut m, &mut reg, &mut envoy);
    assert!(envoy.calls.is_empty());

    for _ in 0..100 {
        m.request("get");
        m.answered("get", true, 1);
    }
    m.pipeline(PipelineStat::Split);
    s.drain_with(&mut m, &mut reg, &mut envoy);
    assert!(m.is_empty());
    let increments: Vec<&String> = envoy.calls.iter().filter(|c| c.starts_with("incr")).collect();
    assert_eq!(increments, ["incr 1 100", "incr 2 100", "incr 3 1"]);
    assert_eq!(envoy.calls.iter().filter(|c| c.starts_with("record")).count(), 100);
    assert_eq!(envoy.defined.len(), 4);
    assert_eq!(envoy.defined[2].1, "redis.p.splitter.split");
    assert_eq!(envoy.defined[3], (MetricKind::Histogram, "redis.p.command.get.latency".to_owned()));

    // The next callback defines nothing again.
    envoy.calls.clear();
    m.request("get");
    s.drain_with(&mut m, &mut reg, &mut envoy);
    assert_eq!(envoy.calls, ["incr 1 1"]);
    // A zero increment makes no call (Envoy refuses it).
    envoy.calls.clear();
    m.add(cmd("get", CommandStat::Total), 0);
    s.drain_with(&mut m, &mut reg, &mut envoy);
    assert!(envoy.calls.is_empty());
}

#[test]
fn names_are_defined_once_per_vm_across_configurations() {
    let (mut reg, mut envoy) = (Registry::default(), FakeEnvoy::default());
    let first = Stats::new(WorkloadType::Redis, "p", Some(table()));
    let reloaded = Stats::new(WorkloadType::Redis, "p", Some(table()));
    let renamed = Stats::new(WorkloadType::Redis, "q", Some(table()));
    for s in [&first, &reloaded, &renamed, &first] {
        s.record_with(Metric::Config(ConfigStat::Reload), 1, &mut reg, &mut envoy);
    }
    assert_eq!(
        envoy.calls,
        ["define redis.p.config.reload", "incr 1 1", "incr 1 1", "define redis.q.config.reload", "incr 2 1", "incr 1 1"]
    );
}

#[test]
fn an_id_the_host_does_not_know_is_defined_again_once() {
    let (mut reg, mut envoy) = (Registry::default(), FakeEnvoy::default());
    let s = Stats::new(WorkloadType::Mqtt, "p", None);
    let m = Metric::Pipeline(PipelineStat::Replayed);
    s.record_with(m, 2, &mut reg, &mut envoy);
    envoy.unknown.push(1);
    envoy.calls.clear();
    s.record_with(m, 3, &mut reg, &mut envoy);
    assert_eq!(envoy.calls, ["incr 1 3", "define mqtt.p.splitter.replayed", "incr 2 3"]);
    // Still unknown after the second definition: dropped, no loop.
    envoy.forgets_everything = true;
    envoy.calls.clear();
    s.record_with(m, 1, &mut reg, &mut envoy);
    assert_eq!(envoy.calls, ["incr 2 1", "define mqtt.p.splitter.replayed", "incr 3 1"]);
}

#[test]
fn new_names_stop_at_the_bound() {
    let (mut reg, mut envoy) = (Registry::default(), FakeEnvoy::default());
    for i in 0..MAX_NAMES {
        reg.ids.insert(format!("n{i}"), 0);
    }
    let s = Stats::new(WorkloadType::Redis, "p", None);
    s.record_with(Metric::Config(ConfigStat::Reload), 1, &mut reg, &mut envoy);
    assert!(envoy.calls.is_empty());
    // A known name still counts.
    reg.ids.insert("redis.p.config.rejected".into(), 7);
    envoy.defined.resize(7, (MetricKind::Counter, String::new()));
    s.record_with(Metric::Config(ConfigStat::Rejected), 1, &mut reg, &mut envoy);
    assert_eq!(envoy.calls, ["incr 7 1"]);
}

/// Shared data as Envoy keeps it: value and token per key, a new token per write.
#[derive(Default)]
struct FakeShared {
    map: HashMap<String, (Vec<u8>, u32)>,
    next: u32,
    /// A write another VM makes between this one's get and set, once.
    interleave: Option<Vec<u8>>,
}

impl SharedData for FakeShared {
    fn get(&mut self, key: &str) -> Option<(Option<Vec<u8>>, Option<u32>)> {
        Some(match self.map.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if let Some(other) = self.interleave.take() {
            self.next += 1;
            self.map.insert(key.to_owned(), (other, self.next));
        }
        let current = self.map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        self.next += 1;
        self.map.insert(key.to_owned(), (value.to_vec(), self.next));
        true
    }
}

#[test]
fn an_accepted_configuration_is_counted_by_the_first_vm_only() {
    let mut shared = FakeShared::default();
    let (a, b, c) = (fnv1a(b"config a"), fnv1a(b"config b"), fnv1a(b"config c"));
    assert_ne!(a, b);
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325u64.to_le_bytes());
    // Base VM, main thread's VM, two workers: one count.
    let counted: Vec<bool> = (0..4).map(|_| first_to_see(&mut shared, "k", &a)).collect();
    assert_eq!(counted, [true, false, false, false]);
    // An update counts once, a rollback too; another plugin has its own key.
    assert!(first_to_see(&mut shared, "k", &b));
    assert!(!first_to_see(&mut shared, "k", &b));
    assert!(first_to_see(&mut shared, "k", &a));
    assert!(first_to_see(&mut shared, "k2", &a));
    // Another VM writes between our read and our write: we read again.
    shared.interleave = Some(b.to_vec());
    assert!(!first_to_see(&mut shared, "k", &b), "the other VM counted b");
    shared.interleave = Some(a.to_vec());
    assert!(first_to_see(&mut shared, "k", &c), "the other VM counted a, not c");
}

#[test]
fn the_prefix_in_use_is_read_back_from_shared_data() {
    let mut shared = FakeShared::default();
    assert_eq!(current_prefix(&mut shared, "k"), None);
    let mut value = fnv1a(b"text").to_vec();
    assert!(first_to_see(&mut shared, "k", &value));
    assert_eq!(current_prefix(&mut shared, "k"), None, "a hash without a prefix");
    value.extend_from_slice(b"shop");
    assert!(first_to_see(&mut shared, "k", &value));
    assert_eq!(current_prefix(&mut shared, "k").as_deref(), Some("shop"));
}

#[test]
fn a_rejected_configuration_counts_under_the_prefix_it_names_or_the_current_one() {
    assert_eq!(rejected_prefix(b"workload_type: redis\nstat_prefix: shop\nrouting_table: 3\n", Some("old")), "shop");
    assert_eq!(rejected_prefix(b"workload_type: redis\nstat_prefix: a.b\n", Some("old")), "old");
    assert_eq!(rejected_prefix(b"{{{", Some("old")), "old");
    assert_eq!(rejected_prefix(b"{{{", None), "geomesh");
}
