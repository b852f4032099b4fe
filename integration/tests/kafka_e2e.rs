//! Kafka sharding end to end: two real tansu brokers as shards behind a real
//! `geomesh-bridge` and a real Envoy running `geomesh_filter_kafka.wasm` (V8); clients are
//! confluent-kafka (librdkafka) and raw Kafka frames written with geomesh's own codec (one
//! Produce naming topics of both shards, garbage, oversized and unknown frames). Where each
//! record landed is read from each broker directly.
//!
//! Table: topics `orders`, `orders.*` and `b-*` on kafka-b, everything else on kafka-a; a
//! group's home shard is routed by its id the same way.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::kafka_raw::{codes, produce_request, Raw};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::ports::free_port;
use geomesh_integration::{Tansu, TestDir};
use geomesh_kafka::codes::{api, NONE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNSUPPORTED_VERSION};
use geomesh_kafka::messages::api_versions::ApiVersionsResponse;
use geomesh_kafka::messages::leader_epoch::{EpochPartition, EpochTopic, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
/// Group joins against tansu take seconds; consumer runs get at least this.
const GROUP_T: Duration = Duration::from_secs(90);

fn table(port: u16) -> String {
    format!(
        "\
workload_type: kafka
default_cluster: kafka-a
upstream_timeout_ms: 5000
routing_table:
  orders: kafka-b
  b-: {{ type: prefix, cluster: kafka-b }}
kafka:
  advertised_host: 127.0.0.1
  advertised_port: {port}
"
    )
}

struct Topology {
    dir: TestDir,
    a: Tansu,
    b: Tansu,
    mesh: FilterMesh,
}

impl Topology {
    fn start(name: &str) -> Result<Topology> {
        Self::start_workers(name, 1)
    }

    /// With `workers` Envoy worker threads (one Wasm VM each: a client's connections spread
    /// over them).
    fn start_workers(name: &str, workers: u32) -> Result<Topology> {
        let dir = TestDir::new(name)?;
        let a = Tansu::start(&dir, "tansu-a")?;
        let b = Tansu::start(&dir, "tansu-b")?;
        let port = free_port()?;
        let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &table(port));
        opts.port = Some(port);
        opts.envoy.concurrency = workers;
        let mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", a.port), ("kafka-b", b.port)])?;
        Ok(Topology { dir, a, b, mesh })
    }

    fn proxy(&self) -> String {
        format!("127.0.0.1:{}", self.mesh.port)
    }

    /// Creates topics directly on the broker that owns them (CreateTopics is not carried).
    fn create(&self, broker: &Tansu, topics: Value) -> Result<()> {
        KafkaClient::Confluent.run(&self.dir, &broker.bootstrap(), json!({"op": "create", "topics": topics}), T)?;
        Ok(())
    }

    fn run(&self, bootstrap: &str, op: Value, timeout: Duration) -> Result<Value> {
        KafkaClient::Confluent.run(&self.dir, bootstrap, op, timeout)
    }

    /// Every record of `topics` on `broker`, read directly: [topic, partition, offset, key, value].
    fn records_on(&self, broker: &Tansu, topics: &[&str], count: usize) -> Result<Vec<Value>> {
        let out = self.run(
            &broker.bootstrap(),
            json!({"op": "consume", "topics": topics, "count": count, "timeout_s": 20}),
            T,
        )?;
        Ok(out["records"].as_array().cloned().unwrap_or_default())
    }

    fn topics_on(&self, broker: &Tansu) -> Result<Vec<String>> {
        let md = self.run(&broker.bootstrap(), json!({"op": "topics"}), T)?;
        Ok(md["topics"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default())
    }

    fn check_envoy(&self) {
        assert!(self.mesh.envoy.wasm_failure().is_none(), "{:?}", self.mesh.envoy.wasm_failure());
    }
}

fn values(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r[4].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn one_produce_over_two_shards_lands_each_topic_on_its_broker_and_a_killed_shard_costs_only_its_partitions() -> Result<()> {
    let mut t = Topology::start("kafka-e2e-split")?;
    t.create(&t.a, json!({"events": 2}))?;
    t.create(&t.b, json!({"orders": 2, "b-audit": 1}))?;

    // One Produce naming three topics on two shards, two partitions of one topic.
    let mut raw = Raw::connect(t.mesh.port)?;
    let req = produce_request(
        -1,
        &[
            ("orders", 1, &["o1", "o2"]),
            ("events", 0, &["e1"]),
            ("b-audit", 0, &["a1"]),
            ("orders", 0, &["o0"]),
        ],
    );
    let resp = raw.produce(&req)?;
    assert_eq!(
        codes(&resp),
        vec![
            ("orders".into(), 1, NONE, 0),
            ("orders".into(), 0, NONE, 0),
            ("events".into(), 0, NONE, 0),
            ("b-audit".into(), 0, NONE, 0),
        ]
    );
    // Each broker directly: its own topics only, the records where they were sent.
    // Two partitions: a consumer may return either first (order within one is checked below).
    let mut orders = values(&t.records_on(&t.b, &["orders"], 3)?);
    orders.sort();
    assert_eq!(orders, vec!["o0", "o1", "o2"]);
    assert_eq!(values(&t.records_on(&t.b, &["b-audit"], 1)?), vec!["a1"]);
    assert_eq!(values(&t.records_on(&t.a, &["events"], 1)?), vec!["e1"]);
    let (on_a, on_b) = (t.topics_on(&t.a)?, t.topics_on(&t.b)?);
    assert!(on_a.contains(&"events".to_owned()) && !on_a.contains(&"orders".to_owned()), "{on_a:?}");
    assert!(on_b.contains(&"orders".to_owned()) && !on_b.contains(&"events".to_owned()), "{on_b:?}");

    // acks=0: nothing comes back, both brokers have the records.
    raw.send_frame(api::PRODUCE, 9, &produce_request(0, &[("events", 1, &["z-a"]), ("b-audit", 0, &["z-b"])]).encode(9))?;
    let after = raw.produce(&produce_request(1, &[("events", 1, &["after-zero"])]))?;
    assert_eq!(codes(&after), vec![("events".into(), 1, NONE, 1)], "the acks=0 batch came first");
    assert_eq!(values(&t.records_on(&t.b, &["b-audit"], 2)?), vec!["a1", "z-b"]);

    // Shard b killed while the producer keeps going: its partitions get a retriable error within
    // the budget, shard a's are stored.
    t.b.proc.stop()?;
    let started = Instant::now();
    let resp = raw.produce(&produce_request(-1, &[("events", 0, &["e2"]), ("orders", 0, &["lost?"])]))?;
    let got = codes(&resp);
    assert_eq!(&got[0], &("events".to_owned(), 0, NONE, 1));
    assert!(
        matches!(got[1].2, NOT_LEADER_OR_FOLLOWER | REQUEST_TIMED_OUT),
        "{got:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(values(&t.records_on(&t.a, &["events"], 4)?).len(), 4);
    // The confluent client keeps producing to the live shard through the proxy.
    let out = t.run(
        &t.proxy(),
        json!({"op": "produce", "topic": "events", "records": [["k", "still-up"]], "partition": 1, "acks": 1}),
        T,
    )?;
    assert_eq!(out["acked"], json!([[1, 2]]));
    t.check_envoy();
    Ok(())
}

#[test]
fn confluent_producers_and_a_consumer_group_see_one_cluster_over_two_shards() -> Result<()> {
    // Two Envoy workers: the producer's InitProducerId and its Produce requests may reach
    // different Wasm VMs, which share the producer ids through Proxy-Wasm shared data.
    let t = Topology::start_workers("kafka-e2e-clients", 2)?;
    t.create(&t.a, json!({"clicks": 3}))?;
    t.create(&t.b, json!({"orders": 2}))?;

    // The proxy's Metadata: both topics, two virtual brokers at the proxy's address.
    let md = t.run(&t.proxy(), json!({"op": "topics"}), T)?;
    assert_eq!(md["topics"]["clicks"], json!(3), "{md}");
    assert_eq!(md["topics"]["orders"], json!(2), "{md}");
    let port = i64::from(t.mesh.port);
    assert_eq!(md["brokers"], json!([[111, "127.0.0.1", port], [1_000_111, "127.0.0.1", port]]));

    // Shard a has issued producer ids to two other producers, b to none: the client gets a's
    // next id (3), which b never issued (tansu refuses a batch under an id it did not issue
    // with UNKNOWN_PRODUCER_ID), so b's batches must carry b's own id (1), CRC recomputed.
    t.create(&t.a, json!({"warmup": 1}))?;
    for _ in 0..2 {
        t.run(
            &t.a.bootstrap(),
            json!({"op": "produce", "topic": "warmup", "records": [["x", "direct"]], "idempotent": true}),
            T,
        )?;
    }

    // One idempotent producer (acks=all) writing both shards; order within a partition kept.
    let mut recs = Vec::new();
    for i in 0..30 {
        recs.push(json!([format!("k{i}"), format!("c{i}"), "clicks"]));
        recs.push(json!([format!("k{i}"), format!("o{i}"), "orders"]));
    }
    let out = t.run(
        &t.proxy(),
        json!({"op": "produce", "topic": "clicks", "records": recs, "partition": 0, "idempotent": true, "acks": "all"}),
        T,
    )?;
    let acked = out["acked"].as_array().context("acked")?;
    for (i, a) in acked.iter().enumerate() {
        assert_eq!(a, &json!([0, i / 2]), "record {i}: offsets in order per partition: {out}");
    }
    assert_eq!(values(&t.records_on(&t.a, &["clicks"], 30)?), (0..30).map(|i| format!("c{i}")).collect::<Vec<_>>());
    assert_eq!(values(&t.records_on(&t.b, &["orders"], 30)?), (0..30).map(|i| format!("o{i}")).collect::<Vec<_>>());

    // acks=1 and acks=0 through the proxy too.
    t.run(&t.proxy(), json!({"op": "produce", "topic": "orders", "records": [["a", "one"]], "partition": 1, "acks": 1}), T)?;
    t.run(&t.proxy(), json!({"op": "produce", "topic": "clicks", "records": [["a", "zero"]], "partition": 2, "acks": 0}), T)?;
    let on_a = t.records_on(&t.a, &["clicks"], 31)?;
    assert!(on_a.iter().any(|r| r[4] == "zero" && r[1] == 2), "{on_a:?}");

    // A consumer group over both shards' topics (home shard: kafka-a for `g-shop`), committing.
    let total = 30 + 31;
    let first = t.run(
        &t.proxy(),
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": total + 1, "group": "g-shop",
               "commit": true, "timeout_s": 45}),
        GROUP_T,
    )?;
    let got = first["records"].as_array().context("records")?;
    assert_eq!(got.len(), total + 1, "{first}");
    let orders_p0: Vec<String> =
        got.iter().filter(|r| r[0] == "orders" && r[1] == 0).map(|r| r[4].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(orders_p0, (0..30).map(|i| format!("o{i}")).collect::<Vec<_>>(), "order within a partition");

    // After the consumer is gone, new records; the same group resumes at the committed offsets.
    t.run(
        &t.proxy(),
        json!({"op": "produce", "topic": "orders", "records": [["n", "new-b", "orders"], ["n", "new-a", "clicks"]],
               "partition": 0, "acks": "all"}),
        T,
    )?;
    let second = t.run(
        &t.proxy(),
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 2, "group": "g-shop", "timeout_s": 45}),
        GROUP_T,
    )?;
    let mut again = values(second["records"].as_array().context("records")?);
    again.sort();
    assert_eq!(again, vec!["new-a", "new-b"], "{second}");
    t.check_envoy();
    Ok(())
}

#[test]
fn garbage_oversized_and_unknown_frames_get_an_error_or_a_close_and_nothing_else_breaks() -> Result<()> {
    let t = Topology::start("kafka-e2e-faults")?;
    t.create(&t.a, json!({"events": 1}))?;

    // HTTP to a Kafka port: its first four bytes read as a size far above the limit.
    let mut g = Raw::connect(t.mesh.port)?;
    g.s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    assert!(g.closed_within(Duration::from_secs(5)), "garbage closes");

    // A frame announcing 100 MiB: closed at the prefix, nothing buffered.
    let mut big = Raw::connect(t.mesh.port)?;
    big.s.write_all(&(100i32 << 20).to_be_bytes())?;
    big.s.write_all(&[0u8; 1024])?;
    assert!(big.closed_within(Duration::from_secs(5)), "oversized closes");

    // An API the proxy does not carry: an error answer for its correlation id, then the close.
    let mut u = Raw::connect(t.mesh.port)?;
    let id = u.send_frame(api::FETCH, 12, &[])?;
    let frame = {
        // Rewrite the key to 71 (unknown): send by hand.
        let mut f = Vec::new();
        f.extend_from_slice(&10i32.to_be_bytes());
        f.extend_from_slice(&71i16.to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&77i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f
    };
    // The Fetch above has an empty body: the proxy answers INVALID_REQUEST and closes first.
    let first = u.read_frame()?.context("an answer to the malformed Fetch")?;
    assert_eq!(i32::from_be_bytes(first[..4].try_into()?), id);
    let mut u2 = Raw::connect(t.mesh.port)?;
    u2.s.write_all(&frame)?;
    let ans = u2.read_frame()?.context("an answer to the unknown API")?;
    assert_eq!(i32::from_be_bytes(ans[..4].try_into()?), 77);
    assert_eq!(i16::from_be_bytes(ans[4..6].try_into()?), UNSUPPORTED_VERSION);
    assert!(u2.closed_within(Duration::from_secs(5)));

    // OffsetForLeaderEpoch: tansu 0.6 does not offer it (it closes the connection on it), so
    // the merged ApiVersions leaves it out and a client sending it anyway gets
    // UNSUPPORTED_VERSION for each partition from the proxy, on a connection that stays open.
    let mut ok = Raw::connect(t.mesh.port)?;
    let mut r = ok.call(api::API_VERSIONS, 3, &[0, 0, 0])?;
    let (versions, _) = ApiVersionsResponse::decode(&mut r, 3)?;
    assert_eq!(versions.error_code, NONE);
    assert!(versions.api_keys.iter().any(|a| a.api_key == api::FETCH));
    assert!(
        versions.api_keys.iter().all(|a| a.api_key != api::OFFSET_FOR_LEADER_EPOCH),
        "key 23 offered: {:?}",
        versions.api_keys
    );
    for (conn, version) in [(&mut ok, 2), (&mut Raw::connect(t.mesh.port)?, 4)] {
        let req = OffsetForLeaderEpochRequest {
            replica_id: -1,
            topics: vec![EpochTopic {
                topic: "events".into(),
                partitions: vec![EpochPartition {
                    partition: 0,
                    current_leader_epoch: -1,
                    leader_epoch: 0,
                    tagged: Default::default(),
                }],
                tagged: Default::default(),
            }],
            tagged: Default::default(),
        };
        let mut r = conn.call(api::OFFSET_FOR_LEADER_EPOCH, version, &req.encode(version))?;
        let resp = OffsetForLeaderEpochResponse::decode(&mut r, version)?;
        let got: Vec<(i32, i16)> =
            resp.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition, p.error_code))).collect();
        assert_eq!(got, vec![(0, UNSUPPORTED_VERSION)], "v{version}");
    }

    // The proxy still serves everyone else (the same connection too).
    let resp = ok.produce(&produce_request(1, &[("events", 0, &["fine"])]))?;
    assert_eq!(codes(&resp), vec![("events".into(), 0, NONE, 0)]);
    t.check_envoy();
    if t.mesh.envoy.wasm_failure().is_some() {
        bail!("wasm failure");
    }
    Ok(())
}

#[test]
fn kafka_python_a_second_client_library_produces_and_consumes_through_the_proxy() -> Result<()> {
    let t = Topology::start("kafka-e2e-kafka-python")?;
    t.create(&t.a, json!({"clicks": 2}))?;
    t.create(&t.b, json!({"orders": 1}))?;
    let kp = KafkaClient::KafkaPython;
    for (topic, tag) in [("clicks", "c"), ("orders", "o")] {
        let recs: Vec<Value> = (0..5).map(|i| json!([format!("k{i}"), format!("{tag}{i}")])).collect();
        let out = kp.run(
            &t.dir,
            &t.proxy(),
            json!({"op": "produce", "topic": topic, "records": recs, "partition": 0, "idempotent": true, "acks": "all"}),
            T,
        )?;
        assert_eq!(out["acked"], json!((0..5).map(|i| json!([0, i])).collect::<Vec<_>>()), "{topic}: {out}");
    }
    assert_eq!(values(&t.records_on(&t.b, &["orders"], 5)?), (0..5).map(|i| format!("o{i}")).collect::<Vec<_>>());
    assert_eq!(values(&t.records_on(&t.a, &["clicks"], 5)?), (0..5).map(|i| format!("c{i}")).collect::<Vec<_>>());
    // Every partition of both shards' topics assigned (no group: kafka-python's group join
    // through the proxy is fast enough to sync an assignment made before its first Metadata,
    // and tansu 0.6 answers the rejoin's SyncGroup at the same generation with that first,
    // empty assignment: protocols/kafka/README.md "Consumer groups").
    let got = kp.run(
        &t.dir,
        &t.proxy(),
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 10, "timeout_s": 30}),
        T,
    )?;
    let mut v = values(got["records"].as_array().context("records")?);
    v.sort();
    let mut want: Vec<String> = (0..5).flat_map(|i| [format!("c{i}"), format!("o{i}")]).collect();
    want.sort();
    assert_eq!(v, want, "{got}");
    t.check_envoy();
    Ok(())
}
