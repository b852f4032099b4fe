//! The Kafka part of `make demo`: two tansu brokers as shards behind Envoy running
//! `geomesh_filter_kafka.wasm` and a bridge; confluent-kafka (librdkafka) clients through it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::kafka_clients::KafkaClient;
use crate::mesh::{FilterMesh, FilterMeshOptions};
use crate::paths::kafka_py_path;
use crate::ports::free_port;
use crate::process::{Proc, TestDir};
use crate::servers::Tansu;

const T: Duration = Duration::from_secs(60);

/// The Kafka filter's configuration in the demo: `orders*` on kafka-b, everything else on
/// kafka-a; `PORT` is the listener's.
pub fn kafka_config(port: u16) -> String {
    format!(
        "workload_type: kafka
default_cluster: kafka-a
upstream_timeout_ms: 10000
routing_table:
  orders: {{ type: prefix, cluster: kafka-b }}
kafka:
  advertised_host: 127.0.0.1
  advertised_port: {port}
"
    )
}

/// Two brokers, the bridge and Envoy.
pub struct KafkaDemo {
    pub dir: TestDir,
    pub a: Tansu,
    pub b: Tansu,
    pub mesh: FilterMesh,
}

impl KafkaDemo {
    pub fn start(dir: &TestDir) -> Result<KafkaDemo> {
        let own = TestDir::new("demo-kafka")?;
        let a = Tansu::start(dir, "tansu-a")?;
        let b = Tansu::start(dir, "tansu-b")?;
        let port = free_port()?;
        let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &kafka_config(port));
        opts.port = Some(port);
        let mesh = FilterMesh::start(&own, &opts, &[("kafka-a", a.port), ("kafka-b", b.port)])?;
        Ok(KafkaDemo { dir: own, a, b, mesh })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.mesh.port)
    }

    pub fn procs(&mut self) -> Vec<(String, &mut Proc)> {
        vec![
            ("envoy (kafka)".to_owned(), self.mesh.envoy.proc()),
            ("geomesh-bridge (kafka)".to_owned(), &mut self.mesh.bridge.proc),
            ("tansu kafka-a".to_owned(), &mut self.a.proc),
            ("tansu kafka-b".to_owned(), &mut self.b.proc),
        ]
    }

    fn run(&self, bootstrap: &str, op: Value, timeout: Duration) -> Result<Value> {
        KafkaClient::Confluent.run(&self.dir, bootstrap, op, timeout)
    }

    /// A command to try: the confluent client listing the proxy's topics and brokers.
    pub fn try_argv(&self) -> Result<Vec<String>> {
        let py = format!(
            "from confluent_kafka.admin import AdminClient; md = AdminClient({{'bootstrap.servers': '{}'}}).list_topics(timeout=10); print(sorted(md.topics), sorted((b.id, b.host, b.port) for b in md.brokers.values()))",
            self.bootstrap()
        );
        Ok(vec![
            "env".to_owned(),
            format!("PYTHONPATH={}", kafka_py_path()?.display()),
            "python3".to_owned(),
            "-c".to_owned(),
            py,
        ])
    }
}

fn say_line(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn values(v: &Value) -> Vec<String> {
    v["records"].as_array().into_iter().flatten().map(|r| r[4].as_str().unwrap_or_default().to_owned()).collect()
}

/// The demo's Kafka traffic; `check(what, ok)` records each claim.
pub fn kafka_section(k: &KafkaDemo, mut check: impl FnMut(&str, bool, String) -> Result<()>, mut row: impl FnMut(&str, &str, Option<Duration>, &str)) -> Result<()> {
    say_line(&format!(
        "\n== Kafka sharding (Écharde): one Kafka cluster at {}, 2 tansu brokers as shards ==",
        k.bootstrap()
    ));
    say_line("the filter's configuration (topics and consumer groups routed by name):");
    for l in kafka_config(k.mesh.port).lines() {
        say_line(&format!("  | {l}"));
    }
    for (broker, topics) in [(&k.a, json!({"clicks": 2})), (&k.b, json!({"orders": 2}))] {
        k.run(&broker.bootstrap(), json!({"op": "create", "topics": topics}), T)?;
    }
    row("create clicks on kafka-a, orders on kafka-b", "each broker directly", None, "(CreateTopics is not carried)");

    let t = Instant::now();
    let md = k.run(&k.bootstrap(), json!({"op": "topics"}), T)?;
    let port = i64::from(k.mesh.port);
    check(
        "Metadata: both shards' topics, two virtual brokers at the proxy",
        md["brokers"] == json!([[111, "127.0.0.1", port], [1_000_111, "127.0.0.1", port]]) && md["topics"]["orders"] == json!(2) && md["topics"]["clicks"] == json!(2),
        md.to_string(),
    )?;
    row("Metadata (confluent list_topics)", "both, merged", Some(t.elapsed()), "clicks, orders; brokers 111 and 1000111 at the proxy");

    let t = Instant::now();
    let recs = json!([["u1", "click-1", "clicks"], ["u1", "order-1", "orders"], ["u2", "click-2", "clicks"], ["u2", "order-2", "orders"]]);
    let out = k.run(
        &k.bootstrap(),
        json!({"op": "produce", "topic": "clicks", "records": recs, "partition": 0, "idempotent": true, "acks": "all"}),
        T,
    )?;
    check("an idempotent producer writes both shards", out["acked"] == json!([[0, 0], [0, 0], [0, 1], [0, 1]]), out.to_string())?;
    row("one idempotent producer, 4 records, acks=all", "split a | b", Some(t.elapsed()), "offsets 0, 1 on each shard");
    for (broker, name, topic, want) in [(&k.a, "kafka-a", "clicks", ["click-1", "click-2"]), (&k.b, "kafka-b", "orders", ["order-1", "order-2"])] {
        let got = values(&k.run(&broker.bootstrap(), json!({"op": "consume", "topics": [topic], "count": 2, "timeout_s": 20}), T)?);
        check(&format!("what {name} holds"), got == want, format!("{got:?}"))?;
        row(&format!("read {topic} on :{}", broker.port), &format!("{name} directly"), None, &got.join(", "));
    }
    let t = Instant::now();
    let got = k
        .run(
            &k.bootstrap(),
            json!({"op": "consume", "topics": ["clicks", "orders"], "count": 4, "group": "demo-group", "commit": true, "timeout_s": 45}),
            Duration::from_secs(90),
        )
        .context("a consumer group through the proxy")?;
    let mut v = values(&got);
    v.sort();
    check("a consumer group reads both shards' topics", v == ["click-1", "click-2", "order-1", "order-2"], got.to_string())?;
    row("consumer group demo-group over clicks + orders", "home kafka-a, fetch a | b", Some(t.elapsed()), "4 records, offsets committed on each owning shard");
    Ok(())
}
