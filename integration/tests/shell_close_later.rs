//! Closes the filter shell decides in a bridge callback that also carries the client's last
//! bytes (filters/shell/README.md, "The session asks to close"), end to end: real Envoy + the
//! real Redis filter (V8) + a real `geomesh-bridge` + real `redis-server`s.
//!
//! Envoy closes a connection asked to close during a write callback before that callback's
//! bytes reach the socket, so such a close waits for a later event. It used to be a later
//! callback: a subscriber that sends nothing, whose shard dies, had none (its EOF came with the
//! next bytes it sent, or with a deadline's wake-up, here 30 s later). Now the root context's
//! timer closes it, armed only while closes wait. The clients below send nothing after their
//! last request and must get their last bytes, then EOF, within [`BOUND`].
//!
//! Also measured: `QUIT` after a local reply (bytes, then EOF) through the same path.
//!
//! Figures are printed; run with `--nocapture`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use geomesh_integration::redis_mesh::{MeshOptions, RedisMesh};

/// upstream_timeout_ms is long on purpose: the subscription's own deadline wake-up (the only
/// other event a silent subscriber gets) must not be what closes it.
const TABLE: &str = "\
workload_type: redis
default_cluster: redis1
upstream_timeout_ms: 30000
routing_table:
  user1: redis2
";

/// The close must come this soon after the shard's death reaches the bridge.
const BOUND: Duration = Duration::from_secs(1);

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

/// A RESP2 array of bulk strings (a pub/sub message).
fn bulk_array(items: &[&str]) -> Vec<u8> {
    cmd(items)
}

fn client(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `want.len()` bytes and checks them.
fn expect(s: &mut TcpStream, want: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

/// Reads until EOF (or a reset) for at most `within`; returns the bytes and when the end came
/// (`None`: still open).
fn read_until_eof(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, None);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, Some(Instant::now())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, None)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, Some(Instant::now())),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn subscribe(port: u16, channel: &str) -> TcpStream {
    let mut s = client(port);
    s.write_all(&cmd(&["SUBSCRIBE", channel])).unwrap();
    let want = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
        channel.len()
    )
    .into_bytes();
    expect(&mut s, &want);
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} min {:.2} median {:.2} p90 {:.2} max {:.2} ms",
        v.len(),
        p(0.0),
        p(0.5),
        p(0.9),
        p(1.0)
    )
}

/// SIGCONTs the bridge whatever happens, so that the mesh can stop.
struct Cont<'a>(&'a geomesh_integration::redis_mesh::Bridge);

impl Drop for Cont<'_> {
    fn drop(&mut self) {
        let _ = self.0.proc.signal(libc::SIGCONT);
    }
}

#[test]
fn silent_subscribers_get_their_last_bytes_then_eof_when_their_shard_dies() {
    let mut mesh = RedisMesh::start_with(
        "shell-close-later",
        MeshOptions::new(&["redis1", "redis2"], TABLE),
    )
    .unwrap();
    let channel = "user1:news"; // routed to redis2 only

    // 1. The last message and the shard's end reach the filter together: the bridge is
    //    stopped while redis2 publishes, then dies, so it reads both at once when it resumes
    //    (DATA then CLOSED, written back to back; Envoy usually reads them in one callback).
    let n = 20;
    let mut subs: Vec<TcpStream> = (0..n).map(|_| subscribe(mesh.port, channel)).collect();
    let mut direct = mesh.direct("redis2").unwrap();
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg("first")
        .query(&mut direct)
        .unwrap();
    assert_eq!(receivers, n as i64);
    let first = bulk_array(&["message", channel, "first"]);
    for s in &mut subs {
        expect(s, &first);
    }
    mesh.bridge.proc.signal(libc::SIGSTOP).unwrap();
    let resumed = {
        let _cont = Cont(&mesh.bridge);
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg("last")
            .query(&mut direct)
            .unwrap();
        assert_eq!(receivers, n as i64);
        // redis-server writes the publisher's reply before the subscribers' copies (LIFO list
        // of pending writes): make sure every copy left redis2 (no output buffered) before it
        // dies, or the message is lost there, not in the mesh.
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut direct).unwrap();
        let subscribers: Vec<&str> = list.lines().filter(|l| l.contains(" sub=1 ")).collect();
        assert_eq!(subscribers.len(), n, "{list}");
        assert!(
            subscribers
                .iter()
                .all(|l| l.contains(" obl=0 ") && l.contains(" oll=0 ")),
            "output still buffered in redis2: {list}"
        );
        drop(direct);
        mesh.shard("redis2").proc.signal(libc::SIGKILL).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        Instant::now()
        // _cont: SIGCONT
    };
    let last = bulk_array(&["message", channel, "last"]);
    let mut took = Vec::new();
    for (i, s) in subs.iter_mut().enumerate() {
        let (got, eof) = read_until_eof(s, BOUND + Duration::from_secs(4));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&last),
            "subscriber {i}: the last message, nothing else"
        );
        let eof = eof
            .unwrap_or_else(|| panic!("subscriber {i}: no EOF within 5 s of the bridge resuming"));
        took.push(eof - resumed);
    }
    let worst = *took.iter().max().unwrap();
    eprintln!(
        "message + shard death: last message then EOF, {}",
        summary(took.iter().map(|d| ms(*d)).collect())
    );
    assert!(worst < BOUND, "EOF {worst:?} after the bridge resumed");

    // 2. Deterministic: the session answers a request in flight on the dying shard and closes
    //    in one call (an error reply and the close in the same bridge callback).
    mesh.restart_shard("redis2").unwrap();
    let mut took = Vec::new();
    for round in 0..5 {
        let mut s = subscribe(mesh.port, channel);
        mesh.shard_mut("redis2").proc.signal(libc::SIGSTOP).unwrap();
        s.write_all(&cmd(&["SUBSCRIBE", "user1:other"])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        mesh.shard_mut("redis2").proc.signal(libc::SIGKILL).unwrap();
        let killed = Instant::now();
        let (got, eof) = read_until_eof(&mut s, BOUND + Duration::from_secs(4));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("-ERR geomesh: cluster redis2: ")
                && text.ends_with("\r\n")
                && text.matches("\r\n").count() == 1,
            "round {round}: one error for the SUBSCRIBE in flight, got {text:?}"
        );
        let eof = eof.unwrap_or_else(|| {
            panic!("round {round}: no EOF within 5 s of the kill (got {text:?})")
        });
        took.push(eof - killed);
        mesh.restart_shard("redis2").unwrap();
    }
    let worst = *took.iter().max().unwrap();
    eprintln!(
        "request in flight + shard death: error then EOF, {}",
        summary(took.iter().map(|d| ms(*d)).collect())
    );
    assert!(worst < BOUND, "EOF {worst:?} after the kill");

    // 3. QUIT after a local reply: PONG and +OK go out with the flush, the close follows from
    //    the timer. (PING alone first so that the connection to the bridge is up.)
    let mut took = Vec::new();
    for _ in 0..50 {
        let mut s = client(mesh.port);
        s.write_all(&cmd(&["PING"])).unwrap();
        expect(&mut s, b"+PONG\r\n");
        let sent = Instant::now();
        let mut b = cmd(&["PING"]);
        b.extend(cmd(&["QUIT"]));
        s.write_all(&b).unwrap();
        let (got, eof) = read_until_eof(&mut s, Duration::from_secs(5));
        assert_eq!(got, b"+PONG\r\n+OK\r\n");
        let eof = eof.expect("EOF after QUIT");
        took.push(eof - sent);
    }
    eprintln!(
        "PING+QUIT: replies then EOF, {}",
        summary(took.iter().map(|d| ms(*d)).collect())
    );
    assert!(took.iter().all(|d| *d < BOUND));

    // Everything still works through the same VM (a panic in on_tick would have killed it).
    let mut c = mesh.client().unwrap();
    let _: () = redis::cmd("SET")
        .arg("user1:k")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let v: String = redis::cmd("GET").arg("user1:k").query(&mut c).unwrap();
    assert_eq!(v, "v");
}
