//! Kafka shards beyond one plain broker each, end to end through a real Envoy running
//! `geomesh_filter_kafka.wasm`, a real `geomesh-bridge` and real tansu brokers, with
//! confluent-kafka (librdkafka) and kafka-python clients: partition leaders reached through
//! endpoint links, topics created and deleted through the proxy, offsets of one group on two
//! shards across a restart of the proxy, a routing table replaced at run time (ECDS).

use std::time::Duration;

use anyhow::Result;
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::kafka_raw::{create_topics_v0, Raw};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::ports::free_port;
use geomesh_integration::{Tansu, TestDir};
use geomesh_kafka::codes::{api, NONE};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn config(port: u16, routes: &str) -> String {
    format!(
        "\
workload_type: kafka
default_cluster: kafka-a
upstream_timeout_ms: 5000
routing_table:
{routes}kafka:
  advertised_host: 127.0.0.1
  advertised_port: {port}
"
    )
}

fn run(dir: &TestDir, client: KafkaClient, bootstrap: &str, op: Value) -> Result<Value> {
    client.run(dir, bootstrap, op, T)
}

fn values(out: &Value) -> Vec<String> {
    let mut v: Vec<String> = out["records"]
        .as_array()
        .map(|a| a.iter().map(|r| r[4].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Record bytes per partition of `topic` on one broker, asked of that broker alone (a client
/// library would follow the leaders its Metadata advertises).
fn bytes_on(broker: &Tansu, topic: &str, partitions: &[i32]) -> Result<Vec<usize>> {
    let got = Raw::connect(broker.port)?.fetched_bytes(topic, partitions)?;
    got.iter()
        .map(|(p, code, n)| {
            anyhow::ensure!(*code == NONE, "{topic}/{p} on {}: error {code}", broker.port);
            Ok(*n)
        })
        .collect()
}

/// Shard kafka-a is reached at broker X (its bootstrap address in the bridge), whose Metadata
/// names broker Y (another real tansu) as the leader of every partition: what a Kafka cluster
/// of several brokers looks like to a client. The proxy must follow Metadata: produce and
/// fetch go to Y through an endpoint link the bridge allows (`clusters.kafka-a.endpoints`),
/// never to X. tansu 0.6 cannot form a cluster of several brokers itself (every storage engine
/// lists only the broker answering, as node 111, leader of everything), so X is a tansu
/// started with `--advertised-listener-url` naming Y, and both hold the topic.
#[test]
fn partitions_go_to_the_leader_a_shards_metadata_names_not_to_its_bootstrap_broker() -> Result<()> {
    let dir = TestDir::new("kafka-shards-leaders")?;
    let y = Tansu::start(&dir, "tansu-y")?;
    let x = Tansu::start_advertised(&dir, "tansu-x", Some(y.port))?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let cf = KafkaClient::Confluent;
    run(&dir, cf, &y.bootstrap(), json!({"op": "create", "topics": {"clicks": 3}}))?;
    run(&dir, cf, &b.bootstrap(), json!({"op": "create", "topics": {"orders": 2}}))?;
    // X sends any client library to Y (the address it advertises): ask X itself.
    let mut r = Raw::connect(x.port)?.call_plain(api::CREATE_TOPICS, 0, &create_topics_v0(&[("clicks", 3)], 10_000))?;
    let _topics = r.i32("topics")?;
    let _name = r.string(false, "name")?;
    assert_eq!(r.i16("error_code")?, NONE, "clicks created on X");

    let port = free_port()?;
    let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &config(port, "  orders: kafka-b\n"));
    opts.port = Some(port);
    opts.envoy.concurrency = 2;
    opts.endpoints = vec![("kafka-a".into(), format!("127.0.0.1:{}", y.port))];
    let mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", x.port), ("kafka-b", b.port)])?;
    let proxy = format!("127.0.0.1:{}", mesh.port);

    // One confluent producer over both shards (not idempotent: X issues the producer ids of
    // shard a, and Y, which is not X's cluster, would refuse them; brokers of one real cluster
    // share them).
    let recs: Vec<Value> = (0..12)
        .map(|i| json!([format!("k{i}"), format!("c{i}"), if i % 3 == 0 { "orders" } else { "clicks" }]))
        .collect();
    let out = run(&dir, cf, &proxy, json!({"op": "produce", "topic": "clicks", "records": recs, "acks": "all"}))?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(12), "{out}");
    // kafka-python too, to partition 1.
    let kp = KafkaClient::KafkaPython;
    let out = run(&dir, kp, &proxy, json!({"op": "produce", "topic": "clicks", "records": [["k", "kp1"], ["k", "kp2"]],
                                          "partition": 1, "acks": 1}))?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(2), "{out}");

    // Where the records are: every clicks record on Y, none on X; orders on b.
    let direct = run(&dir, cf, &y.bootstrap(), json!({"op": "consume", "topics": ["clicks"], "count": 10, "timeout_s": 20}))?;
    assert_eq!(direct["records"].as_array().map(Vec::len), Some(10), "{direct}");
    assert!(bytes_on(&y, "clicks", &[0, 1, 2])?.iter().all(|n| *n > 0));
    assert_eq!(bytes_on(&x, "clicks", &[0, 1, 2])?, vec![0, 0, 0], "nothing on the bootstrap broker");
    let direct = run(&dir, cf, &b.bootstrap(), json!({"op": "consume", "topics": ["orders"], "count": 4, "timeout_s": 20}))?;
    assert_eq!(direct["records"].as_array().map(Vec::len), Some(4), "{direct}");

    // Fetch follows the leader too: the proxy serves Y's records (X has none).
    let got = run(&dir, cf, &proxy, json!({"op": "consume", "topics": ["clicks", "orders"], "count": 14, "timeout_s": 30}))?;
    let mut want: Vec<String> = (0..12).map(|i| format!("c{i}")).chain(["kp1".into(), "kp2".into()]).collect();
    want.sort();
    assert_eq!(values(&got), want, "{got}");
    let got = run(&dir, kp, &proxy, json!({"op": "consume", "topics": ["clicks"], "count": 10, "timeout_s": 30}))?;
    assert_eq!(got["records"].as_array().map(Vec::len), Some(10), "{got}");
    assert!(mesh.envoy.wasm_failure().is_none(), "{:?}", mesh.envoy.wasm_failure());

    // Y goes away: its partitions get a retriable error within the budget, b is still served.
    drop(y);
    let out = run(&dir, cf, &proxy, json!({"op": "produce", "topic": "orders", "records": [["k", "still"]], "partition": 0, "acks": 1}))?;
    assert!(out["acked"][0][1].as_i64().is_some_and(|o| o >= 0), "{out}");
    let started = std::time::Instant::now();
    let mut raw = Raw::connect(mesh.port)?;
    let resp = raw.produce(&geomesh_integration::kafka_raw::produce_request(1, &[("clicks", 0, &["lost?"])]))?;
    let code = geomesh_integration::kafka_raw::codes(&resp)[0].2;
    assert!(matches!(code, geomesh_kafka::codes::NOT_LEADER_OR_FOLLOWER | geomesh_kafka::codes::REQUEST_TIMED_OUT), "{code}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(bytes_on(&x, "clicks", &[0])?, vec![0], "nothing fell back to X");
    Ok(())
}
