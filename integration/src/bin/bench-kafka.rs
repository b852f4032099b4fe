//! The Kafka benchmark of issue 12 (a benchmark, not a test): one run, real tansu brokers, one
//! Envoy build (`--concurrency 1`), confluent-kafka (librdkafka) as the client, three paths:
//!
//! * **direct**: the client straight to broker A;
//! * **tcp_proxy**: Envoy's `tcp_proxy` in front of broker C, which advertises Envoy's port;
//! * **geomesh**: Envoy + `geomesh_filter_kafka.wasm` (V8) + `geomesh-bridge` over shards A and
//!   B, the records spread over one topic on each.
//!
//! Per path: produce throughput (`--records` records of `--size` bytes, acks=1, librdkafka
//! batching), consume throughput (everything read back from the start), produce latency p50/p99
//! (`--latency` records produced one at a time, each waited for), and the CPU time per record
//! of Envoy and the bridge (`/proc/<pid>/stat` before and after the produce and consume phases).
//! Writes `integration/benches/results/kafka-<date>.md`.
//!
//! ```text
//! scripts/build-wasm.sh geomesh-filter-kafka
//! cargo build --release -p geomesh-bridge
//! cargo run --release -p geomesh-integration --bin bench-kafka [-- --records N --out FILE]
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use geomesh_integration::bench::{clk_tck, machine, ticks, utc_date};
use geomesh_integration::envoy::{static_cluster, tcp_listener, tcp_proxy_filter};
use geomesh_integration::kafka_clients::KafkaClient;
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::paths::repo_root;
use geomesh_integration::{free_port, Envoy, EnvoyConfig, Tansu, TestDir};

struct Measured {
    path: &'static str,
    records: u64,
    size: u64,
    produce_s: f64,
    consume_s: f64,
    latencies: Vec<f64>,
    proxy_cpu_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn create(dir: &TestDir, broker: &Tansu, topics: Value) -> Result<()> {
    KafkaClient::Confluent.run(dir, &broker.bootstrap(), json!({"op": "create", "topics": topics}), Duration::from_secs(60))?;
    Ok(())
}

fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|p| ticks(*p).unwrap_or(0) as f64).sum::<f64>() / clk_tck()
}

/// What each path is asked to carry.
#[derive(Clone, Copy)]
struct Load {
    records: u64,
    size: u64,
    latency: u64,
}

fn run(dir: &TestDir, path: &'static str, bootstrap: &str, topics: &[&str], load: Load, pids: &[u32]) -> Result<Measured> {
    let Load { records, size, latency } = load;
    let before = cpu_seconds(pids);
    let out = KafkaClient::Confluent.run(
        dir,
        bootstrap,
        json!({"op": "bench", "topics": topics, "records": records, "size": size, "latency_records": latency}),
        Duration::from_secs(600),
    )?;
    let after = cpu_seconds(pids);
    let mut latencies: Vec<f64> = out["latency_ms"].as_array().context("latency_ms")?.iter().filter_map(Value::as_f64).collect();
    latencies.sort_by(f64::total_cmp);
    let consumed = out["consumed"].as_u64().unwrap_or(0);
    anyhow::ensure!(consumed >= records, "{path}: consumed {consumed} of {records}");
    Ok(Measured {
        path,
        records,
        size,
        produce_s: out["produce_s"].as_f64().context("produce_s")?,
        consume_s: out["consume_s"].as_f64().context("consume_s")?,
        latencies,
        proxy_cpu_s: after - before,
    })
}

fn main() -> Result<()> {
    let mut records: u64 = 100_000;
    let mut size: u64 = 1024;
    let mut latency: u64 = 500;
    let mut out_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => records = args.next().context("--records N")?.parse()?,
            "--size" => size = args.next().context("--size BYTES")?.parse()?,
            "--latency" => latency = args.next().context("--latency N")?.parse()?,
            "--out" => out_file = Some(args.next().context("--out FILE")?),
            other => anyhow::bail!("unknown argument {other}; see the file's documentation"),
        }
    }
    let load = Load { records, size, latency };
    let dir = TestDir::new("bench-kafka")?;
    let a = Tansu::start(&dir, "tansu-a")?;
    let b = Tansu::start(&dir, "tansu-b")?;
    let tcp_port = free_port()?;
    let c = Tansu::start_advertised(&dir, "tansu-c", Some(tcp_port))?;
    create(&dir, &a, json!({"direct": 1, "mesh-a": 1}))?;
    create(&dir, &b, json!({"mesh-b": 1}))?;

    let mut results = Vec::new();
    results.push(run(&dir, "direct", &a.bootstrap(), &["direct"], load, &[])?);

    let cfg = EnvoyConfig::new()?
        .listener(tcp_listener("kafka_tcp", tcp_port, vec![tcp_proxy_filter("kafka_tcp", "tansu_c")]))
        .cluster(static_cluster("tansu_c", &[c.port]));
    let mut tcp = Envoy::start(&dir, "envoy-tcp", &cfg)?;
    geomesh_integration::wait_tcp(tcp_port, Duration::from_secs(20))?;
    let tcp_pid = tcp.proc().pid();
    // C advertises Envoy's port: its topic is created through the tcp_proxy.
    KafkaClient::Confluent.run(&dir, &format!("127.0.0.1:{tcp_port}"), json!({"op": "create", "topics": {"proxied": 1}}), Duration::from_secs(60))?;
    results.push(run(&dir, "tcp_proxy", &format!("127.0.0.1:{tcp_port}"), &["proxied"], load, &[tcp_pid])?);
    drop(tcp);

    let port = free_port()?;
    let table = format!(
        "workload_type: kafka\ndefault_cluster: kafka-a\nupstream_timeout_ms: 10000\nrouting_table:\n  mesh-b: kafka-b\nkafka:\n  advertised_host: 127.0.0.1\n  advertised_port: {port}\n"
    );
    let mut opts = FilterMeshOptions::new("geomesh_filter_kafka", "geomesh_kafka", &table);
    opts.port = Some(port);
    let mut mesh = FilterMesh::start(&dir, &opts, &[("kafka-a", a.port), ("kafka-b", b.port)])?;
    let pids = [mesh.envoy.proc().pid(), mesh.bridge.proc.pid()];
    results.push(run(&dir, "geomesh", &format!("127.0.0.1:{port}"), &["mesh-a", "mesh-b"], load, &pids)?);
    anyhow::ensure!(mesh.envoy.wasm_failure().is_none(), "{:?}", mesh.envoy.wasm_failure());

    let date = utc_date()?;
    let mut md = String::new();
    writeln!(md, "# Kafka through geomesh: {date}\n")?;
    writeln!(md, "Machine: {}. tansu 0.6.0 brokers (memory storage), Envoy `--concurrency 1`, confluent-kafka 2.16.1 (librdkafka 2.16.0) in one process per path.", machine())?;
    writeln!(md, "`cargo run --release -p geomesh-integration --bin bench-kafka -- --records {records} --size {size} --latency {latency}`.\n")?;
    writeln!(md, "Produce: {records} records of {size} bytes, acks=1, `linger.ms` 5, librdkafka batching. Consume: all of them from offset 0 (assign, no group). Latency: {latency} records produced one at a time, each flushed. geomesh spreads the records over a topic on each of two shards; direct and tcp_proxy use one topic on one broker. Proxy CPU: Envoy (+ bridge for geomesh) user+system time over the whole run (produce, latency and consume phases), per record produced.\n")?;
    writeln!(md, "| path | produce records/s | produce MB/s | consume records/s | produce p50 ms | produce p99 ms | proxy CPU µs/record |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for m in &results {
        let total = (m.records + latency) as f64;
        writeln!(
            md,
            "| {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.2} | {} |",
            m.path,
            m.records as f64 / m.produce_s,
            (m.records * m.size) as f64 / m.produce_s / 1e6,
            m.records as f64 / m.consume_s,
            percentile(&m.latencies, 0.5),
            percentile(&m.latencies, 0.99),
            if m.path == "direct" { "-".to_owned() } else { format!("{:.1}", m.proxy_cpu_s * 1e6 / total) }
        )?;
    }
    let by = |p: &str| results.iter().find(|m| m.path == p);
    if let (Some(t), Some(g)) = (by("tcp_proxy"), by("geomesh")) {
        writeln!(
            md,
            "\ngeomesh / tcp_proxy: produce throughput {:.2}x, consume throughput {:.2}x, p50 added {:+.2} ms.",
            t.produce_s / g.produce_s,
            t.consume_s / g.consume_s,
            percentile(&g.latencies, 0.5) - percentile(&t.latencies, 0.5)
        )?;
    }
    print!("{md}");
    let file = match out_file {
        Some(f) => std::path::PathBuf::from(f),
        None => repo_root().join(format!("integration/benches/results/kafka-{date}.md")),
    };
    std::fs::write(&file, md)?;
    eprintln!("written {}", file.display());
    drop(mesh);
    Ok(())
}
