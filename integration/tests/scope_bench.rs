//! Overhead of the scope filter, measured with `wrk` against real Envoys (ignored by default):
//!
//! ```text
//! cargo build --release -p geomesh-agent
//! cargo test --release -p geomesh-integration --test scope_bench -- --ignored --nocapture
//! ```
//!
//! One run, same machine, side by side: t directly, Envoy without filter, Envoy with the scope
//! filter and no scope, with a local scope, with a remote scope (DC 1's Envoy -> DC 2's Envoy ->
//! DC 2's t). Every Envoy runs one worker (`--concurrency 1`). Writes
//! `integration/benches/results/scope-overhead-<date>.md` (date and machine in it).
//! `GEOMESH_BENCH_SECONDS` (per run, default 10), `GEOMESH_BENCH_CONNECTIONS` (default 32) and
//! `GEOMESH_BENCH_ROUNDS` (interleaved rounds, medians reported; default 3) tune it.

use std::fmt::Write as _;
use std::process::Command;

use geomesh_integration::envoy::{http_listener, static_cluster, EnvoyOptions};
use geomesh_integration::paths::{repo_root, system_bin};
use geomesh_integration::scope::{ScopePlan, ScopeTopology};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, TestDir};

struct Row {
    path: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
}

/// `wrk`'s latency ("1.23ms", "850.00us", "1.02s") in milliseconds.
fn wrk_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().map(|v| v * mult).unwrap_or(f64::NAN)
}

fn wrk(path: &'static str, url: &str, header: Option<&str>, secs: u64, conns: u32) -> Row {
    let wrk = system_bin("wrk").expect("wrk (Debian package `wrk`)");
    let mut cmd = Command::new(wrk);
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "{path}: errors during the run:\n{text}"
    );
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let row = Row {
        path,
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: field("50%").map(|v| wrk_ms(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|v| wrk_ms(&v)).unwrap_or(f64::NAN),
        requests,
    };
    assert!(
        row.rps.is_finite() && row.requests > 0,
        "{path}: cannot read wrk's output:\n{text}"
    );
    eprintln!(
        "{path}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
        row.rps, row.p50_ms, row.p99_ms
    );
    row
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[test]
#[ignore = "benchmark: run explicitly (see the module docs)"]
fn scope_overhead() {
    let secs: u64 = std::env::var("GEOMESH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conns: u32 = std::env::var("GEOMESH_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rounds: usize = std::env::var("GEOMESH_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = TestDir::new("scope-bench").unwrap();
    let opts = EnvoyOptions {
        log_level: "warning".into(),
        ..EnvoyOptions::default()
    };
    let topo = ScopeTopology::start(&dir, ScopePlan::free().unwrap(), opts.clone()).unwrap();
    let t_port = topo.plan.ports[0].instances["image"];
    // The same Envoy, same worker count, without the filter.
    let plain_port = free_port().unwrap();
    let plain_cfg = EnvoyConfig::new()
        .unwrap()
        .listener(http_listener("plain", plain_port, vec![], "t_dc1"))
        .cluster(static_cluster("t_dc1", &[t_port]));
    let _plain = Envoy::start_with(&dir, "envoy-plain", &plain_cfg, &opts).unwrap();
    // Two Envoys in a row without the filter: what the remote-scope row costs without geomesh.
    let chain_port = free_port().unwrap();
    let chain_cfg = EnvoyConfig::new()
        .unwrap()
        .listener(http_listener("chain", chain_port, vec![], "plain_envoy"))
        .cluster(static_cluster("plain_envoy", &[plain_port]));
    let _chain = Envoy::start_with(&dir, "envoy-chain", &chain_cfg, &opts).unwrap();

    let target = "/image/cat?size=64";
    let image = topo.url(0, "image");
    // Warm-up (V8 JIT, connection pools).
    wrk(
        "warm-up",
        &format!("{image}{target}"),
        Some("x-scope: { image: DC 2 }"),
        2,
        conns,
    );
    let cases: Vec<(&'static str, String, Option<&str>)> = vec![
        (
            "t directly (no Envoy)",
            format!("http://127.0.0.1:{t_port}{target}"),
            None,
        ),
        (
            "Envoy, no filter",
            format!("http://127.0.0.1:{plain_port}{target}"),
            None,
        ),
        (
            "Envoy -> Envoy, no filter",
            format!("http://127.0.0.1:{chain_port}{target}"),
            None,
        ),
        (
            "Envoy + scope filter, no scope",
            format!("{image}{target}"),
            None,
        ),
        (
            "Envoy + scope filter, local scope `{ image: DC 1 }`",
            format!("{image}{target}"),
            Some("x-scope: { image: DC 1 }"),
        ),
        (
            "Envoy + scope filter, remote scope `{ image: DC 2 }` (2 Envoys)",
            format!("{image}{target}"),
            Some("x-scope: { image: DC 2 }"),
        ),
        (
            "Envoy + scope filter, `around(DC 1, 50ms) ; DC 3` (local)",
            format!("{image}{target}"),
            Some("x-scope: { image: around(DC 1, 50ms) ; DC 3 }"),
        ),
    ];
    // Rounds interleave the cases so that a burst of other work on the machine hits them alike;
    // each figure is the median over the rounds.
    let mut runs: Vec<Vec<Row>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (i, (path, url, header)) in cases.iter().enumerate() {
            runs[i].push(wrk(path, url, *header, secs, conns));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rows: Vec<Row> = runs
        .into_iter()
        .zip(&cases)
        .map(|(rs, (path, _, _))| Row {
            path,
            rps: median(rs.iter().map(|r| r.rps).collect()),
            p50_ms: median(rs.iter().map(|r| r.p50_ms).collect()),
            p99_ms: median(rs.iter().map(|r| r.p99_ms).collect()),
            requests: rs.iter().map(|r| r.requests).sum(),
        })
        .collect();

    let date = sh("date -u +%Y-%m-%d");
    let load = sh("cut -d' ' -f1-3 /proc/loadavg");
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let mut md = String::new();
    let _ = writeln!(md, "# scope filter overhead ({date})\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, {}. Envoy {}, `--concurrency 1`, filter `{}` in V8. \
         Load: `wrk -t1 -c{conns} -d{secs}s --latency`, `GET {target}` (t answers 82 bytes), \
         {rounds} interleaved rounds, medians. \
         Build: {}. Load average at the end of the run: {load}. wrk, Envoy(s), t and the agents \
         share the cores (and other jobs ran on the machine), so compare rows of one run, not runs.\n",
        sh("nproc"),
        cpu.trim(),
        sh("uname -sr"),
        sh(&format!("{} --version | grep -o '[0-9]*\\.[0-9]*\\.[0-9]*' | head -1", repo_root().join(".cache/envoy/bin/envoy").display())),
        geomesh_integration::scope::WASM_REL,
        if cfg!(debug_assertions) { "debug (numbers are pessimistic)" } else { "release" },
    );
    let _ = writeln!(
        md,
        "| path | requests/s | p50 (ms) | p99 (ms) | vs. Envoy without filter | requests |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    let base = rows[1].rps;
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.3} | {:.3} | {:+.1}% | {} |",
            r.path,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            (r.rps / base - 1.0) * 100.0,
            r.requests
        );
    }
    let _ = writeln!(
        md,
        "\nCommand: `cargo build --release -p geomesh-agent && cargo test --release -p geomesh-integration --test scope_bench -- --ignored --nocapture`."
    );
    let out_dir = repo_root().join("integration/benches/results");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = out_dir.join(format!("scope-overhead-{date}.md"));
    std::fs::write(&file, &md).unwrap();
    eprintln!("\n{md}\nwritten to {}", file.display());
}
