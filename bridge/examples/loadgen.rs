//! Load tool: N concurrent connections with pipelined `GET key` requests, straight to a real
//! redis-server, through a real geomesh-bridge process (as GMB/1 channels, the way a filter
//! uses it), through Envoy's native redis_proxy (reference; when Envoy is found), and
//! redis-benchmark against the same server and proxy, all in one run. Reports requests/s and
//! the CPU each server process used per request.
//!
//! ```text
//! cargo build --release -p geomesh-bridge --bins --examples
//! target/release/examples/loadgen [--connections 50] [--pipeline 1,16] [--seconds 5]
//!     [--bridge PATH] [--bridge-threads N] [--envoy PATH|none] [--out FILE]
//! ```
//! The bridge binary is looked up next to this example (`../geomesh-bridge`); Envoy in
//! `$GEOMESH_ENVOY` or `.cache/envoy/bin/envoy` of the repository.
//!
//! `GET` and not `PING`, because Envoy's redis_proxy answers `PING` itself.

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use geomesh_frame::{encode_data, encode_hello, encode_open, split_frame, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "key:__rand_int__"; // the key redis-benchmark -t get reads without -r
const VALUE: &str = "xxx";
const REPLY: &[u8] = b"$3\r\nxxx\r\n";

struct Args {
    connections: usize,
    pipelines: Vec<usize>,
    seconds: u64,
    bridge: PathBuf,
    bridge_threads: Option<usize>,
    envoy: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse_args() -> Args {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()));
    let default_envoy = std::env::var("GEOMESH_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/envoy/bin/envoy")));
    let mut a = Args {
        connections: 50,
        pipelines: vec![1, 16],
        seconds: 5,
        bridge: exe_dir
            .map(|d| d.join("geomesh-bridge"))
            .unwrap_or_else(|| PathBuf::from("geomesh-bridge")),
        bridge_threads: None,
        envoy: default_envoy.exists().then_some(default_envoy),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--pipeline" => a.pipelines = val().split(',').map(|p| p.parse().expect("--pipeline N[,M]")).collect(),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--bridge" => a.bridge = PathBuf::from(val()),
            "--bridge-threads" => a.bridge_threads = Some(val().parse().expect("--bridge-threads N")),
            "--envoy" => {
                let v = val();
                a.envoy = (v != "none").then(|| PathBuf::from(v));
            }
            "--out" => a.out = Some(PathBuf::from(val())),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the ")" that ends the command name: utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn get_cmd() -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{KEY}\r\n", KEY.len()).into_bytes()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Gmb,
}

async fn client(addr: String, mode: Mode, pipeline: usize, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    let payload: Vec<u8> = get_cmd().repeat(pipeline);
    let mut batch = Vec::new();
    match mode {
        Mode::Plain => batch.extend_from_slice(&payload),
        Mode::Gmb => {
            let mut first = Vec::new();
            encode_hello(&mut first, "loadgen");
            encode_open(&mut first, 1, 0, 0, "redis");
            s.write_all(&first).await.unwrap();
            encode_data(&mut batch, Kind::Data, 1, &payload);
        }
    }
    let want = pipeline * REPLY.len();
    let mut buf = vec![0u8; 256 * 1024];
    let mut acc: Vec<u8> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&batch).await.unwrap();
        let mut got = 0;
        while got < want {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed");
            match mode {
                Mode::Plain => got += n,
                Mode::Gmb => {
                    acc.extend_from_slice(&buf[..n]);
                    let mut used = 0;
                    while let Some((f, len)) = split_frame(&acc[used..]).expect("frames") {
                        assert_eq!(f.kind, Kind::BridgeData, "unexpected frame {f:?}");
                        got += f.payload.len();
                        used += len;
                    }
                    acc.drain(..used);
                }
            }
        }
        assert_eq!(got, want, "replies are not what was expected");
        count.fetch_add(pipeline as u64, Ordering::Relaxed);
    }
}

/// One measured phase: requests/s, and CPU % of each pid.
async fn phase(addr: &str, mode: Mode, a: &Args, pipeline: usize, pids: &[u32]) -> (f64, Vec<f64>) {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        tasks.push(tokio::spawn(client(
            addr.to_owned(),
            mode,
            pipeline,
            count.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // warm-up
    let c0 = count.load(Ordering::Relaxed);
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let c1 = count.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(cpu0)
        .map(|(p, c)| (cpu_seconds(*p) - c) / secs * 100.0)
        .collect();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a client failed");
    }
    ((c1 - c0) as f64 / secs, cpu)
}

fn redis_benchmark(port: u16, a: &Args, pipeline: usize) -> Option<f64> {
    let n = (100_000 * pipeline.max(1)).min(2_000_000);
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            &a.connections.to_string(),
            "-n",
            &n.to_string(),
        ])
        .args(["-P", &pipeline.to_string(), "-t", "get", "-q"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.split(['\r', '\n']).rfind(|l| l.starts_with("GET:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start_envoy(envoy: &PathBuf, dir: &std::path::Path, redis_port: u16) -> (Killed, u16) {
    let port = free_port();
    let admin = free_port();
    let cfg = format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: redis
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
          stat_prefix: redis
          settings: {{ op_timeout: 5s }}
          prefix_routes: {{ catch_all_route: {{ cluster: redis }} }}
  clusters:
  - name: redis
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: redis
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {redis_port} }} }} }} }}] }}]
"#
    );
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new(envoy)
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--log-level", "error", "--base-id"])
        .arg((std::process::id() % 50000 + 1000).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("envoy");
    let k = Killed(child);
    wait_port(port);
    (k, port)
}

fn main() {
    let a = parse_args();
    assert!(
        a.bridge.exists(),
        "bridge binary not found at {} (build it, or pass --bridge)",
        a.bridge.display()
    );
    let redis_port = free_port();
    let redis = Killed(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    wait_port(redis_port);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis_port)).unwrap();
    write!(
        s,
        "*3\r\n$3\r\nSET\r\n${}\r\n{KEY}\r\n${}\r\n{VALUE}\r\n",
        KEY.len(),
        VALUE.len()
    )
    .unwrap();
    let mut ok = [0u8; 5];
    std::io::Read::read_exact(&mut s, &mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");

    let dir = std::env::temp_dir().join(format!("geomesh-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bridge.yaml");
    std::fs::write(
        &cfg,
        format!("site: bench\nlisten: 127.0.0.1:0\nclusters:\n  redis: {{ address: \"127.0.0.1:{redis_port}\" }}\n"),
    )
    .unwrap();
    let mut cmd = Command::new(&a.bridge);
    cmd.arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(n) = a.bridge_threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    let mut bridge = Killed(cmd.spawn().expect("bridge"));
    let mut line = String::new();
    BufReader::new(bridge.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listen = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .expect("bridge ready line")
        .to_owned();
    let envoy = a.envoy.as_ref().map(|e| start_envoy(e, &dir, redis_port));
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct = format!("127.0.0.1:{redis_port}");
    let bridge_pid = bridge.0.id();
    let redis_pid = redis.0.id();

    let mut report = format!(
        "# geomesh-bridge loadgen\n\n{} connections, {} s per phase, `GET` of a 3-byte value, {} CPUs shared by \
         client, proxy and redis-server; loadgen client: one tokio thread\n\n\
         | pipeline | path | requests/s | vs direct | proxy CPU % | redis CPU % | proxy CPU µs/request |\n|---|---|---|---|---|---|---|\n",
        a.connections,
        a.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let mut printed = 0;
    for &p in &a.pipelines {
        let (d_rps, c) = rt.block_on(phase(&direct, Mode::Plain, &a, p, &[redis_pid]));
        report.push_str(&format!(
            "| {p} | direct (loadgen) | {d_rps:.0} | 1.00 | - | {:.0} | - |\n",
            c[0]
        ));
        if let Some(rb) = redis_benchmark(redis_port, &a, p) {
            report.push_str(&format!(
                "| {p} | direct (redis-benchmark) | {rb:.0} | {:.2} | - | - | - |\n",
                rb / d_rps
            ));
        }
        let (b_rps, c) = rt.block_on(phase(&listen, Mode::Gmb, &a, p, &[bridge_pid, redis_pid]));
        report.push_str(&format!(
            "| {p} | geomesh-bridge (loadgen, GMB/1) | {b_rps:.0} | {:.2} | {:.0} | {:.0} | {:.2} |\n",
            b_rps / d_rps,
            c[0],
            c[1],
            c[0] / 100.0 / b_rps * 1e6
        ));
        if let Some((e, port)) = &envoy {
            let addr = format!("127.0.0.1:{port}");
            let (e_rps, c) = rt.block_on(phase(&addr, Mode::Plain, &a, p, &[e.0.id(), redis_pid]));
            report.push_str(&format!(
                "| {p} | Envoy redis_proxy, 1 worker (loadgen) | {e_rps:.0} | {:.2} | {:.0} | {:.0} | {:.2} |\n",
                e_rps / d_rps,
                c[0],
                c[1],
                c[0] / 100.0 / e_rps * 1e6
            ));
            if let Some(rb) = redis_benchmark(*port, &a, p) {
                report.push_str(&format!(
                    "| {p} | Envoy redis_proxy (redis-benchmark) | {rb:.0} | {:.2} | - | - | - |\n",
                    rb / d_rps
                ));
            }
        }
        print!("{}", &report[printed..]);
        printed = report.len();
        let _ = std::io::stdout().flush();
    }
    if let Some(out) = &a.out {
        std::fs::write(out, &report).expect("--out file");
    }
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}
