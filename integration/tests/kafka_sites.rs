//! A Kafka shard at another site: tansu `kafka-a` at dc1 next to Envoy, tansu `kafka-b` at dc2,
//! reached through dc1's `geomesh-bridge` and its gRPC tunnel to dc2's bridge, over a relay
//! that adds WAN latency and can be cut (`geomesh_integration::sites`, as for MQTT). Clients
//! (confluent-kafka, raw frames) see one cluster; where each record landed is read on each
//! broker directly; the filter's metrics are read from Envoy's stats.
//!
//! ```text
//! client ─▶ Envoy [geomesh_filter_kafka ─ tcp_proxy] ─▶ bridge dc1 ─▶ tansu kafka-a
//!                                                          └─gRPC─ relay (WAN) ─▶ bridge dc2 ─▶ tansu kafka-b
//! ```
//!
//! kafka-b's Metadata names its broker by its own address: the filter opens that endpoint in
//! cluster kafka-b, which dc1's bridge carries to dc2, whose bridge allows its own cluster's
//! address (docs/bridge-protocol.md "Endpoint targets").

use std::time::{Duration, Instant};

use anyhow::Result;
use geomesh_integration::bridge::Bridge;
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::kafka_raw::{codes, produce_request, Raw};
use geomesh_integration::sites::{TwoSites, TwoSitesOptions};
use geomesh_integration::{free_port, Envoy, Relay, Tansu, TestDir};
use geomesh_kafka::codes::{NONE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
/// One way WAN delay between the sites.
const WAN: Duration = Duration::from_millis(5);
/// The filter's budget for a shard's answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(3000);
/// The `timeout_ms` of `kafka_raw::produce_request`'s Produce.
const PRODUCE_TIMEOUT: Duration = Duration::from_millis(5000);

fn table(port: u16) -> String {
    format!(
        "\
workload_type: kafka
default_cluster: kafka-a
local_cluster: kafka-a
upstream_timeout_ms: {}
routing_table:
  orders: kafka-b
kafka:
  advertised_host: 127.0.0.1
  advertised_port: {port}
",
        UPSTREAM_TIMEOUT.as_millis()
    )
}

struct Sites {
    dir: TestDir,
    a: Tansu,
    b: Tansu,
    envoy: Envoy,
    port: u16,
    wan: Relay,
    _dc1: Bridge,
    _dc2: Bridge,
}

fn sites(name: &str) -> Result<Sites> {
    let dir = TestDir::new(name)?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let port = free_port()?;
    let two = TwoSites::start(
        &dir,
        &TwoSitesOptions {
            wasm: "geomesh_filter_kafka",
            plugin: "geomesh_kafka",
            config: &table(port),
            port,
            local: ("kafka-a", a.port),
            remote: ("kafka-b", b.port),
            wan_delay: WAN,
        },
    )?;
    Ok(Sites {
        dir,
        a,
        b,
        envoy: two.envoy,
        port,
        wan: two.wan,
        _dc1: two.dc1,
        _dc2: two.dc2,
    })
}

impl Sites {
    fn proxy(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn run(&self, bootstrap: &str, op: Value) -> Result<Value> {
        KafkaClient::Confluent.run(&self.dir, bootstrap, op, T)
    }

    /// The values of every record of `topics` on `broker`, read directly, sorted.
    fn values_on(&self, broker: &Tansu, topics: &[&str], count: usize) -> Result<Vec<String>> {
        let out = self.run(
            &broker.bootstrap(),
            json!({"op": "consume", "topics": topics, "count": count, "timeout_s": 20}),
        )?;
        let mut v: Vec<String> = out["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r[4].as_str().map(str::to_owned))
            .collect();
        v.sort();
        Ok(v)
    }

    fn topics_on(&self, broker: &Tansu) -> Result<Vec<String>> {
        let md = self.run(&broker.bootstrap(), json!({"op": "topics"}))?;
        Ok(md["topics"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// A counter of the filter (`wasmcustom.kafka.geomesh.<name>`), 0 when absent.
    fn stat(&self, name: &str) -> u64 {
        self.envoy
            .stat(&format!("wasmcustom.kafka.geomesh.{name}"))
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

#[test]
fn a_shard_at_another_site_is_produced_to_consumed_from_and_cut_off_alone() -> Result<()> {
    let s = sites("kafka-sites")?;

    // Topics created through the proxy, each on the shard the table names (orders at dc2).
    let out = s.run(&s.proxy(), json!({"op": "create", "topics": {"events": 1, "orders": 2}}))?;
    assert!(out.get("error").is_none(), "{out}");
    let (on_a, on_b) = (s.topics_on(&s.a)?, s.topics_on(&s.b)?);
    assert!(
        on_a.contains(&"events".to_owned()) && !on_a.contains(&"orders".to_owned()),
        "{on_a:?}"
    );
    assert!(
        on_b.contains(&"orders".to_owned()) && !on_b.contains(&"events".to_owned()),
        "{on_b:?}"
    );

    // One confluent-kafka producer writes both topics; each record lands on its own site.
    let recs: Vec<Value> = (0..6)
        .map(|i| {
            let topic = if i % 2 == 0 { "orders" } else { "events" };
            json!([format!("k{i}"), format!("{topic}-{i}"), topic])
        })
        .collect();
    let out = s.run(
        &s.proxy(),
        json!({"op": "produce", "topic": "events", "records": recs, "acks": "all"}),
    )?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(6), "{out}");
    assert_eq!(
        s.values_on(&s.b, &["orders"], 3)?,
        vec!["orders-0", "orders-2", "orders-4"],
        "orders on dc2's broker"
    );
    assert_eq!(
        s.values_on(&s.a, &["events"], 3)?,
        vec!["events-1", "events-3", "events-5"],
        "events on dc1's broker"
    );

    // Read back through the proxy: both sites' records, as one cluster.
    let got = s.run(
        &s.proxy(),
        json!({"op": "consume", "topics": ["events", "orders"], "count": 6, "timeout_s": 30}),
    )?;
    assert_eq!(got["records"].as_array().map(Vec::len), Some(6), "{got}");

    // The kit's metrics: per request type, per shard (filters/shell/README.md "Metrics").
    assert!(s.stat("command.produce.total") >= 1, "produce counted");
    assert!(s.stat("command.fetch.total") >= 1, "fetch counted");
    assert!(s.stat("upstream.kafka-a.rq_total") >= 1);
    assert!(s.stat("upstream.kafka-b.rq_total") >= 1, "dc2's shard counted");

    // The WAN cut: dc2's partitions get a retriable error within the budget, dc1's are stored.
    let mut raw = Raw::connect(s.port)?;
    let warm = raw.produce(&produce_request(-1, &[("events", 0, &["warm-a"]), ("orders", 0, &["warm-b"])]))?;
    assert!(codes(&warm).iter().all(|c| c.2 == NONE), "{:?}", codes(&warm));
    s.wan.cut();
    let started = Instant::now();
    let resp = raw.produce(&produce_request(-1, &[("events", 0, &["during-cut"]), ("orders", 0, &["lost?"])]))?;
    let got = codes(&resp);
    assert_eq!((got[0].0.as_str(), got[0].2), ("events", NONE), "{got:?}");
    assert_eq!(got[1].0, "orders");
    assert!(
        matches!(got[1].2, NOT_LEADER_OR_FOLLOWER | REQUEST_TIMED_OUT),
        "{got:?}"
    );
    // The filter waits for a Produce its budget plus the request's own timeout_ms (5000 in
    // `produce_request`: the broker may take that long), never more.
    let waited = started.elapsed();
    assert!(
        waited < UPSTREAM_TIMEOUT + PRODUCE_TIMEOUT + Duration::from_secs(2),
        "answered after {waited:?}"
    );
    eprintln!("WAN cut: dc2's partition answered {} after {waited:?}", got[1].2);
    assert!(s.values_on(&s.a, &["events"], 5)?.contains(&"during-cut".to_owned()));

    // The WAN back: the same client's next produce to dc2 is stored (the tunnel reconnects).
    s.wan.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = raw.produce(&produce_request(-1, &[("orders", 0, &["after-cut"])]))?;
        if codes(&resp)[0].2 == NONE {
            break;
        }
        assert!(Instant::now() < deadline, "dc2 not back: {:?}", codes(&resp));
        std::thread::sleep(Duration::from_millis(500));
    }
    // 5 or 6 records: "lost?" was answered REQUEST_TIMED_OUT or NOT_LEADER_OR_FOLLOWER, and as
    // with Kafka a timed-out record may or may not be stored (the relay held its bytes).
    let out = s.run(
        &s.b.bootstrap(),
        json!({"op": "consume", "topics": ["orders"], "count": 6, "timeout_s": 8}),
    )?;
    let on_b: Vec<&str> = out["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[4].as_str())
        .collect();
    assert!(on_b.contains(&"after-cut"), "{on_b:?}");
    assert!(s.envoy.wasm_failure().is_none(), "{:?}", s.envoy.wasm_failure());
    Ok(())
}
