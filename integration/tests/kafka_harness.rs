//! The Kafka part of the harness checked against real brokers and real clients: two tansu
//! brokers side by side, each client library producing to and consuming from each broker
//! directly (no Envoy), and what each broker holds read back from that broker.

use std::time::{Duration, Instant};

use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::{Tansu, TestDir};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn records(n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("k{i}"), format!("{tag}-{i}")))
        .collect()
}

/// Topic name -> partition count, as one broker reports it.
fn topics(dir: &TestDir, broker: &Tansu) -> Value {
    KafkaClient::Confluent
        .run(dir, &broker.bootstrap(), json!({"op": "topics"}), T)
        .unwrap()
}

#[test]
fn two_tansu_brokers_serve_both_clients_directly() {
    let dir = TestDir::new("kafka-harness").unwrap();
    let a = Tansu::start(&dir, "tansu-a").unwrap();
    let b = Tansu::start(&dir, "tansu-b").unwrap();

    for (writer, reader) in [
        (KafkaClient::Confluent, KafkaClient::KafkaPython),
        (KafkaClient::KafkaPython, KafkaClient::Confluent),
    ] {
        for (broker, parts) in [(&a, 3), (&b, 1)] {
            let topic = format!("{}-{}", writer.name(), broker.port);
            writer
                .run(
                    &dir,
                    &broker.bootstrap(),
                    json!({"op": "create", "topics": {&topic: parts}}),
                    T,
                )
                .unwrap();
            let recs = records(6, &topic);
            // Idempotent producer, one partition: offsets 0..6 in the order sent.
            let out = writer
                .run(
                    &dir,
                    &broker.bootstrap(),
                    json!({"op": "produce", "topic": topic, "records": recs, "partition": 0,
                           "idempotent": true, "acks": "all"}),
                    T,
                )
                .unwrap();
            let want: Vec<Value> = (0..6).map(|i| json!([0, i])).collect();
            assert_eq!(out["acked"], json!(want), "{writer:?} on {}", broker.port);
            // The other library reads them back (and checks every batch's CRC-32C).
            let got = reader
                .run(
                    &dir,
                    &broker.bootstrap(),
                    json!({"op": "consume", "topics": [topic], "count": 6, "timeout_s": 30}),
                    T,
                )
                .unwrap();
            let want: Vec<Value> = recs
                .iter()
                .enumerate()
                .map(|(i, (k, v))| json!([topic, 0, i, k, v]))
                .collect();
            assert_eq!(got["records"], json!(want), "{reader:?} reading {topic}");
        }
    }

    // Each broker holds only its own topics, and both call themselves node 111.
    for (broker, other) in [(&a, &b), (&b, &a)] {
        let md = topics(&dir, broker);
        let names: Vec<&String> = md["topics"].as_object().unwrap().keys().collect();
        assert!(
            names
                .iter()
                .all(|t| t.ends_with(&format!("-{}", broker.port))),
            "{md}"
        );
        assert!(
            names
                .iter()
                .all(|t| !t.ends_with(&format!("-{}", other.port))),
            "{md}"
        );
        assert_eq!(names.len(), 2, "{md}");
        assert_eq!(
            md["brokers"],
            json!([[Tansu::NODE_ID, "127.0.0.1", broker.port]])
        );
    }
}

#[test]
fn consumer_group_commits_and_resumes_on_tansu() {
    let dir = TestDir::new("kafka-harness-group").unwrap();
    let broker = Tansu::start(&dir, "tansu").unwrap();
    let bs = broker.bootstrap();
    let c = KafkaClient::Confluent;
    c.run(
        &dir,
        &bs,
        json!({"op": "create", "topics": {"g-topic": 2}}),
        T,
    )
    .unwrap();
    c.run(
        &dir,
        &bs,
        json!({"op": "produce", "topic": "g-topic", "records": records(4, "g"), "partition": 1}),
        T,
    )
    .unwrap();
    // Group joins against tansu take long (the first JoinGroup is refused for a member id).
    let started = Instant::now();
    let first = c
        .run(
            &dir,
            &bs,
            json!({"op": "consume", "topics": ["g-topic"], "count": 4, "group": "g1",
                   "commit": true, "timeout_s": 45}),
            Duration::from_secs(90),
        )
        .unwrap();
    eprintln!("group consume (join included) took {:?}", started.elapsed());
    assert_eq!(first["records"].as_array().unwrap().len(), 4, "{first}");
    c.run(
        &dir,
        &bs,
        json!({"op": "produce", "topic": "g-topic", "records": [["k", "after"]], "partition": 1}),
        T,
    )
    .unwrap();
    // A new consumer of the same group resumes at the committed offset: only the new record.
    let second = KafkaClient::KafkaPython
        .run(
            &dir,
            &bs,
            json!({"op": "consume", "topics": ["g-topic"], "count": 1, "group": "g1",
                   "timeout_s": 45}),
            Duration::from_secs(90),
        )
        .unwrap();
    assert_eq!(second["records"], json!([["g-topic", 1, 4, "k", "after"]]));
}
