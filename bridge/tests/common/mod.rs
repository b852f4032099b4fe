//! Test support: real redis-server and geomesh-bridge processes on free loopback ports (killed
//! on drop, panics included), and a GMB/1 client that plays the filter (over geomesh-frame).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use geomesh_frame::{
    encode_close, encode_data, encode_hello, encode_open, encode_open_shared, encode_unshare, encode_wake, split_frame,
    CloseCode, Closed, Kind,
};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("geomesh-bridge-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid of a child we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A real redis-server.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    // DEBUG SLEEP: a reply that comes late.
                    "--enable-debug-command",
                    "local",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server)");
            let mut r = Redis {
                port,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if r.try_cmd(&["PING"]).is_some_and(|s| s == b"+PONG\r\n") {
                    return r;
                }
                if r.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r.kill();
        }
        panic!("redis-server did not start");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn try_cmd(&self, args: &[&str]) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(&resp(args)).ok()?;
        let mut buf = vec![0u8; 4096];
        let n = loop {
            match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.ok()?,
            }
        };
        buf.truncate(n);
        Some(buf)
    }

    /// One command straight to this server (not through the bridge).
    pub fn cmd(&self, args: &[&str]) -> Vec<u8> {
        self.try_cmd(args).expect("direct redis command")
    }

    pub fn stop(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    pub fn cont(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// RESP encoding of a command.
pub fn resp(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    v
}

/// The geomesh-bridge binary as a real process.
pub struct BridgeProc {
    child: Option<Child>,
    pub listen: String,
    pub grpc: Option<String>,
    pub admin: Option<String>,
    pub config_path: PathBuf,
    log: PathBuf,
    _dir: Option<TempDir>,
}

impl BridgeProc {
    /// Starts a bridge with `config` (YAML). Use port 0 in it; the real ports are read from the
    /// bridge's ready line.
    pub fn start(config: &str) -> BridgeProc {
        let dir = TempDir::new("bridge");
        let mut b = Self::start_in(&dir.0, config);
        b._dir = Some(dir);
        b
    }

    pub fn start_in(dir: &Path, config: &str) -> BridgeProc {
        Self::start_in_with_env(dir, config, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables for the process.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> BridgeProc {
        let dir = TempDir::new("bridge");
        let mut b = Self::start_in_with_env(&dir.0, config, env);
        b._dir = Some(dir);
        b
    }

    pub fn start_in_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> BridgeProc {
        let config_path = dir.join("bridge.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("bridge.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_geomesh-bridge"))
            .arg("--config")
            .arg(&config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "debug,h2=info,tower=info,hyper=info".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let mut b = BridgeProc {
            child: Some(child),
            listen: String::new(),
            grpc: None,
            admin: None,
            config_path,
            log,
            _dir: None,
        };
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => panic!("bridge did not start; log:\n{}", b.log_text()),
        };
        assert!(
            line.starts_with("geomesh-bridge ready "),
            "unexpected first line {line:?}"
        );
        for word in line.split_whitespace() {
            if let Some((k, v)) = word.split_once('=') {
                let v = (v != "-").then(|| v.to_owned());
                match k {
                    "listen" => b.listen = v.unwrap_or_default(),
                    "grpc" => b.grpc = v,
                    "admin" => b.admin = v,
                    _ => {}
                }
            }
        }
        b
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn sighup(&self) {
        signal(self.pid(), libc::SIGHUP);
    }

    pub fn sigterm(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// Waits for the process to exit: its status, or `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A connected filter-side client that has sent HELLO.
    pub fn client(&self) -> Gmb {
        let mut g = Gmb::connect(&self.listen);
        g.hello("test");
        g
    }

    /// GET on the admin endpoint: (status line, body).
    pub fn admin_get(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(self.admin.as_ref().expect("admin_listen")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- bridge log ({}) ----\n{}", self.log.display(), self.log_text());
        }
    }
}

/// A frame received from the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub chan: u16,
    pub payload: Vec<u8>,
}

/// The filter side of GMB/1, over a blocking socket.
pub enum Sock {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Sock {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.write_all(b),
            Sock::Unix(s) => s.write_all(b),
        }
    }
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b),
            Sock::Unix(s) => s.read(b),
        }
    }
    /// Half-closes: FIN to the bridge, the read side stays open.
    pub fn shutdown_write(&self) {
        match self {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
        }
    }
    fn set_read_timeout(&self, d: Duration) {
        match self {
            Sock::Tcp(s) => s.set_read_timeout(Some(d)).unwrap(),
            Sock::Unix(s) => s.set_read_timeout(Some(d)).unwrap(),
        }
    }
}

pub struct Gmb {
    pub sock: Sock,
    buf: Vec<u8>,
    pending: VecDeque<Frame>,
    pub eof: bool,
    pub eof_reason: String,
}

impl Gmb {
    pub fn connect(addr: &str) -> Gmb {
        let sock = match addr.strip_prefix("unix:") {
            Some(p) => Sock::Unix(std::os::unix::net::UnixStream::connect(p).unwrap()),
            None => {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                Sock::Tcp(s)
            }
        };
        Gmb {
            sock,
            buf: Vec::new(),
            pending: VecDeque::new(),
            eof: false,
            eof_reason: String::new(),
        }
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    pub fn hello(&mut self, label: &str) {
        let mut b = Vec::new();
        encode_hello(&mut b, label);
        self.raw(&b);
    }

    pub fn open(&mut self, chan: u16, target: &str, reply_timeout_ms: u32, connect_timeout_ms: u32) {
        let mut b = Vec::new();
        encode_open(&mut b, chan, reply_timeout_ms, connect_timeout_ms, target);
        self.raw(&b);
    }

    /// `OPEN_SHARED` with RESP framing.
    pub fn open_shared(&mut self, chan: u16, target: &str, reply_timeout_ms: u32) {
        let mut b = Vec::new();
        encode_open_shared(
            &mut b,
            chan,
            geomesh_core::Framing::Resp,
            reply_timeout_ms,
            0,
            target,
        );
        self.raw(&b);
    }

    pub fn unshare(&mut self, chan: u16) {
        let mut b = Vec::new();
        encode_unshare(&mut b, chan);
        self.raw(&b);
    }

    pub fn send(&mut self, chan: u16, data: &[u8]) {
        let mut b = Vec::new();
        encode_data(&mut b, Kind::Data, chan, data);
        self.raw(&b);
    }

    pub fn cmd(&mut self, chan: u16, args: &[&str]) {
        self.send(chan, &resp(args));
    }

    pub fn close(&mut self, chan: u16) {
        let mut b = Vec::new();
        encode_close(&mut b, chan);
        self.raw(&b);
    }

    pub fn wake(&mut self, token: u64, delay_ms: u32) {
        let mut b = Vec::new();
        encode_wake(&mut b, token, delay_ms);
        self.raw(&b);
    }

    /// The next frame from the bridge, or None at EOF or when `timeout` passes.
    pub fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        self.read_frame(Instant::now() + timeout)
    }

    fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some((f, n)) = split_frame(&self.buf).expect("the bridge sends well-formed frames") {
                let frame = Frame {
                    kind: f.kind,
                    chan: f.chan,
                    payload: f.payload.to_vec(),
                };
                self.buf.drain(..n);
                return Some(frame);
            }
            let now = Instant::now();
            if now >= deadline || self.eof {
                return None;
            }
            self.sock
                .set_read_timeout((deadline - now).max(Duration::from_millis(1)));
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    self.eof_reason = "EOF".into();
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    self.eof = true;
                    self.eof_reason = format!("read error: {e}");
                }
            }
        }
    }

    /// Waits for a frame matching `want`, keeping the others for later calls.
    pub fn wait_for(&mut self, timeout: Duration, mut want: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        if let Some(i) = self.pending.iter().position(&mut want) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.read_frame(deadline)?;
            if want(&f) {
                return Some(f);
            }
            self.pending.push_back(f);
        }
    }

    /// Collects channel `chan`'s data until it ends with `expected_end` (at least `min_len`
    /// bytes). Panics on CLOSED for that channel or on timeout.
    pub fn read_until(&mut self, chan: u16, expected_end: &[u8], min_len: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = self
                .wait_for(left, |f| {
                    f.chan == chan && matches!(f.kind, Kind::BridgeData | Kind::Closed)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "channel {chan}: no {:?} within {timeout:?}; got {:?}",
                        String::from_utf8_lossy(expected_end),
                        String::from_utf8_lossy(&got)
                    )
                });
            if f.kind == Kind::Closed {
                let c = Closed::parse(&f.payload).unwrap();
                panic!("channel {chan} closed: {:?} {}", c.code, c.message);
            }
            got.extend_from_slice(&f.payload);
            if got.len() >= min_len && got.ends_with(expected_end) {
                return got;
            }
        }
    }

    /// A request/reply on one channel: sends `args`, returns the reply (read until `end`).
    pub fn roundtrip(&mut self, chan: u16, args: &[&str], end: &[u8]) -> Vec<u8> {
        self.cmd(chan, args);
        self.read_until(chan, end, 0, Duration::from_secs(5))
    }

    /// Waits for CLOSED on `chan`: (code, message, time waited).
    pub fn expect_closed(&mut self, chan: u16, timeout: Duration) -> (CloseCode, String, Duration) {
        let t = Instant::now();
        let f = self
            .wait_for(timeout, |f| f.chan == chan && f.kind == Kind::Closed)
            .unwrap_or_else(|| panic!("no CLOSED for channel {chan} within {timeout:?} ({})", self.eof_reason));
        let c = Closed::parse(&f.payload).unwrap();
        (c.code, c.message.to_owned(), t.elapsed())
    }

    /// True once the bridge has closed the connection (reads until EOF or `timeout`).
    pub fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof && Instant::now() < deadline {
            if let Some(f) = self.read_frame(deadline) {
                self.pending.push_back(f);
            }
        }
        self.eof
    }
}

/// A TCP listener that accepts nothing and whose queue is full: connects to it hang (until
/// the connect timeout), like a blackholed address.
pub struct Blackhole {
    _listener: TcpListener,
    _filler: TcpStream,
    pub addr: SocketAddr,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) again on our own socket, to shrink its backlog to 0 (queue of 1).
        let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
        assert_eq!(rc, 0);
        let addr = l.local_addr().unwrap();
        let filler = TcpStream::connect(addr).unwrap();
        // Check that it really holds connections back.
        let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(probe.is_err(), "the blackhole accepted a second connection");
        Blackhole {
            _listener: l,
            _filler: filler,
            addr,
        }
    }
}

/// Minimal config with the given clusters block lines (`name: { address: ... }`).
pub fn config(site: &str, extra: &str) -> String {
    format!("site: {site}\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{extra}")
}
