//! What the bridge costs in each deployment (issue 13; ARCHITECTURE.md, "Why the bridge is on the
//! path of every byte"), measured in one run with real processes: redis-benchmark through six
//! paths to the same redis-servers, `--concurrency 1` Envoys, CPU time of every process.
//!
//! ```text
//! direct        client -> redis A
//! tcp_proxy     client -> Envoy C (tcp_proxy) -> redis A
//! mesh_plain    client -> Envoy C (tcp_proxy) =mTLS=> Envoy S (shard's sidecar) -> redis A
//! colocated     client -> Envoy C (geomesh filter) -> Unix socket -> bridge U -> redis A, B
//! istio_bridge  client -> Envoy C (geomesh filter) =mTLS=> Envoy B (bridge pod's sidecar:
//!               TLS termination, tcp_proxy) -> bridge T -> redis A, B
//! istio         as istio_bridge, and the bridge's shard connections through Envoy B again
//!               (outbound tcp_proxy) =mTLS=> Envoy S (the shards' sidecar) -> redis A, B
//! ```
//!
//! `colocated` is the bare-host shape (the demo, `examples/`); `istio` is `istio/10-bridge.yaml`
//! with every hop Istio puts on it (two more Envoy passes and an mTLS leg to the bridge pod, two
//! more passes and mTLS again to the shard), `istio_bridge` the bridge pod's part alone;
//! `mesh_plain` is what a client pays in the mesh without geomesh (sidecar to sidecar, mTLS).
//! Envoy C stands for the client's sidecar, B for the bridge pod's, S for the shards' (one Envoy
//! for both shards' inbound listeners). mTLS: certificates made at start (one CA, ECDSA P-256),
//! TLS 1.3, client certificates required. Not reproduced: iptables redirection into the
//! sidecars, Istio's telemetry filters, the network between pods (all on loopback).
//!
//! The table goes to `integration/benches/results/redis-deployments-<date>.md` (an
//! `## Analysis` section already in that file is kept).
//!
//! ```text
//! scripts/build-wasm.sh geomesh-filter-redis
//! cargo build --release -p geomesh-bridge
//! cargo run --release -p geomesh-integration --bin bench-redis-deployments [-- --requests N --repeat N --out FILE]
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use geomesh_integration::bench::{
    check_spread, machine, median_row, run_benchmark, utc_date, version, BenchPath, Probe, Row,
};
use geomesh_integration::bridge::{bridge_cluster, Bridge};
use geomesh_integration::envoy::{
    mtls_downstream, mtls_upstream, static_cluster, tcp_listener, tcp_proxy_filter, wasm_network_filter,
};
use geomesh_integration::paths::{envoy_bin, repo_root, system_bin, wasm_path};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, EnvoyOptions, Redis, TestDir, WasmPlugin};
use geomesh_tls::testing::Ca;
use geomesh_tls::TlsFiles;

/// The processes whose CPU a path uses, in the report's column order.
const COLUMNS: [&str; 4] = ["Envoy C", "bridge", "Envoy B", "Envoy S"];

/// A path and, for each of its processes, its column in [`COLUMNS`].
struct Shape {
    path: BenchPath,
    columns: Vec<usize>,
    what: &'static str,
}

fn filter_config(clusters: [&str; 2]) -> String {
    format!(
        "workload_type: redis\ndefault_cluster: {a}\nupstream_timeout_ms: 5000\nrouting_table:\n  '*': {{ type: hash, clusters: [{a}, {b}] }}\n",
        a = clusters[0],
        b = clusters[1]
    )
}

/// `cluster` over mTLS to `port` with `tls`'s files (Envoy's upstream TLS).
fn mtls_cluster(name: &str, port: u16, tls: &TlsFiles) -> serde_json::Value {
    mtls_upstream(static_cluster(name, &[port]), &tls.cert, &tls.key, &tls.ca, "localhost")
}

/// A listener terminating mTLS with `tls`'s files, tcp_proxy to `cluster`.
fn mtls_listener(name: &str, port: u16, cluster: &str, tls: &TlsFiles) -> serde_json::Value {
    mtls_downstream(tcp_listener(name, port, vec![tcp_proxy_filter(name, cluster)]), &tls.cert, &tls.key, &tls.ca)
}

fn opts() -> EnvoyOptions {
    EnvoyOptions { concurrency: 1, log_level: "warning".into(), ..EnvoyOptions::default() }
}

fn main() -> Result<()> {
    let (mut requests, mut clients, mut repeat) = (100_000u64, 50u32, 1usize);
    let mut out_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().context("--requests N")?.parse()?,
            "--clients" => clients = args.next().context("--clients N")?.parse()?,
            "--repeat" => repeat = args.next().context("--repeat N")?.parse::<usize>()?.max(1),
            "--out" => out_file = Some(args.next().context("--out FILE")?),
            other => bail!("unknown argument {other} (--requests N, --clients N, --repeat N, --out FILE)"),
        }
    }
    let keyspace = 1000;
    let dir = TestDir::new("bench-redis-deployments")?;
    let ca = Ca::new("bench mesh CA");
    let (tls_c, tls_b, tls_s) = (
        ca.leaf(dir.path(), "client-sidecar", &ca),
        ca.leaf(dir.path(), "bridge-sidecar", &ca),
        ca.leaf(dir.path(), "shard-sidecar", &ca),
    );
    let a = Redis::start(&dir, "shard_a")?;
    let b = Redis::start(&dir, "shard_b")?;

    // Envoy S: the shards' sidecar, inbound mTLS to each shard.
    let (s_a, s_b) = (free_port()?, free_port()?);
    let envoy_s_cfg = EnvoyConfig::new()?
        .listener(mtls_listener("inbound_a", s_a, "local_a", &tls_s))
        .listener(mtls_listener("inbound_b", s_b, "local_b", &tls_s))
        .cluster(static_cluster("local_a", &[a.port]))
        .cluster(static_cluster("local_b", &[b.port]));
    let mut envoy_s = Envoy::start_with(&dir, "envoy-s", &envoy_s_cfg, &opts())?;

    // Envoy B's outbound listeners (the bridge's connections to the shards, in the mesh).
    let (b_in, b_out_a, b_out_b) = (free_port()?, free_port()?, free_port()?);
    // The bridges: U on a Unix socket beside Envoy C; T on TCP behind Envoy B, which knows the
    // shards directly (istio_bridge) and through the mesh (istio).
    let bridge_u = Bridge::start_unix(&dir, "bridge-u", &[("shard_a", a.port), ("shard_b", b.port)])?;
    let bridge_t = Bridge::start(
        &dir,
        "bridge-t",
        &[("shard_a", a.port), ("shard_b", b.port), ("mesh_a", b_out_a), ("mesh_b", b_out_b)],
    )?;
    let envoy_b_cfg = EnvoyConfig::new()?
        .listener(mtls_listener("inbound_bridge", b_in, "local_bridge", &tls_b))
        .listener(tcp_listener("outbound_a", b_out_a, vec![tcp_proxy_filter("outbound_a", "mesh_shard_a")]))
        .listener(tcp_listener("outbound_b", b_out_b, vec![tcp_proxy_filter("outbound_b", "mesh_shard_b")]))
        .cluster(bridge_cluster("local_bridge", &bridge_t))
        .cluster(mtls_cluster("mesh_shard_a", s_a, &tls_b))
        .cluster(mtls_cluster("mesh_shard_b", s_b, &tls_b));
    let mut envoy_b = Envoy::start_with(&dir, "envoy-b", &envoy_b_cfg, &opts())?;

    // Envoy C: the client's sidecar, one listener per path.
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect::<Result<_>>()?;
    let [tcp_port, mesh_port, colo_port, ib_port, istio_port] = ports[..] else { bail!("ports") };
    let direct_plugin = WasmPlugin::new("geomesh_redis", "", wasm_path("geomesh_filter_redis")?, filter_config(["shard_a", "shard_b"]));
    let mesh_plugin = WasmPlugin::new("geomesh_redis_mesh", "", wasm_path("geomesh_filter_redis")?, filter_config(["mesh_a", "mesh_b"]));
    let geomesh = |name: &str, port: u16, plugin: &WasmPlugin, cluster: &str| {
        tcp_listener(name, port, vec![wasm_network_filter(plugin), tcp_proxy_filter(name, cluster)])
    };
    let envoy_c_cfg = EnvoyConfig::new()?
        .listener(tcp_listener("tcp_in", tcp_port, vec![tcp_proxy_filter("tcp_in", "shard_a")]))
        .listener(tcp_listener("mesh_in", mesh_port, vec![tcp_proxy_filter("mesh_in", "mesh_shard_a")]))
        .listener(geomesh("colocated_in", colo_port, &direct_plugin, "bridge_local"))
        .listener(geomesh("istio_bridge_in", ib_port, &direct_plugin, "bridge_pod"))
        .listener(geomesh("istio_in", istio_port, &mesh_plugin, "bridge_pod"))
        .cluster(static_cluster("shard_a", &[a.port]))
        .cluster(mtls_cluster("mesh_shard_a", s_a, &tls_c))
        .cluster(bridge_cluster("bridge_local", &bridge_u))
        .cluster(mtls_cluster("bridge_pod", b_in, &tls_c));
    let mut envoy_c = Envoy::start_with(&dir, "envoy-c", &envoy_c_cfg, &opts())?;
    for p in &ports {
        geomesh_integration::wait_tcp(*p, Duration::from_secs(30))?;
    }

    let (c, bu, bt, eb, es) =
        (envoy_c.proc().pid(), bridge_u.proc.pid(), bridge_t.proc.pid(), envoy_b.proc().pid(), envoy_s.proc().pid());
    let shape = |name, port, procs: &[(u32, usize)], what| Shape {
        path: BenchPath { name, port, pids: procs.iter().map(|(p, _)| *p).collect() },
        columns: procs.iter().map(|(_, c)| *c).collect(),
        what,
    };
    let shapes = [
        shape("direct", a.port, &[], "redis-benchmark to redis A"),
        shape("tcp_proxy", tcp_port, &[(c, 0)], "Envoy C tcp_proxy to redis A"),
        shape("mesh_plain", mesh_port, &[(c, 0), (es, 3)], "Envoy C =mTLS=> Envoy S to redis A (Istio without geomesh)"),
        shape("colocated", colo_port, &[(c, 0), (bu, 1)], "Envoy C filter, Unix socket, bridge (bare hosts, demo)"),
        shape(
            "istio_bridge",
            ib_port,
            &[(c, 0), (eb, 2), (bt, 1)],
            "Envoy C filter =mTLS=> Envoy B, bridge, shards direct (the bridge pod's part)",
        ),
        shape(
            "istio",
            istio_port,
            &[(c, 0), (eb, 2), (bt, 1), (es, 3)],
            "istio_bridge + bridge -> Envoy B =mTLS=> Envoy S -> shards (istio/10-bridge.yaml in full)",
        ),
    ];
    // Every path works and the sharded ones spread keys over both shards.
    for s in &shapes[3..] {
        let split = check_spread(s.path.port, &a, &b)?;
        eprintln!("{}: 10 keys split {split:?}", s.path.name);
    }
    let probe = Probe { redis: vec![a.proc.pid(), b.proc.pid()], keyspace, client_cpus: None };
    for s in &shapes {
        run_benchmark(&s.path, &probe, "SET", 1, 20_000, clients)?; // warm-up (V8 tiers up)
    }

    let mut rows: Vec<Row> = Vec::new();
    for workload in ["SET", "GET", "MSET", "MGET"] {
        for pipeline in [1, 16] {
            let mut runs = Vec::new();
            for _ in 0..repeat {
                // Paths interleaved: a drift of the (shared) machine's speed hits them all.
                for s in &shapes {
                    let r = run_benchmark(&s.path, &probe, workload, pipeline, requests, clients)?;
                    eprintln!("{workload:5} P{pipeline:<2} {:13} {:>9.0} req/s p50 {:.3} p99 {:.3}", r.path, r.rps, r.p50, r.p99);
                    runs.push(r);
                }
            }
            for s in &shapes {
                let mine: Vec<Row> = runs.iter().filter(|r| r.path == s.path.name).cloned().collect();
                rows.extend(median_row(&mine));
            }
        }
    }
    let lat_requests = (requests / 5).max(1000);
    let mut lat: Vec<Row> = Vec::new();
    for workload in ["GET", "MSET"] {
        for s in &shapes {
            let runs: Vec<Row> = (0..repeat)
                .map(|_| run_benchmark(&s.path, &probe, workload, 1, lat_requests, 1))
                .collect::<Result<_>>()?;
            lat.extend(median_row(&runs));
        }
    }

    let md = report(&shapes, &rows, &lat, requests, clients, repeat, keyspace, lat_requests)?;
    print!("{md}");
    let out = match out_file {
        Some(f) => std::path::PathBuf::from(f),
        None => repo_root().join(format!("integration/benches/results/redis-deployments-{}.md", utc_date()?)),
    };
    let mut md = md;
    if let Ok(old) = std::fs::read_to_string(&out) {
        if let Some(i) = old.find("\n## Analysis") {
            md.push_str(&old[i..]);
        }
    }
    std::fs::write(&out, md)?;
    eprintln!("written to {}", out.display());
    for e in [&mut envoy_c, &mut envoy_b, &mut envoy_s] {
        e.stop()?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    shapes: &[Shape],
    rows: &[Row],
    lat: &[Row],
    requests: u64,
    clients: u32,
    repeat: usize,
    keyspace: u64,
    lat_requests: u64,
) -> Result<String> {
    let us = |v: f64| format!("{:.1}", v * 1000.0);
    let mut md = String::new();
    writeln!(md, "# Redis through each deployment of the bridge, {}\n", utc_date()?)?;
    writeln!(md, "Machine: {}  ", machine())?;
    writeln!(
        md,
        "Envoy: `{}` (each `--concurrency 1`), redis-server: `{}`  ",
        version(&envoy_bin()?, "--version"),
        version(&system_bin("redis-server")?, "--version")
    )?;
    writeln!(
        md,
        "Load: `redis-benchmark -c {clients} -n {requests} -r {keyspace} [-P 16] --csv`, MSET/MGET of 10 random keys \
         (spread over both shards on the sharded paths); {repeat} interleaved round(s) per row, medians. CPU: user+system µs \
         per request of each process (`/proc/<pid>/stat`; client from getrusage; redis = both redis-servers). The machine \
         is shared and has 2 CPUs: when saturated, requests/s follows the total CPU per request, which is the steadier \
         figure. Command: `cargo run --release -p geomesh-integration --bin bench-redis-deployments`.\n"
    )?;
    writeln!(md, "| path | what |\n|---|---|")?;
    for s in shapes {
        writeln!(md, "| {} | {} |", s.path.name, s.what)?;
    }
    writeln!(
        md,
        "\n| workload | pipeline | path | requests/s | p50 ms | p99 ms | {} | proxies µs | total µs | vs colocated (req/s) | proxies µs over colocated |",
        COLUMNS.map(|c| format!("{c} µs")).join(" | ")
    )?;
    writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let proxies = |r: &Row| r.cpu.unwrap_or(0.0);
    for r in rows {
        let shape = shapes.iter().find(|s| s.path.name == r.path);
        let mut cols = ["-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()];
        if let Some(s) = shape {
            for (c, v) in s.columns.iter().zip(&r.cpu_split) {
                if let Some(slot) = cols.get_mut(*c) {
                    *slot = us(*v);
                }
            }
        }
        let colo = rows.iter().find(|x| x.workload == r.workload && x.pipeline == r.pipeline && x.path == "colocated");
        let (vs, over) = match colo {
            Some(c) if r.path != "direct" => (format!("{:.2}x", r.rps / c.rps), format!("{:+.1}", (proxies(r) - proxies(c)) * 1000.0)),
            _ => ("".to_owned(), "".to_owned()),
        };
        writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {vs} | {over} |",
            r.workload,
            if r.pipeline == 1 { "none".to_owned() } else { format!("-P {}", r.pipeline) },
            r.path,
            r.rps,
            r.p50,
            r.p99,
            cols.join(" | "),
            us(proxies(r)),
            us(proxies(r) + r.client_cpu + r.redis_cpu),
        )?;
    }
    writeln!(
        md,
        "\nUnloaded latency (`-c 1`, not pipelined, {lat_requests} requests): what one request costs without a queue.\n"
    )?;
    writeln!(md, "| workload | path | requests/s | p50 ms | p99 ms | p50 added over colocated |\n|---|---|---:|---:|---:|---:|")?;
    for r in lat {
        let colo = lat.iter().find(|x| x.workload == r.workload && x.path == "colocated");
        let added = match colo {
            Some(c) if !["direct", "tcp_proxy", "mesh_plain", "colocated"].contains(&r.path) => {
                format!("{:+.3} ms", r.p50 - c.p50)
            }
            _ => "-".to_owned(),
        };
        writeln!(md, "| {} | {} | {:.0} | {:.3} | {:.3} | {added} |", r.workload, r.path, r.rps, r.p50, r.p99)?;
    }
    Ok(md)
}
