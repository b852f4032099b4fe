//! The MQTT benchmark of issue 10 (a benchmark, not a test): one run, real mosquitto 2.0
//! brokers, one Envoy build (`--concurrency 1`), three paths:
//!
//! * **direct**: the clients straight to broker A;
//! * **tcp_proxy**: Envoy's `tcp_proxy` in front of broker A;
//! * **geomesh**: Envoy + `geomesh_filter_mqtt.wasm` (V8) + `geomesh-bridge` over brokers A and
//!   B: topics `a/...` on A (the default cluster), `b/...` on B (a `key` route).
//!
//! The client is `geomesh_integration::mqtt_client` (a blocking MQTT 5.0 client on geomesh's own
//! codec, one thread per publisher plus a PUBACK reader at QoS 1), in this process. Per path:
//!
//! * publish throughput of `--messages` PUBLISHes of 100 bytes at QoS 0 and QoS 1, from 1 and
//!   from `--publishers` connections at once, each alternating a topic on A and one on B. QoS 1
//!   keeps up to `--window` messages unacknowledged per connection (at most the CONNACK's
//!   Receive Maximum); QoS 0 ends with one QoS 1 PUBLISH per topic, acknowledged, so the clock
//!   stops when the brokers have everything. A publisher writes what it has queued in one
//!   `write` (up to 16 KiB), as an event-loop client does.
//! * publisher-to-subscriber latency: one subscriber on `+/lat` (through geomesh: subscribed on
//!   both brokers, fanned in), one publisher alternating `a/lat` and `b/lat`, one message at a
//!   time, the send time in the payload; QoS 0 and QoS 1 (subscription and publish).
//! * CPU µs per message of Envoy, the bridge and the brokers (`/proc/<pid>/task/*/schedstat`).
//!
//! Writes `integration/benches/results/mqtt-<date>.md`.
//!
//! ```text
//! scripts/build-wasm.sh geomesh-filter-mqtt
//! cargo build --release -p geomesh-bridge
//! cargo run --release -p geomesh-integration --bin bench-mqtt [-- --messages N --rounds R --out FILE]
//! ```
//!
//! For profiling: `--only q1x1` (cells `q0x1`, `q0xN`, `q1x1`, `q1xN`) and `--perf 'record -g'`
//! (any perf subcommand, attached to Envoy and the bridge during each proxied throughput run;
//! its files are kept in the run's directory). `--baseline-wasm FILE` adds a fourth path,
//! `geomesh-base`: the same mesh running another build of the filter, interleaved with the
//! others (an A/B of a filter change in one run). `--inflight N` sets the brokers'
//! `max_inflight_messages` (their Receive Maximum, 20 by default; `--window` is capped by it).

use std::fmt::Write as _;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use geomesh_integration::bench::{cpu_ns, machine, self_cpu_ns, utc_date, version, PerfAttach};
use geomesh_integration::envoy::{static_cluster, tcp_listener, tcp_proxy_filter};
use geomesh_integration::mesh::{FilterMesh, FilterMeshOptions};
use geomesh_integration::mqtt_client::{check_split, puback, publish, publisher, MqttConn, PAYLOAD};
use geomesh_integration::paths::{envoy_bin, repo_root, system_bin};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, Mosquitto, TestDir};
use geomesh_mqtt::{Packet, QoS, Version};

const TABLE: &str = "\
workload_type: mqtt
default_cluster: mqtt-a
local_cluster: mqtt-a
upstream_timeout_ms: 10000
routing_table:
  b: {type: key, cluster: mqtt-b}
";

struct Args {
    messages: usize,
    publishers: usize,
    window: u16,
    latency: usize,
    rounds: usize,
    out: Option<String>,
    /// Only these throughput cells (`q0x1`, `q0xN`, `q1x1`, `q1xN`); all when empty.
    only: Vec<String>,
    /// `perf` subcommand attached to each proxied path's processes during throughput runs.
    perf: Option<String>,
    /// Another build of the filter, run as a fourth path (`geomesh-base`) for an A/B.
    baseline_wasm: Option<String>,
    /// mosquitto's `max_inflight_messages` (its Receive Maximum; 20 by default).
    inflight: Option<u16>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        messages: 100_000,
        publishers: 50,
        window: 20,
        latency: 2000,
        rounds: 3,
        out: None,
        only: Vec::new(),
        perf: None,
        baseline_wasm: None,
        inflight: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--messages" => a.messages = v.parse()?,
            "--publishers" => a.publishers = v.parse()?,
            "--window" => a.window = v.parse()?,
            "--latency" => a.latency = v.parse()?,
            "--rounds" => a.rounds = v.parse()?,
            "--out" => a.out = Some(v),
            "--only" => a.only = v.split(',').map(str::to_owned).collect(),
            "--perf" => a.perf = Some(v),
            "--baseline-wasm" => a.baseline_wasm = Some(v),
            "--inflight" => a.inflight = Some(v.parse()?),
            _ => bail!("unknown argument {k}; see the file's documentation"),
        }
    }
    Ok(a)
}

/// One way to the brokers, and the processes whose CPU is counted.
struct Path {
    name: &'static str,
    port: u16,
    /// Envoy, then the bridge (geomesh only).
    proxy: Vec<u32>,
    brokers: Vec<u32>,
}

/// What one throughput run cost.
#[derive(Clone, Copy, Default)]
struct Cost {
    secs: f64,
    proxy_ns: [u64; 2],
    broker_ns: u64,
    /// This process: the publishers and their PUBACK readers (the same work on every path).
    client_ns: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn throughput(
    path: &Path,
    qos: QoS,
    pubs: usize,
    total: usize,
    window: u16,
    round: usize,
) -> Result<Cost> {
    let per = total / pubs;
    let start = Arc::new(Barrier::new(pubs + 1));
    let mut workers = Vec::new();
    for p in 0..pubs {
        let id = format!("bench-{}-q{}-{pubs}-{round}-{p}", path.name, qos.bits());
        let c = MqttConn::connect(path.port, Version::V5, &id)?;
        let start = start.clone();
        let tag = format!("t{p}");
        workers.push(std::thread::spawn(move || {
            publisher(c, tag, qos, per, window, start)
        }));
    }
    let p0: Vec<u64> = path.proxy.iter().map(|p| cpu_ns(*p)).collect();
    let b0: u64 = path.brokers.iter().map(|p| cpu_ns(*p)).sum();
    let c0 = self_cpu_ns();
    start.wait();
    let t0 = Instant::now();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let client_ns = self_cpu_ns().saturating_sub(c0);
    let mut proxy_ns = [0u64; 2];
    for (i, (pid, before)) in path.proxy.iter().zip(p0).enumerate().take(2) {
        proxy_ns[i] = cpu_ns(*pid).saturating_sub(before);
    }
    let broker_ns = path
        .brokers
        .iter()
        .map(|p| cpu_ns(*p))
        .sum::<u64>()
        .saturating_sub(b0);
    Ok(Cost {
        secs,
        proxy_ns,
        broker_ns,
        client_ns,
    })
}

/// Publisher-to-subscriber latencies (ms) of `n` messages one at a time, after `warmup`.
fn latency(path: &Path, qos: QoS, n: usize, warmup: usize) -> Result<Vec<f64>> {
    let tag = format!("{}-q{}", path.name, qos.bits());
    let mut sub = MqttConn::connect(path.port, Version::V5, &format!("lat-sub-{tag}"))?;
    let codes = sub.subscribe(1, &[("+/lat", qos)])?;
    if codes != [qos.bits()] {
        bail!("{}: SUBACK {codes:?}", path.name);
    }
    let mut p = MqttConn::connect(path.port, Version::V5, &format!("lat-pub-{tag}"))?;
    let base = Instant::now();
    let mut out = Vec::with_capacity(n);
    let mut payload = vec![b'x'; PAYLOAD];
    for i in 0..n + warmup {
        let sent = base.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&sent.to_be_bytes());
        let id = (qos != QoS::AtMostOnce).then_some((i % 60_000 + 1) as u16);
        p.send(&publish(
            if i % 2 == 0 { "a/lat" } else { "b/lat" },
            qos,
            id,
            &payload,
        ))?;
        loop {
            match sub.recv()? {
                Some(Packet::Publish(m)) => {
                    let got = base.elapsed().as_nanos() as u64;
                    if let Some(pid) = m.packet_id {
                        sub.send(&puback(pid))?;
                    }
                    let stamp = m
                        .payload
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes);
                    if stamp == Some(sent) {
                        if i >= warmup {
                            out.push((got - sent) as f64 / 1e6);
                        }
                        break;
                    }
                }
                Some(_) => {}
                None => bail!("{}: the subscriber was disconnected", path.name),
            }
        }
        if id.is_some() {
            loop {
                match p.recv()? {
                    Some(Packet::PubAck(_)) => break,
                    Some(_) => {}
                    None => bail!("{}: the publisher was disconnected", path.name),
                }
            }
        }
    }
    out.sort_by(f64::total_cmp);
    sub.disconnect()?;
    p.disconnect()?;
    Ok(out)
}

fn main() -> Result<()> {
    let args = args()?;
    let dir = TestDir::new("bench-mqtt")?;
    let broker_config = match args.inflight {
        Some(n) => format!("max_inflight_messages {n}\n"),
        None => String::new(),
    };
    let a = Mosquitto::start_with_config(&dir, "mqtt-a", &broker_config)?;
    let b = Mosquitto::start_with_config(&dir, "mqtt-b", &broker_config)?;

    let tcp_port = free_port()?;
    let cfg = EnvoyConfig::new()?
        .listener(tcp_listener(
            "mqtt_tcp",
            tcp_port,
            vec![tcp_proxy_filter("mqtt_tcp", "mqtt_a")],
        ))
        .cluster(static_cluster("mqtt_a", &[a.port]));
    let mut tcp = Envoy::start(&dir, "envoy-tcp", &cfg)?;
    geomesh_integration::wait_tcp(tcp_port, Duration::from_secs(20))?;
    let opts = FilterMeshOptions::new("geomesh_filter_mqtt", "geomesh_mqtt", TABLE);
    let mut mesh = FilterMesh::start(&dir, &opts, &[("mqtt-a", a.port), ("mqtt-b", b.port)])?;
    check_split(mesh.port, &a, &b)?;

    // The A/B: the same mesh with another .wasm (its own directory: a bridge socket per mesh).
    let base_dir = TestDir::new("bench-mqtt-base")?;
    let mut base = match &args.baseline_wasm {
        Some(f) => {
            let stem = std::fs::canonicalize(f)?.with_extension("");
            let o = FilterMeshOptions::new(&stem.to_string_lossy(), "geomesh_mqtt", TABLE);
            let m = FilterMesh::start(&base_dir, &o, &[("mqtt-a", a.port), ("mqtt-b", b.port)])?;
            check_split(m.port, &a, &b)?;
            Some(m)
        }
        None => None,
    };
    let (ap, bp) = (a.proc.pid(), b.proc.pid());
    let mut paths = vec![
        Path {
            name: "direct",
            port: a.port,
            proxy: vec![],
            brokers: vec![ap],
        },
        Path {
            name: "tcp_proxy",
            port: tcp_port,
            proxy: vec![tcp.proc().pid()],
            brokers: vec![ap],
        },
        Path {
            name: "geomesh",
            port: mesh.port,
            proxy: vec![mesh.envoy.proc().pid(), mesh.bridge.proc.pid()],
            brokers: vec![ap, bp],
        },
    ];
    if let Some(m) = &mut base {
        paths.push(Path {
            name: "geomesh-base",
            port: m.port,
            proxy: vec![m.envoy.proc().pid(), m.bridge.proc.pid()],
            brokers: vec![ap, bp],
        });
    }
    let cells = [
        (QoS::AtMostOnce, 1),
        (QoS::AtMostOnce, args.publishers),
        (QoS::AtLeastOnce, 1),
        (QoS::AtLeastOnce, args.publishers),
    ];
    // costs[cell][path]: one per round, interleaved (round, cell, path).
    let mut costs: Vec<Vec<Vec<Cost>>> = vec![vec![Vec::new(); paths.len()]; cells.len()];
    for round in 0..args.rounds {
        for (ci, (qos, pubs)) in cells.iter().enumerate() {
            let name = format!("q{}x{}", qos.bits(), if *pubs == 1 { "1" } else { "N" });
            if !args.only.is_empty() && !args.only.contains(&name) {
                continue;
            }
            for (pi, path) in paths.iter().enumerate() {
                let perf = match &args.perf {
                    Some(a) if !path.proxy.is_empty() => {
                        let file = dir.join(format!("perf-{}-{name}-{round}.data", path.name));
                        eprintln!("perf: {}", file.display());
                        dir.keep();
                        Some(PerfAttach::start(a, &path.proxy, &file)?)
                    }
                    _ => None,
                };
                let c = throughput(path, *qos, *pubs, args.messages, args.window, round)
                    .with_context(|| format!("{} QoS {} x{pubs}", path.name, qos.bits()))?;
                if let Some(p) = perf {
                    p.stop()?;
                }
                eprintln!(
                    "round {round} QoS {} x{pubs:<3} {:<9} {:>8.0} msg/s",
                    qos.bits(),
                    path.name,
                    args.messages as f64 / c.secs
                );
                costs[ci][pi].push(c);
            }
        }
    }
    let mut lat: Vec<Vec<Vec<f64>>> = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut per = Vec::new();
        for path in &paths {
            per.push(
                latency(path, qos, args.latency, 200)
                    .with_context(|| format!("{} latency", path.name))?,
            );
        }
        lat.push(per);
    }
    for (name, e) in [
        ("tcp_proxy", tcp.wasm_failure()),
        ("geomesh", mesh.envoy.wasm_failure()),
    ] {
        if let Some(l) = e {
            bail!("{name} Envoy: {l}");
        }
    }

    // The median round of each cell (by time); CPU is summed over every round.
    let median = |v: &[Cost]| -> f64 {
        let mut s: Vec<f64> = v.iter().map(|c| c.secs).collect();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let msgs = args.messages as f64;
    let date = utc_date()?;
    let mut md = String::new();
    writeln!(md, "# MQTT through geomesh: {date}\n")?;
    writeln!(
        md,
        "Machine: {}. mosquitto `{}`, Envoy `{}` (`--concurrency 1`).  ",
        machine(),
        version(&system_bin("mosquitto")?, "-h").trim_start_matches("mosquitto version "),
        version(&envoy_bin()?, "--version")
    )?;
    writeln!(
        md,
        "Command: `cargo run --release -p geomesh-integration --bin bench-mqtt -- --messages {} --publishers {} --window {} --latency {} --rounds {}{}`.\n",
        args.messages, args.publishers, args.window, args.latency, args.rounds,
        args.inflight.map(|n| format!(" --inflight {n}")).unwrap_or_default()
    )?;
    writeln!(md, "Client: `geomesh_integration::mqtt_client`, a blocking MQTT 5.0 client on geomesh's own codec (`geomesh-mqtt`), in the bench process: one thread per publisher and a PUBACK reader thread per QoS 1 connection. Throughput: {} PUBLISHes of {PAYLOAD} bytes per cell, spread over the publishers, each publisher alternating `a/tN` (broker A) and `b/tN` (broker B through geomesh; A on the other paths); QoS 1 with at most {} unacknowledged per connection (and never above the CONNACK's Receive Maximum); QoS 0 ends with an acknowledged QoS 1 PUBLISH per topic, so every message is at the brokers when the clock stops. Queued PUBLISHes are written together (up to 16 KiB per write). Median of {} interleaved rounds; CPU µs per message summed over all rounds (`/proc/<pid>/task/*/schedstat`; client = this process (getrusage), the publishers and their PUBACK readers; total = all of them: with every core busy, msg/s is about cores / total). direct and tcp_proxy use broker A only; geomesh is Envoy + `geomesh_filter_mqtt.wasm` (V8) + `geomesh-bridge` over A and B (`b` a `key` route to B){}.\n", args.messages, args.window, args.rounds, if base.is_some() { "; geomesh-base is the same with `--baseline-wasm`" } else { "" })?;
    writeln!(
        md,
        "| load | path | msg/s | vs tcp_proxy | Envoy µs/msg | bridge µs/msg | brokers µs/msg | client µs/msg | total µs/msg |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let mut q1_ratio = Vec::new();
    for (ci, (qos, pubs)) in cells.iter().enumerate() {
        if costs[ci][1].is_empty() {
            continue; // not run (`--only`)
        }
        let tcp_rate = msgs / median(&costs[ci][1]);
        for (pi, path) in paths.iter().enumerate() {
            let v = &costs[ci][pi];
            let rate = msgs / median(v);
            let n = msgs * v.len() as f64;
            let us = |ns: u64| ns as f64 / 1e3 / n;
            let env: u64 = v.iter().map(|c| c.proxy_ns[0]).sum();
            let br: u64 = v.iter().map(|c| c.proxy_ns[1]).sum();
            let bk: u64 = v.iter().map(|c| c.broker_ns).sum();
            let cl: u64 = v.iter().map(|c| c.client_ns).sum();
            if path.name == "geomesh" && *qos == QoS::AtLeastOnce {
                q1_ratio.push((*pubs, rate / tcp_rate));
            }
            writeln!(
                md,
                "| QoS {}, {pubs} publisher{} | {} | {rate:.0} | {:.2}x | {} | {} | {:.2} | {:.2} | {:.2} |",
                qos.bits(),
                if *pubs == 1 { "" } else { "s" },
                path.name,
                rate / tcp_rate,
                if path.proxy.is_empty() {
                    "-".into()
                } else {
                    format!("{:.2}", us(env))
                },
                if path.proxy.len() < 2 {
                    "-".into()
                } else {
                    format!("{:.2}", us(br))
                },
                us(bk),
                us(cl),
                us(env + br + bk + cl)
            )?;
        }
    }
    writeln!(md, "\nLatency, publisher to subscriber: {} messages one at a time (after 200 unmeasured), alternating `a/lat` and `b/lat`; one subscriber on `+/lat` (through geomesh: subscribed on both brokers, fanned in); the send time in the payload, read on arrival, same process and clock.\n", args.latency)?;
    writeln!(
        md,
        "| path | QoS 0 p50 ms | QoS 0 p99 ms | QoS 1 p50 ms | QoS 1 p99 ms |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for (pi, path) in paths.iter().enumerate() {
        writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            path.name,
            pct(&lat[0][pi], 0.5),
            pct(&lat[0][pi], 0.99),
            pct(&lat[1][pi], 0.5),
            pct(&lat[1][pi], 0.99)
        )?;
    }
    let added = |q: usize| pct(&lat[q][2], 0.5) - pct(&lat[q][1], 0.5);
    writeln!(
        md,
        "\ngeomesh / tcp_proxy: QoS 1 throughput {} (target >= 0.7x); p50 added over tcp_proxy {:+.3} ms at QoS 0, {:+.3} ms at QoS 1 (target < 0.3 ms).",
        q1_ratio.iter().map(|(p, r)| format!("{r:.2}x with {p} publisher{}", if *p == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", "),
        added(0),
        added(1)
    )?;
    print!("{md}");
    let file = match args.out {
        Some(f) => std::path::PathBuf::from(f),
        None => repo_root().join(format!("integration/benches/results/mqtt-{date}.md")),
    };
    std::fs::write(&file, md)?;
    eprintln!("written {}", file.display());
    drop(base);
    drop(mesh);
    drop(tcp);
    Ok(())
}
