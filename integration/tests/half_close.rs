//! A client that half-closes (`shutdown(SHUT_WR)`) with requests in flight gets every answer,
//! end to end: real clients, real Envoy (`tcp_proxy`), the real Redis filter, real
//! `geomesh-bridge`s (one channel local, one tunnelled over gRPC to another site's bridge) and a
//! real `redis-server`.
//!
//! ```text
//! client ─▶ Envoy :plain  [tcp_proxy] ───────────────────────────────────────────────▶ redis-server
//! client ─▶ Envoy :local  [wasm ─ tcp_proxy] ─▶ bridge dc2 ──────────────────────────▶ redis-server
//! client ─▶ Envoy :remote [wasm ─ tcp_proxy] ─▶ bridge dc1 ─gRPC─▶ bridge dc2 ─────────▶ redis-server
//! ```
//!
//! The FIN travels: client → Envoy (`tcp_proxy` has half-close enabled on both connections: the
//! downstream FIN becomes `on_downstream_data(eos)` then an upstream `shutdown(SHUT_WR)`) →
//! bridge (filter connection read EOF: every backend is half-closed once it has taken the
//! queued bytes; a tunnel ends its request stream, and the far bridge half-closes its backend)
//! → redis-server (reads the commands, writes the replies, reads EOF, closes) → the backend's
//! EOF comes back as `CLOSED(EOF)`, the bridge ends the filter connection, `tcp_proxy` passes
//! that FIN to the client after the replies.
//!
//! `:plain` and a direct connection are the references: what Envoy and redis-server do
//! without geomesh. Figures are printed; run with `--nocapture`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use geomesh_integration::envoy::{
    static_cluster, tcp_listener, tcp_proxy_filter, wasm_network_filter,
};
use geomesh_integration::paths::wasm_path;
use geomesh_integration::redis_mesh::{Bridge, PLUGIN};
use geomesh_integration::{free_port, Envoy, EnvoyConfig, Redis, TestDir, WasmPlugin};

const FILTER_CONFIG: &str = "\
workload_type: redis
default_cluster: r1
upstream_timeout_ms: 3000
";

/// How long a half-closed client may wait for all its answers and the EOF.
const WITHIN: Duration = Duration::from_secs(10);

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// Splits RESP2 replies (no arrays: the commands used here answer none). `None` if the bytes
/// end inside a reply or are not RESP.
fn parse_replies(b: &[u8]) -> Option<Vec<Reply>> {
    match parse_prefix(b) {
        (r, true) => Some(r),
        (_, false) => None,
    }
}

/// The complete replies at the start of `b`, and whether that was all of `b`.
fn parse_prefix(mut b: &[u8]) -> (Vec<Reply>, bool) {
    let mut out = Vec::new();
    while !b.is_empty() {
        match parse_one(b) {
            Some((r, rest)) => {
                out.push(r);
                b = rest;
            }
            None => return (out, false),
        }
    }
    (out, true)
}

fn parse_one(b: &[u8]) -> Option<(Reply, &[u8])> {
    let nl = b.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(b.get(1..nl)?).ok()?;
    let rest = &b[nl + 2..];
    match b[0] {
        b'+' => Some((Reply::Simple(line.to_owned()), rest)),
        b'-' => Some((Reply::Error(line.to_owned()), rest)),
        b':' => Some((Reply::Int(line.parse().ok()?), rest)),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some((Reply::Bulk(None), rest));
            }
            let n = n as usize;
            if rest.get(n..n + 2)? != b"\r\n" {
                return None;
            }
            Some((Reply::Bulk(Some(rest[..n].to_vec())), &rest[n + 2..]))
        }
        _ => None,
    }
}

/// Sends `req` in one write, half-closes, reads until EOF. Returns the bytes and the time from
/// the FIN to the EOF; panics if no EOF within [`WITHIN`].
fn send_half_close_read(port: u16, req: &[u8]) -> (Vec<u8>, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WITHIN)).unwrap();
    s.write_all(req).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, t0.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, t0.elapsed()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "port {port}: no EOF within {WITHIN:?} after the FIN ({} bytes read)",
                    got.len()
                )
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// `n` pipelined commands (SET, INCR, GET in turn on keys of `tag`) and the replies they must get.
fn pipeline(tag: &str, n: usize) -> (Vec<u8>, Vec<Reply>) {
    let mut req = Vec::new();
    let mut want = Vec::new();
    let mut count = 0i64;
    for i in 0..n {
        match i % 3 {
            0 => {
                req.extend(cmd(&["SET", &format!("{tag}:{i}"), &format!("v{i}")]));
                want.push(Reply::Simple("OK".into()));
            }
            1 => {
                count += 1;
                req.extend(cmd(&["INCR", &format!("{tag}:count")]));
                want.push(Reply::Int(count));
            }
            _ => {
                req.extend(cmd(&["GET", &format!("{tag}:{}", i - 2)]));
                want.push(Reply::Bulk(Some(format!("v{}", i - 2).into_bytes())));
            }
        }
    }
    (req, want)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Path {
    name: &'static str,
    port: u16,
    /// Through geomesh (every request must be answered, by redis or by the filter).
    mesh: bool,
}

#[test]
fn a_half_closing_client_gets_every_reply_locally_and_across_sites() {
    let dir = TestDir::new("half-close").unwrap();
    let redis = Redis::start(&dir, "r1").unwrap();
    let grpc = free_port().unwrap();
    // dc2: the site of r1. dc1: r1 lives at dc2, reached through dc2's bridge over gRPC.
    let dc2 = Bridge::start_config(
        &dir,
        "bridge-dc2",
        &format!(
            "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:{grpc}\nclusters:\n  r1: {{ address: 127.0.0.1:{} }}\n",
            redis.port
        ),
    )
    .unwrap();
    let dc1 = Bridge::start_config(
        &dir,
        "bridge-dc1",
        &format!(
            "site: dc1\nlisten: 127.0.0.1:0\nclusters:\n  r1: {{ site: dc2 }}\nsites:\n  dc2: {{ grpc: \"http://127.0.0.1:{grpc}\" }}\n"
        ),
    )
    .unwrap();
    let (plain, local, remote) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let plugin = WasmPlugin::new(
        PLUGIN,
        "",
        wasm_path("geomesh_filter_redis").unwrap(),
        FILTER_CONFIG,
    )
    .vm_id("geomesh_half_close");
    let cfg = EnvoyConfig::new()
        .unwrap()
        .listener(tcp_listener(
            "plain",
            plain,
            vec![tcp_proxy_filter("plain", "redis")],
        ))
        .listener(tcp_listener(
            "local",
            local,
            vec![
                wasm_network_filter(&plugin),
                tcp_proxy_filter("local", "bridge_dc2"),
            ],
        ))
        .listener(tcp_listener(
            "remote",
            remote,
            vec![
                wasm_network_filter(&plugin),
                tcp_proxy_filter("remote", "bridge_dc1"),
            ],
        ))
        .cluster(static_cluster("redis", &[redis.port]))
        .cluster(static_cluster("bridge_dc2", &[dc2.port]))
        .cluster(static_cluster("bridge_dc1", &[dc1.port]));
    let envoy = Envoy::start(&dir, "envoy", &cfg).unwrap();
    for p in [plain, local, remote] {
        geomesh_integration::wait_tcp(p, Duration::from_secs(20)).unwrap();
    }
    let paths = [
        Path {
            name: "direct",
            port: redis.port,
            mesh: false,
        },
        Path {
            name: "envoy tcp_proxy",
            port: plain,
            mesh: false,
        },
        Path {
            name: "geomesh local",
            port: local,
            mesh: true,
        },
        Path {
            name: "geomesh remote (gRPC)",
            port: remote,
            mesh: true,
        },
    ];

    // 1. N pipelined commands, one write, then the FIN: every path must answer all N, in order,
    //    then close. Sizes: one command, a few, more than one read of redis-server (16 KiB), more
    //    than a filter read.
    println!("half-close figures (FIN to EOF):");
    for path in &paths {
        for n in [1usize, 10, 300, 3000] {
            let tag = format!("{}-{n}", path.name.replace(' ', "_"));
            let (req, want) = pipeline(&tag, n);
            let (got, took) = send_half_close_read(path.port, &req);
            let replies = parse_replies(&got).unwrap_or_else(|| {
                panic!(
                    "{}: {n} commands: not RESP: {:?}",
                    path.name,
                    String::from_utf8_lossy(&got)
                )
            });
            assert_eq!(
                replies.len(),
                n,
                "{}: {n} commands, {} replies: {replies:?}",
                path.name,
                replies.len()
            );
            for (i, (g, w)) in replies.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "{}: reply {i} of {n}", path.name);
            }
            println!(
                "  {:<22} {n:>5} pipelined commands: all answered, EOF after {:.2} ms",
                path.name,
                ms(took)
            );
        }
    }

    // 2. Many half-closing clients at once, on both geomesh paths.
    for path in paths.iter().filter(|p| p.mesh) {
        let t0 = Instant::now();
        let workers: Vec<_> = (0..24)
            .map(|k| {
                let port = path.port;
                let tag = format!("{}-conc{k}", path.name.replace(' ', "_"));
                std::thread::spawn(move || {
                    let (req, want) = pipeline(&tag, 60);
                    let (got, _) = send_half_close_read(port, &req);
                    (parse_replies(&got), want)
                })
            })
            .collect();
        for w in workers {
            let (got, want) = w.join().unwrap();
            assert_eq!(
                got.as_ref(),
                Some(&want),
                "{}: a concurrent half-closing client",
                path.name
            );
        }
        println!(
            "  {:<22} 24 clients x 60 commands at once: all answered in {:.1} ms",
            path.name,
            ms(t0.elapsed())
        );
    }

    // 3. Large replies. redis-server stops writing to a client once it reads its EOF: replies
    //    it has not written by then are dropped (networking.c: read 0 → freeClientAsync, and
    //    CLIENT_CLOSE_ASAP clients get no more writes). Measured on every path; through geomesh
    //    every request must still be answered, by redis-server or by the filter's error.
    let value = "x".repeat(10_000);
    let mut setup = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    setup.write_all(&cmd(&["SET", "big", &value])).unwrap();
    let mut ok = [0u8; 5];
    setup.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let n = 100;
    let mut req = Vec::new();
    for _ in 0..n {
        req.extend(cmd(&["GET", "big"]));
    }
    for path in &paths {
        let (got, took) = send_half_close_read(path.port, &req);
        let (prefix, complete) = parse_prefix(&got);
        let full = prefix
            .iter()
            .filter(|x| **x == Reply::Bulk(Some(value.clone().into_bytes())))
            .count();
        let errors = prefix
            .iter()
            .filter(|x| matches!(x, Reply::Error(_)))
            .count();
        let replies = complete.then_some(prefix);
        println!(
            "  {:<22} {n} x GET of 10 kB then FIN: {} bytes, {full} replies, {errors} errors, EOF after {:.2} ms{}",
            path.name,
            got.len(),
            ms(took),
            if replies.is_none() { " (cut inside a reply)" } else { "" }
        );
        if path.mesh {
            let r = replies.unwrap_or_else(|| panic!("{}: cut inside a reply", path.name));
            assert_eq!(r.len(), n, "{}: every request is answered", path.name);
            assert_eq!(full + errors, n, "{}: {r:?}", path.name);
            if let Some(Reply::Error(e)) = r.iter().find(|x| matches!(x, Reply::Error(_))) {
                assert!(
                    e.contains("connection closed by server"),
                    "{}: {e}",
                    path.name
                );
            }
        }
    }

    if let Some(line) = envoy.wasm_failure() {
        panic!("a Wasm VM failed: {line}");
    }
    drop((dc1, dc2));
}
