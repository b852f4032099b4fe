//! Kafka shards beyond one plain broker each, end to end through a real Envoy running
//! `geomesh_filter_kafka.wasm`, a real `geomesh-bridge` and real tansu brokers, with
//! confluent-kafka (librdkafka) and kafka-python clients: partition leaders reached through
//! endpoint links, topics created and deleted through the proxy, offsets of one group on two
//! shards across a restart of the proxy, a routing table replaced at run time (ECDS).

use std::time::Duration;

use anyhow::{Context, Result};
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::kafka_raw::{codes, create_topics_v0, produce_request, Raw};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::ports::free_port;
use geomesh_integration::{Tansu, TestDir};
use geomesh_kafka::codes::{api, NONE};
use geomesh_kafka::messages::metadata::{MetadataRequest, MetadataRequestTopic, MetadataResponse};
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
        .map(|a| {
            a.iter()
                .map(|r| r[4].as_str().unwrap_or_default().to_owned())
                .collect()
        })
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
            anyhow::ensure!(
                *code == NONE,
                "{topic}/{p} on {}: error {code}",
                broker.port
            );
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
    run(
        &dir,
        cf,
        &y.bootstrap(),
        json!({"op": "create", "topics": {"clicks": 3}}),
    )?;
    run(
        &dir,
        cf,
        &b.bootstrap(),
        json!({"op": "create", "topics": {"orders": 2}}),
    )?;
    // X sends any client library to Y (the address it advertises): ask X itself.
    let mut r = Raw::connect(x.port)?.call_plain(
        api::CREATE_TOPICS,
        0,
        &create_topics_v0(&[("clicks", 3)], 10_000),
    )?;
    let _topics = r.i32("topics")?;
    let _name = r.string(false, "name")?;
    assert_eq!(r.i16("error_code")?, NONE, "clicks created on X");

    let port = free_port()?;
    let mut opts = FilterMeshOptions::new(
        "geomesh_filter_kafka",
        "geomesh_kafka",
        &config(port, "  orders: kafka-b\n"),
    );
    opts.port = Some(port);
    opts.envoy.concurrency = 2;
    opts.endpoints = vec![("kafka-a".into(), format!("127.0.0.1:{}", y.port))];
    let mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", x.port), ("kafka-b", b.port)])?;
    let proxy = format!("127.0.0.1:{}", mesh.port);

    // One confluent producer over both shards (not idempotent: X issues the producer ids of
    // shard a, and Y, which is not X's cluster, would refuse them; brokers of one real cluster
    // share them).
    let recs: Vec<Value> = (0..12)
        .map(|i| {
            json!([
                format!("k{i}"),
                format!("c{i}"),
                if i % 3 == 0 { "orders" } else { "clicks" }
            ])
        })
        .collect();
    let out = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "clicks", "records": recs, "acks": "all"}),
    )?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(12), "{out}");
    // kafka-python too, to partition 1.
    let kp = KafkaClient::KafkaPython;
    let out = run(
        &dir,
        kp,
        &proxy,
        json!({"op": "produce", "topic": "clicks", "records": [["k", "kp1"], ["k", "kp2"]],
                                          "partition": 1, "acks": 1}),
    )?;
    assert_eq!(out["acked"].as_array().map(Vec::len), Some(2), "{out}");

    // Where the records are: every clicks record on Y, none on X; orders on b.
    let direct = run(
        &dir,
        cf,
        &y.bootstrap(),
        json!({"op": "consume", "topics": ["clicks"], "count": 10, "timeout_s": 20}),
    )?;
    assert_eq!(
        direct["records"].as_array().map(Vec::len),
        Some(10),
        "{direct}"
    );
    assert!(bytes_on(&y, "clicks", &[0, 1, 2])?.iter().all(|n| *n > 0));
    assert_eq!(
        bytes_on(&x, "clicks", &[0, 1, 2])?,
        vec![0, 0, 0],
        "nothing on the bootstrap broker"
    );
    let direct = run(
        &dir,
        cf,
        &b.bootstrap(),
        json!({"op": "consume", "topics": ["orders"], "count": 4, "timeout_s": 20}),
    )?;
    assert_eq!(
        direct["records"].as_array().map(Vec::len),
        Some(4),
        "{direct}"
    );

    // Fetch follows the leader too: the proxy serves Y's records (X has none).
    let got = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 14, "timeout_s": 30}),
    )?;
    let mut want: Vec<String> = (0..12)
        .map(|i| format!("c{i}"))
        .chain(["kp1".into(), "kp2".into()])
        .collect();
    want.sort();
    assert_eq!(values(&got), want, "{got}");
    let got = run(
        &dir,
        kp,
        &proxy,
        json!({"op": "consume", "topics": ["clicks"], "count": 10, "timeout_s": 30}),
    )?;
    assert_eq!(got["records"].as_array().map(Vec::len), Some(10), "{got}");
    assert!(
        mesh.envoy.wasm_failure().is_none(),
        "{:?}",
        mesh.envoy.wasm_failure()
    );

    // Y goes away: its partitions get a retriable error within the budget, b is still served.
    drop(y);
    let out = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "orders", "records": [["k", "still"]], "partition": 0, "acks": 1}),
    )?;
    assert!(out["acked"][0][1].as_i64().is_some_and(|o| o >= 0), "{out}");
    let started = std::time::Instant::now();
    let mut raw = Raw::connect(mesh.port)?;
    let resp = raw.produce(&produce_request(1, &[("clicks", 0, &["lost?"])]))?;
    let code = codes(&resp)[0].2;
    assert!(
        matches!(
            code,
            geomesh_kafka::codes::NOT_LEADER_OR_FOLLOWER | geomesh_kafka::codes::REQUEST_TIMED_OUT
        ),
        "{code}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        bytes_on(&x, "clicks", &[0])?,
        vec![0],
        "nothing fell back to X"
    );
    Ok(())
}

/// Group joins against tansu take seconds; consumer runs get at least this.
const GROUP_T: Duration = Duration::from_secs(90);

/// The mesh of two shards (`kafka-a`, `kafka-b`) on `port`, in its own directory.
fn mesh(
    dir: &TestDir,
    port: u16,
    routes: &str,
    a: &Tansu,
    b: &Tansu,
    ecds: bool,
) -> Result<FilterMesh> {
    let mut opts = FilterMeshOptions::new(
        "geomesh_filter_kafka",
        "geomesh_kafka",
        &config(port, routes),
    );
    opts.port = Some(port);
    opts.ecds = ecds;
    FilterMesh::start(dir, &opts, &[("kafka-a", a.port), ("kafka-b", b.port)])
}

/// Committed offsets of `group` as `bootstrap` (a broker directly, or the proxy) answers:
/// ("topic/partition", offset).
fn committed_on(
    dir: &TestDir,
    bootstrap: &str,
    group: &str,
    parts: &[(&str, i32)],
) -> Result<Vec<(String, i64)>> {
    let out = run(
        dir,
        KafkaClient::Confluent,
        bootstrap,
        json!({"op": "committed", "group": group, "partitions": parts}),
    )?;
    Ok(out["committed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        format!("{}/{}", c[0].as_str().unwrap_or("?"), c[1]),
                        c[2].as_i64().unwrap_or(-2),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// A consumer group over topics of two shards commits; each topic's offsets are stored on the
/// broker that holds the topic, under the group's id (clicks on kafka-a, the group's home,
/// with the member's generation; orders on kafka-b as a standalone commit), read there
/// directly; after the proxy (Envoy and bridge) is restarted the group resumes at exactly
/// those offsets on both shards.
#[test]
fn a_group_commits_each_topics_offsets_on_its_own_shard_and_resumes_there_after_a_proxy_restart(
) -> Result<()> {
    let dir = TestDir::new("kafka-shards-offsets")?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let cf = KafkaClient::Confluent;
    run(
        &dir,
        cf,
        &a.bootstrap(),
        json!({"op": "create", "topics": {"clicks": 2}}),
    )?;
    run(
        &dir,
        cf,
        &b.bootstrap(),
        json!({"op": "create", "topics": {"orders": 2}}),
    )?;
    let port = free_port()?;
    let routes = "  orders: kafka-b\n";
    let first = mesh(&dir, port, routes, &a, &b, false)?;
    let proxy = format!("127.0.0.1:{port}");
    let recs: Vec<Value> = (0..12)
        .map(|i| {
            json!([
                format!("k{i}"),
                format!("r{i}"),
                if i % 2 == 0 { "orders" } else { "clicks" }
            ])
        })
        .collect();
    run(
        &dir,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "clicks", "records": recs, "acks": "all"}),
    )?;
    let got = cf.run(
        &dir,
        &proxy,
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 12, "group": "g-resume", "commit": true, "timeout_s": 60}),
        GROUP_T,
    )?;
    assert_eq!(values(&got).len(), 12, "{got}");

    let all = [("clicks", 0), ("clicks", 1), ("orders", 0), ("orders", 1)];
    let on_a = committed_on(&dir, &a.bootstrap(), "g-resume", &all[..2])?;
    let on_b = committed_on(&dir, &b.bootstrap(), "g-resume", &all[2..])?;
    let sum = |v: &[(String, i64)]| v.iter().map(|(_, o)| *o).sum::<i64>();
    assert_eq!(
        (sum(&on_a), sum(&on_b)),
        (6, 6),
        "clicks' offsets on a {on_a:?}, orders' on b {on_b:?}"
    );
    // Through the proxy the group sees both shards' offsets as one.
    let via = committed_on(&dir, &proxy, "g-resume", &all)?;
    assert_eq!(
        via,
        on_a.iter().chain(on_b.iter()).cloned().collect::<Vec<_>>()
    );

    // The proxy restarts (new Envoy, new bridge, same listener); two new records; the group
    // resumes at the committed offsets on both shards: it reads only those.
    drop(first);
    let dir2 = TestDir::new("kafka-shards-offsets-restarted")?;
    let second = mesh(&dir2, port, routes, &a, &b, false)?;
    run(
        &dir2,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "clicks", "records": [["n", "new-a"], ["n", "new-b", "orders"]], "acks": "all"}),
    )?;
    let again = cf.run(
        &dir2,
        &proxy,
        json!({"op": "consume", "topics": ["clicks", "orders"], "count": 2, "group": "g-resume", "commit": true, "timeout_s": 60}),
        GROUP_T,
    )?;
    assert_eq!(values(&again), vec!["new-a", "new-b"], "{again}");
    assert_eq!(
        sum(&committed_on(&dir2, &a.bootstrap(), "g-resume", &all[..2])?),
        7
    );
    assert_eq!(
        sum(&committed_on(&dir2, &b.bootstrap(), "g-resume", &all[2..])?),
        7
    );
    assert!(
        second.envoy.wasm_failure().is_none(),
        "{:?}",
        second.envoy.wasm_failure()
    );
    Ok(())
}

/// The leader (virtual node id) the proxy's Metadata gives partition 0 of `topic`.
fn leader_via(raw: &mut Raw, topic: &str) -> Result<i32> {
    let req = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            topic_id: [0; 16],
            name: Some(topic.to_owned().into()),
            tagged: Default::default(),
        }]),
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
        tagged: Default::default(),
    };
    let mut r = raw.call(api::METADATA, 1, &req.encode(1))?;
    let md = MetadataResponse::decode(&mut r, 1)?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_deref() == Some(topic.as_bytes()))
        .context("topic in Metadata")?;
    Ok(t.partitions.first().context("partition 0")?.leader_id)
}

/// The routing table replaced through ECDS while a client connection is open: its next
/// Produce follows the new table, Metadata shows the new owner (its virtual broker), records
/// written before stay where they were; a new client sees the same.
#[test]
fn a_routing_table_replaced_at_run_time_moves_new_produce_and_metadata_ownership() -> Result<()> {
    let dir = TestDir::new("kafka-shards-ecds")?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let cf = KafkaClient::Confluent;
    // `orders` exists on both: the table decides which one the proxy shows and writes.
    run(
        &dir,
        cf,
        &a.bootstrap(),
        json!({"op": "create", "topics": {"orders": 1}}),
    )?;
    run(
        &dir,
        cf,
        &b.bootstrap(),
        json!({"op": "create", "topics": {"orders": 1}}),
    )?;
    let port = free_port()?;
    let mut m = mesh(&dir, port, "  orders: kafka-b\n", &a, &b, true)?;
    m.envoy
        .wait_log("configuration generation 1 loaded", Duration::from_secs(20))?;
    let mut raw = Raw::connect(port)?;
    assert_eq!(
        leader_via(&mut raw, "orders")?,
        1_000_111,
        "shard 1's node 111"
    );
    let before = raw.produce(&produce_request(1, &[("orders", 0, &["before"])]))?;
    assert_eq!(codes(&before)[0].2, NONE);

    m.set_filter_config(&config(port, "  orders: kafka-a\n"))?;
    m.envoy
        .wait_log("configuration generation 2 loaded", Duration::from_secs(20))?;
    // The same connection, next requests: the new table.
    let after = raw.produce(&produce_request(1, &[("orders", 0, &["after"])]))?;
    assert_eq!(codes(&after)[0].2, NONE);
    assert_eq!(leader_via(&mut raw, "orders")?, 111, "shard 0's node 111");
    // A new client too.
    let proxy = format!("127.0.0.1:{port}");
    run(
        &dir,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "orders", "records": [["k", "after-new-client"]], "partition": 0, "acks": 1}),
    )?;

    let direct = |t: &Tansu, n: usize| {
        run(
            &dir,
            cf,
            &t.bootstrap(),
            json!({"op": "consume", "topics": ["orders"], "count": n, "timeout_s": 20}),
        )
    };
    assert_eq!(values(&direct(&a, 2)?), vec!["after", "after-new-client"]);
    assert_eq!(
        values(&direct(&b, 1)?),
        vec!["before"],
        "records written before stay"
    );
    assert!(
        m.envoy.wasm_failure().is_none(),
        "{:?}",
        m.envoy.wasm_failure()
    );
    Ok(())
}

/// Topic names a broker holds, asked of it directly.
fn topics_on(dir: &TestDir, bootstrap: &str) -> Result<Vec<String>> {
    let md = run(
        dir,
        KafkaClient::Confluent,
        bootstrap,
        json!({"op": "topics"}),
    )?;
    let mut v: Vec<String> = md["topics"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    Ok(v)
}

/// confluent-kafka's AdminClient (and kafka-python's) create and delete topics through the
/// proxy: one CreateTopics naming topics of both shards is split by the table, each broker
/// gets only its own topics (read on each broker directly), DeleteTopics the same way.
#[test]
fn admin_clients_create_and_delete_topics_each_on_the_shard_the_table_names() -> Result<()> {
    let dir = TestDir::new("kafka-shards-admin")?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let port = free_port()?;
    let m = mesh(
        &dir,
        port,
        "  orders: kafka-b\n  b-: { type: prefix, cluster: kafka-b }\n",
        &a,
        &b,
        false,
    )?;
    let proxy = format!("127.0.0.1:{port}");
    let cf = KafkaClient::Confluent;

    let out = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "create", "topics": {"clicks": 3, "orders": 2, "b-audit": 1}}),
    )?;
    assert_eq!(out["created"], json!(["b-audit", "clicks", "orders"]));
    run(
        &dir,
        KafkaClient::KafkaPython,
        &proxy,
        json!({"op": "create", "topics": {"views": 2, "b-views": 1}}),
    )?;
    assert_eq!(topics_on(&dir, &a.bootstrap())?, vec!["clicks", "views"]);
    assert_eq!(
        topics_on(&dir, &b.bootstrap())?,
        vec!["b-audit", "b-views", "orders"]
    );
    let md = run(&dir, cf, &proxy, json!({"op": "topics"}))?;
    assert_eq!(
        md["topics"],
        json!({"b-audit": 1, "b-views": 1, "clicks": 3, "orders": 2, "views": 2}),
        "{md}"
    );

    // Created where the data goes: a record for orders lands on b.
    run(
        &dir,
        cf,
        &proxy,
        json!({"op": "produce", "topic": "orders", "records": [["k", "o1"]], "partition": 1, "acks": "all"}),
    )?;
    let direct = run(
        &dir,
        cf,
        &b.bootstrap(),
        json!({"op": "consume", "topics": ["orders"], "count": 1, "timeout_s": 20}),
    )?;
    assert_eq!(values(&direct), vec!["o1"]);

    // Creating one again: the owning broker's own answer (TOPIC_ALREADY_EXISTS) reaches the client.
    let again = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "create", "topics": {"orders": 2}}),
    );
    assert!(
        again.is_err_and(|e| e.to_string().contains("already exists")),
        "the broker's error comes back"
    );

    let out = run(
        &dir,
        cf,
        &proxy,
        json!({"op": "delete", "topics": ["clicks", "b-audit"]}),
    )?;
    assert_eq!(out["deleted"], json!(["b-audit", "clicks"]));
    assert_eq!(topics_on(&dir, &a.bootstrap())?, vec!["views"]);
    assert_eq!(topics_on(&dir, &b.bootstrap())?, vec!["b-views", "orders"]);
    assert!(
        m.envoy.wasm_failure().is_none(),
        "{:?}",
        m.envoy.wasm_failure()
    );
    Ok(())
}
