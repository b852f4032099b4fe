//! What the benchmarks share (programs, not timed tests; `src/bin/bench-*.rs`): running
//! `redis-benchmark` against a path and reading its CSV, the CPU time of every process on the
//! path (`/proc/<pid>/stat`) and of the client (`getrusage`), medians over interleaved rounds,
//! CPU pinning, a check that a sharded path spreads keys over both shards, and the machine and
//! versions for the report's header.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths::system_bin;
use crate::redis_mesh::redis_cli;
use crate::Redis;

/// One way to a Redis: where redis-benchmark connects, and the proxy processes whose CPU is
/// counted.
pub struct BenchPath {
    pub name: &'static str,
    pub port: u16,
    /// The proxy's processes (Envoy, then the bridge).
    pub pids: Vec<u32>,
}

/// What a run measures besides the path's own processes.
pub struct Probe {
    /// The redis-servers (shard A, shard B).
    pub redis: Vec<u32>,
    /// `-r N` (0 = none).
    pub keyspace: u64,
    /// taskset CPU list for redis-benchmark.
    pub client_cpus: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub workload: &'static str,
    pub pipeline: u32,
    pub path: &'static str,
    pub rps: f64,
    pub p50: f64,
    pub p99: f64,
    /// CPU seconds of Envoy + bridge per 1000 requests; None for the direct path.
    pub cpu: Option<f64>,
    /// The same, per process (Envoy first).
    pub cpu_split: Vec<f64>,
    /// CPU seconds per 1000 requests of redis-benchmark, and of both redis-servers.
    pub client_cpu: f64,
    pub redis_cpu: f64,
}

/// user+system seconds of the children waited for so far.
pub fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass; it is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above, a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU nanoseconds (user + system) of this process so far, threads that ended included (which
/// [`cpu_ns`] of our own pid would miss).
pub fn self_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass; it is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above, a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let t = |v: libc::timeval| v.tv_sec as u64 * 1_000_000_000 + v.tv_usec as u64 * 1000;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU ticks (user + system) of a process so far.
pub fn ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(ut + st)
}

/// Ticks per second.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// redis-benchmark's arguments for a workload (SET, GET, MSET or MGET of 10 keys, MSETB).
pub fn workload_args(w: &str) -> Vec<String> {
    match w {
        "SET" => vec!["-t".into(), "set".into()],
        "GET" => vec!["-t".into(), "get".into()],
        // redis-benchmark's own MSET test: ten times `key:__rand_int__` (one key without -r).
        "MSETB" => vec!["-t".into(), "mset".into()],
        "MSET" => {
            let mut v = vec!["MSET".to_owned()];
            for i in 1..=10 {
                v.push(format!("k{i}:__rand_int__"));
                v.push("xxx".into());
            }
            v
        }
        _ => {
            let mut v = vec!["MGET".to_owned()];
            for i in 1..=10 {
                v.push(format!("k{i}:__rand_int__"));
            }
            v
        }
    }
}

/// One redis-benchmark run of `workload` against `path`: its figures and the CPU time of every
/// process involved.
pub fn run_benchmark(
    path: &BenchPath,
    probe: &Probe,
    workload: &'static str,
    pipeline: u32,
    requests: u64,
    clients: u32,
) -> Result<Row> {
    let before: Vec<u64> = path.pids.iter().map(|p| ticks(*p).unwrap_or(0)).collect();
    let redis_before: u64 = probe.redis.iter().map(|p| ticks(*p).unwrap_or(0)).sum();
    let client_before = children_cpu();
    let mut cmd = match &probe.client_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(system_bin("redis-benchmark")?);
            c
        }
        None => Command::new(system_bin("redis-benchmark")?),
    };
    cmd.args(["-h", "127.0.0.1", "-p", &path.port.to_string()])
        .args([
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
            "-P",
            &pipeline.to_string(),
            "--csv",
        ]);
    if probe.keyspace > 0 {
        cmd.args(["-r", &probe.keyspace.to_string()]);
    }
    let out = cmd
        .args(workload_args(workload))
        .output()
        .context("run redis-benchmark")?;
    let client_cpu = children_cpu() - client_before;
    let after: Vec<u64> = path.pids.iter().map(|p| ticks(*p).unwrap_or(0)).collect();
    let redis_after: u64 = probe.redis.iter().map(|p| ticks(*p).unwrap_or(0)).sum();
    let per_k = |t: u64| t as f64 / clk_tck() / (requests as f64 / 1000.0);
    let cpu_split: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| per_k(a - b))
        .collect();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.starts_with("\"test\"") && l.starts_with('"'))
        .with_context(|| {
            format!(
                "no CSV line from redis-benchmark: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let cols: Vec<String> = line
        .split("\",\"")
        .map(|c| c.trim_matches('"').to_owned())
        .collect();
    let num = |i: usize| -> Result<f64> {
        cols.get(i)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("column {i} of {line}"))
    };
    let cpu = (!path.pids.is_empty()).then(|| cpu_split.iter().sum());
    Ok(Row {
        workload,
        pipeline,
        path: path.name,
        rps: num(1)?,
        p50: num(4)?,
        p99: num(6)?,
        cpu,
        cpu_split,
        client_cpu: client_cpu / (requests as f64 / 1000.0),
        redis_cpu: per_k(redis_after.saturating_sub(redis_before)),
    })
}

/// The median of each figure over runs of one (workload, pipeline, path).
pub fn median_row(runs: &[Row]) -> Option<Row> {
    let first = runs.first()?.clone();
    let med = |f: &dyn Fn(&Row) -> f64| -> f64 {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let n = first.cpu_split.len();
    let cpu_split: Vec<f64> = (0..n)
        .map(|i| med(&|r: &Row| r.cpu_split.get(i).copied().unwrap_or(0.0)))
        .collect();
    Some(Row {
        rps: med(&|r| r.rps),
        p50: med(&|r| r.p50),
        p99: med(&|r| r.p99),
        cpu: first.cpu.map(|_| cpu_split.iter().sum()),
        cpu_split,
        client_cpu: med(&|r| r.client_cpu),
        redis_cpu: med(&|r| r.redis_cpu),
        ..first
    })
}

/// `taskset -a -pc cpus pid` (every thread of the process).
pub fn pin(pid: u32, cpus: &str) -> Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-pc", cpus, &pid.to_string()])
        .output()
        .context("run taskset")?;
    if !out.status.success() {
        bail!(
            "taskset {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Both shards get some of 10 keys written through `port`.
pub fn check_spread(port: u16, a: &Redis, b: &Redis) -> Result<(usize, usize)> {
    for r in [a, b] {
        redis_cli(r.port, &["FLUSHALL"])?;
    }
    let mut args: Vec<String> = vec!["MSET".into()];
    for i in 1..=10 {
        args.push(format!("k{i}:000000000{i}"));
        args.push("v".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, err, ok) = redis_cli(port, &args)?;
    if !ok || out.trim() != "OK" {
        bail!("MSET through {port}: {out} {err}");
    }
    let n = |r: &Redis| -> Result<usize> { Ok(redis_cli(r.port, &["DBSIZE"])?.0.trim().parse()?) };
    let split = (n(a)?, n(b)?);
    if split.0 + split.1 != 10 || split.0 == 0 || split.1 == 0 {
        bail!("10 keys through port {port} landed {split:?} on the two shards");
    }
    Ok(split)
}

/// The first line of `cmd arg` (Envoy: what follows `version: `).
pub fn version(cmd: &std::path::Path, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            // Envoy prints its own path first.
            line.rsplit_once("version: ")
                .map(|(_, v)| v.to_owned())
                .unwrap_or(line)
        })
        .unwrap_or_default()
}

/// CPU model, cores and kernel, for a report's header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}


/// Today (UTC) as `YYYY-MM-DD`, for a report's name.
pub fn utc_date() -> Result<String> {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output().context("run date")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// CPU nanoseconds of every thread of a process so far (`/proc/<pid>/task/*/schedstat`: finer
/// than the 10 ms ticks of `/proc/<pid>/stat`); 0 for a process that is gone.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `perf` attached to running processes for the length of one benchmark run (bench-mqtt's
/// `--perf`): `perf <args> -p <pids> -o <file>`, stopped with SIGINT so that it writes its
/// data or counts. `args` is a perf subcommand and its options, e.g. `record -q -g -e
/// cpu-clock` or `stat -e context-switches,syscalls:sys_enter_sendto`.
pub struct PerfAttach(std::process::Child);

impl PerfAttach {
    pub fn start(args: &str, pids: &[u32], file: &std::path::Path) -> Result<PerfAttach> {
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let child = Command::new("perf")
            .args(args.split_whitespace())
            .args(["-p", &pids.join(","), "-o"])
            .arg(file)
            .spawn()
            .context("run perf")?;
        // perf needs a moment to attach before the run starts.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(PerfAttach(child))
    }

    pub fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on the child we spawned; no memory is involved.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        self.0.wait()?;
        Ok(())
    }
}
