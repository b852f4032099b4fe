//! The network filter shell under connection churn, end to end: the real Redis filter
//! (`target/wasm/geomesh_filter_redis.wasm`, V8), real `geomesh-bridge`s, a real
//! `redis-server`, and 300 raw client connections opened and closed in every order (client
//! first with and without requests in flight, reset, half-close, `QUIT`, idle; the bridge
//! first, killed or draining, with connections idle or blocked in `BLPOP`), while one
//! long-lived connection does SET/GET through the same Wasm VM the whole time.
//!
//! ```text
//! canary  ─▶ Envoy :stable [wasm ─ tcp_proxy] ─▶ bridge A ─┐
//! churn   ─▶ Envoy :churn  [wasm ─ tcp_proxy] ─▶ bridge B ─┴─▶ redis-server
//!                          (one VM: same vm_id, --concurrency 1)
//! ```
//!
//! A panic in the VM ends every connection of the worker: the canary fails, and the harness's
//! drop check (`Envoy::wasm_failure`) fails the test. The original bug this guards against:
//! Envoy calls `proxy_on_upstream_connection_close` after `proxy_on_delete` when a filter
//! closes the client in the callback that carries the bridge's end of stream, and the
//! proxy-wasm 0.2.5 SDK panics on the unknown context (filters/shell/README.md).
//!
//! `GEOMESH_LIFECYCLE_WASM=/path/to/filter.wasm` runs the test against another build of the
//! filter (how the original bug was shown to fail it); `GEOMESH_LIFECYCLE_ENVOY_LOG` sets
//! Envoy's `--component-log-level`.
//!
//! Figures (close latencies, canary operations) are printed; run with `--nocapture`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geomesh_integration::envoy::{
    static_cluster, tcp_listener, tcp_proxy_filter, wasm_network_filter, EnvoyOptions,
};
use geomesh_integration::paths::wasm_path;
use geomesh_integration::redis_mesh::{connect, Bridge, PLUGIN};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, Redis, TestDir, WasmPlugin};
use redis::Commands;

const FILTER_CONFIG: &str = "\
workload_type: redis
default_cluster: r1
upstream_timeout_ms: 3000
";

/// How long a client may wait for its close before the test calls it hung.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

fn wasm() -> PathBuf {
    match std::env::var_os("GEOMESH_LIFECYCLE_WASM") {
        Some(p) => PathBuf::from(p),
        None => wasm_path("geomesh_filter_redis").unwrap(),
    }
}

fn bridge_yaml(port: u16, redis: u16) -> String {
    // drain_timeout_ms 0: a SIGTERM cuts every connection at once with ERROR (then FIN).
    format!(
        "site: local\nlisten: 127.0.0.1:{port}\ndefaults:\n  drain_timeout_ms: 0\nclusters:\n  r1: {{ address: 127.0.0.1:{redis} }}\n"
    )
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

fn client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    s
}

/// Reads until EOF (or a reset); `None` if nothing ended the connection within
/// [`CLOSE_WITHIN`]. Returns the bytes and when the end came.
fn read_to_end(s: &mut TcpStream) -> Option<(Vec<u8>, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some((got, Instant::now())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some((got, Instant::now())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// `+PONG` then the bulk reply of `GET canary` (a number), and nothing else.
fn is_pong_then_number(got: &[u8]) -> bool {
    let Some(rest) = got.strip_prefix(b"+PONG\r\n$") else {
        return false;
    };
    let text = String::from_utf8_lossy(rest);
    let Some((len, tail)) = text.split_once("\r\n") else {
        return false;
    };
    let Some(value) = tail.strip_suffix("\r\n") else {
        return false;
    };
    len.parse::<usize>().ok() == Some(value.len()) && value.parse::<u64>().is_ok()
}

/// Reads until `want` bytes arrived.
fn read_exact_reply(s: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a live socket with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// xorshift: a fixed, reproducible order.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// Connects, sends nothing, closes.
    Idle,
    /// PING, reads PONG, closes.
    AfterReply,
    /// A pipeline of SETs and a BLPOP, closes without reading.
    Pending,
    /// PING, then a reset (SO_LINGER 0).
    Reset,
    /// PING + GET, shuts down its write side, reads until EOF.
    HalfClose,
    /// QUIT: the filter closes after +OK.
    Quit,
    /// Left open (idle, or blocked in BLPOP) until the bridge goes away.
    BridgeFirst { blocked: bool },
}

#[derive(Default)]
struct Figures {
    quit_close_ms: Vec<f64>,
    bridge_killed_close_ms: Vec<f64>,
    bridge_drained_close_ms: Vec<f64>,
    bridge_gone_errors: usize,
    bridge_gone_blocked: usize,
    half_close_replies: usize,
    half_closes: usize,
    by_way: std::collections::BTreeMap<String, usize>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "n={} median={:.2} ms max={:.2} ms",
        v.len(),
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

/// One long-lived connection doing SET/GET until told to stop.
struct Canary {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    worst: Arc<Mutex<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Canary {
    fn start(port: u16) -> Canary {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let worst = Arc::new(Mutex::new(Duration::ZERO));
        let mut con = connect(&format!("redis://127.0.0.1:{port}/")).unwrap();
        let (s, o, f, w) = (stop.clone(), ops.clone(), failure.clone(), worst.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Relaxed) {
                i += 1;
                let t0 = Instant::now();
                let r: redis::RedisResult<u64> = con
                    .set::<_, _, ()>("canary", i)
                    .and_then(|()| con.get("canary"));
                match r {
                    Ok(v) if v == i => {}
                    other => {
                        *f.lock().unwrap() = Some(format!("op {i}: {other:?}"));
                        return;
                    }
                }
                let dt = t0.elapsed();
                let mut worst = w.lock().unwrap();
                *worst = (*worst).max(dt);
                drop(worst);
                o.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        Canary {
            stop,
            ops,
            failure,
            worst,
            thread: Some(thread),
        }
    }

    fn check(&self, when: &str) {
        if let Some(f) = self.failure.lock().unwrap().clone() {
            panic!("the long-lived connection failed {when}: {f}");
        }
    }

    /// Fails unless the long-lived connection completes another SET+GET (within 5 s).
    fn advance(&self, when: &str) {
        let start = self.ops.load(Relaxed);
        let t0 = Instant::now();
        while self.ops.load(Relaxed) <= start {
            self.check(when);
            assert!(
                t0.elapsed() < CLOSE_WITHIN,
                "the long-lived connection stalled {when}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn finish(mut self) -> (u64, Duration) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.check("at the end");
        (self.ops.load(Relaxed), *self.worst.lock().unwrap())
    }
}

fn restart_bridge(
    dir: &TestDir,
    bridge: &mut Bridge,
    yaml: &str,
    n: usize,
    graceful: bool,
) -> Instant {
    let t0 = Instant::now();
    if graceful {
        bridge.proc.signal(libc::SIGTERM).unwrap();
    } else {
        bridge.proc.signal(libc::SIGKILL).unwrap();
    }
    bridge.proc.wait_exit(Duration::from_secs(10)).unwrap();
    *bridge = Bridge::start_config(dir, &format!("bridge-b{n}"), yaml).unwrap();
    t0
}

/// A client on the churn listener works: PING, SET, GET.
fn works(port: u16, tag: &str) {
    let mut s = client(port);
    let mut req = cmd(&["PING"]);
    req.extend(cmd(&["SET", tag, "v"]));
    req.extend(cmd(&["GET", tag]));
    s.write_all(&req).unwrap();
    read_exact_reply(&mut s, b"+PONG\r\n+OK\r\n$1\r\nv\r\n");
}

#[test]
fn churn_in_every_order_keeps_the_vm_alive() {
    let dir = TestDir::new("shell-lifecycle").unwrap();
    let redis = Redis::start(&dir, "r1").unwrap();
    let bridge_a = Bridge::start(&dir, "bridge-a", &[("r1", redis.port)]).unwrap();
    let b_port = free_port().unwrap();
    let b_yaml = bridge_yaml(b_port, redis.port);
    let (stable, churn) = (free_port().unwrap(), free_port().unwrap());
    let plugin = WasmPlugin::new(PLUGIN, "", wasm(), FILTER_CONFIG).vm_id("geomesh_lifecycle");
    let cfg = EnvoyConfig::new()
        .unwrap()
        .listener(tcp_listener(
            "stable",
            stable,
            vec![
                wasm_network_filter(&plugin),
                tcp_proxy_filter("stable", "bridge_a"),
            ],
        ))
        .listener(tcp_listener(
            "churn",
            churn,
            vec![
                wasm_network_filter(&plugin),
                tcp_proxy_filter("churn", "bridge_b"),
            ],
        ))
        .cluster(static_cluster("bridge_a", &[bridge_a.port]))
        .cluster(static_cluster("bridge_b", &[b_port]));
    let opts = EnvoyOptions {
        // e.g. `wasm:debug,connection:debug,filter:debug` to see the order of the callbacks.
        component_log_level: std::env::var("GEOMESH_LIFECYCLE_ENVOY_LOG").ok(),
        ..EnvoyOptions::default()
    };
    let envoy = Envoy::start_with(&dir, "envoy", &cfg, &opts).unwrap();
    geomesh_integration::wait_tcp(churn, Duration::from_secs(20)).unwrap();
    let canary = Canary::start(stable);
    let mut figures = Figures::default();

    // 1. The bridge is down: tcp_proxy's connect fails, the client must be closed at once,
    //    whether it sent a request or not.
    let mut down_ms = Vec::new();
    for k in 0..20 {
        let t0 = Instant::now();
        let mut s = client(churn);
        if k % 2 == 0 {
            s.write_all(&cmd(&["PING"])).unwrap();
        }
        let (got, end) = read_to_end(&mut s).expect("a client of a down bridge was not closed");
        assert!(got.is_empty(), "bytes from a down bridge: {got:?}");
        down_ms.push(ms(end - t0));
    }
    canary.advance("while the bridge was down");

    // 2. The bridge comes up: new clients work.
    let mut bridge_b = Bridge::start_config(&dir, "bridge-b0", &b_yaml).unwrap();
    assert_eq!(bridge_b.port, b_port);
    works(churn, "after-start");

    // 3. 300 connections, opened in batches and closed in a shuffled order; every third batch
    //    ends with the bridge going away under the connections left open.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut restarts = 0;
    let mut total = 0;
    for batch in 0..10 {
        let mut conns: Vec<(Way, TcpStream)> = Vec::new();
        for _ in 0..30 {
            let way = match rng.below(9) {
                0 => Way::Idle,
                1 => Way::AfterReply,
                2 | 3 => Way::Pending,
                4 => Way::Reset,
                5 => Way::HalfClose,
                6 => Way::Quit,
                r if batch % 3 == 2 => Way::BridgeFirst { blocked: r == 7 },
                _ => Way::AfterReply,
            };
            *figures.by_way.entry(format!("{way:?}")).or_default() += 1;
            conns.push((way, client(churn)));
        }
        total += conns.len();
        // Requests first (all connections open at once), then the closes in a shuffled order.
        let mut sent_at = Vec::new();
        for (way, s) in conns.iter_mut() {
            let req = match way {
                Way::Idle => Vec::new(),
                Way::AfterReply | Way::Reset => cmd(&["PING"]),
                Way::Pending => {
                    let mut r = Vec::new();
                    for i in 0..20 {
                        r.extend(cmd(&["SET", &format!("p{batch}:{i}"), "x"]));
                    }
                    r.extend(cmd(&["BLPOP", &format!("nothing{batch}"), "2"]));
                    r
                }
                Way::HalfClose => {
                    let mut r = cmd(&["PING"]);
                    r.extend(cmd(&["GET", "canary"]));
                    r
                }
                Way::Quit => cmd(&["QUIT"]),
                Way::BridgeFirst { blocked: true } => {
                    cmd(&["BLPOP", &format!("never{batch}"), "0"])
                }
                Way::BridgeFirst { blocked: false } => cmd(&["PING"]),
            };
            if !req.is_empty() {
                s.write_all(&req).unwrap();
            }
            sent_at.push(Instant::now());
        }
        let mut order: Vec<usize> = (0..conns.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut left_open = Vec::new();
        for i in order {
            let (way, s) = &mut conns[i];
            match *way {
                Way::Idle | Way::Pending => {}
                Way::AfterReply => read_exact_reply(s, b"+PONG\r\n"),
                Way::Reset => {
                    read_exact_reply(s, b"+PONG\r\n");
                    set_linger_zero(s);
                }
                Way::HalfClose => {
                    s.shutdown(Shutdown::Write).unwrap();
                    let (got, _) = read_to_end(s).expect("a half-closed client was never closed");
                    figures.half_closes += 1;
                    // Both requests in flight at the FIN are answered (the bridge drains its
                    // channels after the filter's end of stream), then EOF.
                    assert!(
                        is_pong_then_number(&got),
                        "a half-closed client got {:?}",
                        String::from_utf8_lossy(&got)
                    );
                    figures.half_close_replies += 1;
                }
                Way::Quit => {
                    let (got, end) = read_to_end(s).expect("QUIT did not close the connection");
                    assert_eq!(got, b"+OK\r\n");
                    figures.quit_close_ms.push(ms(end - sent_at[i]));
                }
                Way::BridgeFirst { blocked } => {
                    if !blocked {
                        read_exact_reply(s, b"+PONG\r\n");
                    }
                    left_open.push(i);
                    continue;
                }
            }
        }
        // Client-side closes: drop everything not left for the bridge to close.
        let mut keep = Vec::new();
        for (i, c) in conns.into_iter().enumerate() {
            if left_open.contains(&i) {
                keep.push(c);
            }
        }
        if batch % 3 == 2 {
            // The bridge goes first: killed, or drained at once (ERROR then FIN), in turn.
            restarts += 1;
            std::thread::sleep(Duration::from_millis(50));
            let graceful = restarts % 2 == 0;
            // One reader per connection, so that each close is timed on its own.
            let readers: Vec<_> = keep
                .into_iter()
                .map(|(way, mut s)| std::thread::spawn(move || (way, read_to_end(&mut s))))
                .collect();
            let gone = restart_bridge(&dir, &mut bridge_b, &b_yaml, restarts, graceful);
            for r in readers {
                let (way, end) = r.join().unwrap();
                let (got, end) = end.expect("a client of a dead bridge was not closed");
                let after = ms(end.saturating_duration_since(gone));
                if graceful {
                    figures.bridge_drained_close_ms.push(after);
                } else {
                    figures.bridge_killed_close_ms.push(after);
                }
                if way == (Way::BridgeFirst { blocked: true }) {
                    figures.bridge_gone_blocked += 1;
                    // The BLPOP in flight is answered with an error before the close.
                    assert!(
                        got.starts_with(b"-"),
                        "blocked client got {:?} then EOF",
                        String::from_utf8_lossy(&got)
                    );
                    figures.bridge_gone_errors += 1;
                } else {
                    assert!(
                        got.is_empty() || got.starts_with(b"-"),
                        "idle client got {got:?}"
                    );
                }
            }
            works(churn, &format!("after-restart-{restarts}"));
        }
        canary.advance(&format!("after batch {batch}"));
    }
    // Connections closed by the client with requests in flight did not disturb the others,
    // and the redis-server saw their SETs or not, but the filter is alive: a last check.
    works(churn, "at-the-end");
    let (ops, worst) = canary.finish();

    println!("shell lifecycle figures:");
    println!("  bridge down, client closed after: {}", summary(&down_ms));
    println!("  QUIT, closed after: {}", summary(&figures.quit_close_ms));
    println!(
        "  bridge restarted {restarts} times; open clients closed after: SIGKILL {}, SIGTERM (drain 0: ERROR+FIN) {}; blocked BLPOPs answered with an error first: {}/{}",
        summary(&figures.bridge_killed_close_ms),
        summary(&figures.bridge_drained_close_ms),
        figures.bridge_gone_errors,
        figures.bridge_gone_blocked
    );
    println!(
        "  half-closed clients: {} (got their replies before EOF: {})",
        figures.half_closes, figures.half_close_replies
    );
    println!("  connections by way: {:?} (total {total})", figures.by_way);
    println!(
        "  long-lived connection: {ops} SET+GET, slowest {:.1} ms",
        ms(worst)
    );
    let log = envoy.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[warning][wasm]"))
        .collect();
    println!(
        "  filter warnings in Envoy's log: {} (first: {:?})",
        warned.len(),
        warned.first()
    );

    assert_eq!(total, 300);
    assert!(restarts >= 3);
    assert!(figures.bridge_gone_blocked > 0);
    assert!(figures.half_closes > 0);
    assert!(
        down_ms.iter().all(|m| *m < 1000.0),
        "a client of a down bridge waited: {down_ms:?}"
    );
    assert!(
        ops >= 12,
        "the long-lived connection did only {ops} operations"
    );
    if let Some(line) = envoy.wasm_failure() {
        panic!("a Wasm VM failed: {line}");
    }
    drop(bridge_a);
    drop(redis);
}
