//! InfluxDB through Envoy, in one run: direct to one `influxd`, Envoy's HTTP router without
//! our filter (to the same `influxd`), and the InfluxDB filter over two shards. `/write` of
//! 5000-point batches spanning both shards (points/s, p50/p99 per batch, CPU µs per point of
//! Envoy and of the influxds), and `/query` p50 of a one-shard SELECT and of SHOW MEASUREMENTS.
//!
//! `cargo run --release -p geomesh-integration --bin bench-influx [-- --batches N --queries N --out FILE]`
//! writes `integration/benches/results/influx-<date>.md` (or FILE).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use geomesh_integration::bench::{machine, utc_date, version};
use geomesh_integration::envoy::{static_cluster, wasm_http_filter, EnvoyConfig, EnvoyOptions};
use geomesh_integration::influx::{buffer_filter, cluster_name, listener, Influxd, WASM_REL};
use geomesh_integration::paths::{envoy_bin, repo_root, system_bin};
use geomesh_integration::{free_port, Envoy, TestDir, WasmPlugin};
use reqwest::blocking::Client;

const POINTS: usize = 5000;
const CONFIG: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
routing_table:
  cpu: influx-b
";

struct Args {
    batches: usize,
    queries: usize,
    rounds: usize,
    out: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        batches: 20,
        queries: 300,
        rounds: 3,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--batches" => a.batches = v.parse()?,
            "--queries" => a.queries = v.parse()?,
            "--rounds" => a.rounds = v.parse()?,
            "--out" => a.out = Some(v),
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// A batch of 5000 points, half `cpu` (shard b), half `mem` (shard a), times unique per batch.
fn batch(n: usize) -> String {
    let mut s = String::with_capacity(POINTS * 60);
    for i in 0..POINTS {
        let t = 1_600_000_000_000_000_000u64 + (n * POINTS + i) as u64 * 1000;
        let m = if i % 2 == 0 { "cpu" } else { "mem" };
        s.push_str(&format!(
            "{m},host=h{},region=r{} value={}.5,count={}i {t}\n",
            i % 50,
            i % 3,
            i % 97,
            i
        ));
    }
    s
}

/// CPU nanoseconds of every thread of a process so far (`/proc/<pid>/task/*/schedstat`: finer
/// than the 10 ms ticks of `/proc/<pid>/stat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct WriteRow {
    points_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    envoy_us_per_point: f64,
    influxd_us_per_point: f64,
}

fn main() -> Result<()> {
    let args = args()?;
    if !repo_root().join(WASM_REL).is_file() {
        bail!("{WASM_REL} not found: run scripts/build-wasm.sh");
    }
    let dir = TestDir::new("bench_influx")?;
    let a = Influxd::start(&dir, "influx-a")?;
    let b = Influxd::start(&dir, "influx-b")?;
    let (router_port, ours_port) = (free_port()?, free_port()?);
    let plugin = WasmPlugin::new("influx", "geomesh_influx", WASM_REL, CONFIG);
    let cfg = EnvoyConfig::new()?
        .listener(listener("router", router_port, vec![], Some("influx-a")))
        .listener(listener(
            "ours",
            ours_port,
            vec![wasm_http_filter(&plugin), buffer_filter()],
            None,
        ))
        .cluster(static_cluster(&cluster_name(0), &[a.port]))
        .cluster(static_cluster(&cluster_name(1), &[b.port]));
    let mut envoy = Envoy::start_with(&dir, "envoy", &cfg, &EnvoyOptions::default())?;
    geomesh_integration::wait_tcp(ours_port, Duration::from_secs(10))?;
    let envoy_pid = envoy.proc().pid();
    let client = Client::builder().timeout(Duration::from_secs(60)).build()?;
    let paths = [
        ("direct", format!("http://127.0.0.1:{}", a.port)),
        ("router", format!("http://127.0.0.1:{router_port}")),
        ("ours (2 shards)", format!("http://127.0.0.1:{ours_port}")),
    ];
    // The database on both shards (broadcast through ours).
    let r = client
        .post(format!("{}/query", paths[2].1))
        .form(&[("q", "CREATE DATABASE bench")])
        .send()?;
    if !r.status().is_success() {
        bail!("CREATE DATABASE: {}", r.text()?);
    }
    // Check the split once: a batch through ours lands on both shards.
    let post = |url: &str, body: String| -> Result<Duration> {
        let t = Instant::now();
        let r = client
            .post(format!("{url}/write?db=bench"))
            .body(body)
            .send()?;
        let status = r.status().as_u16();
        if status != 204 {
            bail!("write to {url}: {status} {}", r.text()?);
        }
        Ok(t.elapsed())
    };
    post(&paths[2].1, batch(0))?;
    if a.measurements("bench")? != ["mem"] || b.measurements("bench")? != ["cpu"] {
        bail!("the batch did not split mem/cpu over a/b");
    }
    let influxd_pids = [a.proc.pid(), b.proc.pid()];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut wall = [0f64; 3];
    let mut envoy_ns = [0u64; 3];
    let mut influxd_ns = [0u64; 3];
    let mut n = 1;
    for _round in 0..args.rounds {
        for (p, (_, url)) in paths.iter().enumerate() {
            let bodies: Vec<String> = (0..args.batches).map(|i| batch(n + i)).collect();
            n += args.batches;
            let e0 = cpu_ns(envoy_pid);
            let i0: u64 = influxd_pids.iter().map(|p| cpu_ns(*p)).sum();
            let t0 = Instant::now();
            for body in bodies {
                lat[p].push(post(url, body)?.as_secs_f64() * 1000.0);
            }
            wall[p] += t0.elapsed().as_secs_f64();
            envoy_ns[p] += cpu_ns(envoy_pid).saturating_sub(e0);
            influxd_ns[p] += influxd_pids
                .iter()
                .map(|p| cpu_ns(*p))
                .sum::<u64>()
                .saturating_sub(i0);
        }
    }
    let total_points = (args.rounds * args.batches * POINTS) as f64;
    let us_per_ns = 1e-3;
    let rows: Vec<WriteRow> = (0..3)
        .map(|p| {
            let mut l = lat[p].clone();
            l.sort_by(f64::total_cmp);
            WriteRow {
                points_per_s: total_points / wall[p],
                p50_ms: pct(&l, 0.5),
                p99_ms: pct(&l, 0.99),
                envoy_us_per_point: envoy_ns[p] as f64 * us_per_ns / total_points,
                influxd_us_per_point: influxd_ns[p] as f64 * us_per_ns / total_points,
            }
        })
        .collect();

    // Queries: p50 of each, interleaved per request.
    let queries = [
        (
            "one-shard SELECT",
            "SELECT * FROM mem WHERE host='h7' ORDER BY time DESC LIMIT 20",
        ),
        ("SHOW MEASUREMENTS", "SHOW MEASUREMENTS"),
    ];
    let mut qlat: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 3]; queries.len()];
    for _ in 0..args.queries {
        for (qi, (_, q)) in queries.iter().enumerate() {
            for (p, (_, url)) in paths.iter().enumerate() {
                let t = Instant::now();
                let r = client
                    .get(format!("{url}/query"))
                    .query(&[("db", "bench"), ("q", q)])
                    .send()?;
                let ok = r.status().is_success();
                let _ = r.bytes()?;
                if !ok {
                    bail!("{q} on {url} failed");
                }
                qlat[qi][p].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let qp50: Vec<Vec<f64>> = qlat
        .iter()
        .map(|per| {
            per.iter()
                .map(|l| {
                    let mut l = l.clone();
                    l.sort_by(f64::total_cmp);
                    pct(&l, 0.5)
                })
                .collect()
        })
        .collect();

    let date = utc_date()?;
    let mut md = format!("# InfluxDB benchmark, {date}\n\n");
    md.push_str(&format!(
        "Machine: {}  \nEnvoy: `{}` (`--concurrency 1`), influxd: `{}`  \n",
        machine(),
        version(&envoy_bin()?, "--version"),
        version(&system_bin("influxd")?, "version")
    ));
    md.push_str(&format!(
        "Load: `/write?db=bench` of {POINTS}-point batches (half `cpu` on shard b, half `mem` on shard a; about {} KB each), one client with keep-alive, {} rounds of {} batches per path, interleaved; queries {} times each, interleaved. `direct` and `router` send every point to one influxd; `ours` splits each batch over two. CPU: µs on CPU per point from /proc/<pid>/task/*/schedstat (Envoy; influxd = both). The client is this program (reqwest, one connection), outside the CPU columns. Command: `cargo run --release -p geomesh-integration --bin bench-influx`.\n\n",
        batch(0).len() / 1024,
        args.rounds,
        args.batches,
        args.queries
    ));
    md.push_str("| path | points/s | batch p50 ms | batch p99 ms | Envoy µs/point | influxd µs/point | vs router |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (p, (name, _)) in paths.iter().enumerate() {
        let r = &rows[p];
        md.push_str(&format!(
            "| {name} | {:.0} | {:.1} | {:.1} | {} | {:.2} | {:.2}x |\n",
            r.points_per_s,
            r.p50_ms,
            r.p99_ms,
            if p == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}", r.envoy_us_per_point)
            },
            r.influxd_us_per_point,
            r.points_per_s / rows[1].points_per_s
        ));
    }
    md.push_str("\n| query | direct p50 ms | router p50 ms | ours p50 ms | added over router ms |\n|---|---:|---:|---:|---:|\n");
    for (qi, (name, _)) in queries.iter().enumerate() {
        let p = &qp50[qi];
        md.push_str(&format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:+.3} |\n",
            p[0],
            p[1],
            p[2],
            p[2] - p[1]
        ));
    }
    print!("{md}");
    let out = args.out.unwrap_or_else(|| {
        repo_root()
            .join(format!("integration/benches/results/influx-{date}.md"))
            .display()
            .to_string()
    });
    std::fs::write(&out, &md).with_context(|| format!("write {out}"))?;
    eprintln!("bench-influx: table written to {out}");
    drop(envoy);
    Ok(())
}
