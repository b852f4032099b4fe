//! Real backend servers on free loopback ports, and the workspace's own daemons.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::paths::{json_server_bin, native_bin, system_bin, tansu_bin};
use crate::ports::free_port;
use crate::process::{Proc, TestDir};

/// A `redis-server` without persistence (`--save '' --appendonly no`), working dir in the test
/// dir.
pub struct Redis {
    pub port: u16,
    pub proc: Proc,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start(dir: &TestDir, name: &str) -> Result<Redis> {
        Self::start_with_args(dir, name, &[])
    }

    /// As [`Redis::start`], with extra `redis-server` arguments (e.g. `["--maxmemory", "10mb"]`).
    pub fn start_with_args(dir: &TestDir, name: &str, extra: &[&str]) -> Result<Redis> {
        let port = free_port()?;
        let wd = dir.join(name);
        std::fs::create_dir_all(&wd)?;
        let mut cmd = Command::new(system_bin("redis-server")?);
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&wd)
            .args(extra);
        let mut proc = Proc::spawn(dir, name, cmd)?;
        proc.wait_until(
            Duration::from_secs(10),
            &format!("{name} PONG on {port}"),
            || Ok(resp_ping(port).is_ok()),
        )?;
        Ok(Redis { port, proc })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Sends an inline PING and expects `+PONG`.
fn resp_ping(port: u16) -> Result<()> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf)?;
    anyhow::ensure!(
        &buf == b"+PONG\r\n",
        "unexpected reply {:?}",
        String::from_utf8_lossy(&buf)
    );
    Ok(())
}

/// tansu 0.6 (a Kafka-compatible broker, Apache-2.0) on a free port, storage in memory
/// (`--storage-engine memory://tansu/`): a Kafka cluster of one broker. It advertises
/// `127.0.0.1:<port>` and answers node id 111 in Metadata (every tansu broker does: two of them
/// side by side both call themselves node 111). A consumer-group join can take ~23 s against it:
/// give group tests 30 s or more.
pub struct Tansu {
    pub port: u16,
    pub proc: Proc,
}

impl Tansu {
    /// The node id every tansu broker announces in Metadata and FindCoordinator.
    pub const NODE_ID: i32 = 111;

    /// Starts a broker on a free port and waits until it answers an ApiVersions request.
    pub fn start(dir: &TestDir, name: &str) -> Result<Tansu> {
        Self::start_advertised(dir, name, None)
    }

    /// As [`Tansu::start`], advertising `127.0.0.1:<advertised>` instead of its own port (a
    /// broker behind a proxy that clients must keep using, e.g. Envoy's `tcp_proxy`).
    pub fn start_advertised(dir: &TestDir, name: &str, advertised: Option<u16>) -> Result<Tansu> {
        Self::start_with(dir, name, advertised, &[])
    }

    /// As [`Tansu::start_advertised`], with more command-line arguments (`--authentication`:
    /// clients must authenticate with SASL first).
    pub fn start_with(dir: &TestDir, name: &str, advertised: Option<u16>, args: &[&str]) -> Result<Tansu> {
        let port = free_port()?;
        let mut cmd = Command::new(tansu_bin()?);
        let url = format!("tcp://127.0.0.1:{port}");
        let adv = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        cmd.arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &adv])
            .args(["--storage-engine", "memory://tansu/"])
            .args(args)
            // The same settings also come from the environment: none of a user's may leak in.
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        let mut proc = Proc::spawn(dir, name, cmd)?;
        proc.wait_until(
            Duration::from_secs(20),
            &format!("{name} answering ApiVersions on {port}"),
            || Ok(kafka_api_versions_ping(port).is_ok()),
        )?;
        Ok(Tansu { port, proc })
    }

    /// `127.0.0.1:<port>`, a Kafka client's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Sends an ApiVersions v0 request (the one every Kafka broker answers) and expects its
/// correlation id back with error code 0.
fn kafka_api_versions_ping(port: u16) -> Result<()> {
    const CORRELATION_ID: i32 = 0x6765_6f6d; // "geom"
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    // size, api key 18 (ApiVersions), version 0, correlation id, client id null.
    let mut req = Vec::with_capacity(14);
    req.extend_from_slice(&10i32.to_be_bytes());
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes());
    s.write_all(&req)?;
    let mut head = [0u8; 10];
    s.read_exact(&mut head)?;
    let [_, _, _, _, c0, c1, c2, c3, e0, e1] = head;
    anyhow::ensure!(
        i32::from_be_bytes([c0, c1, c2, c3]) == CORRELATION_ID,
        "ApiVersions answered with another correlation id"
    );
    anyhow::ensure!(
        i16::from_be_bytes([e0, e1]) == 0,
        "ApiVersions error code {}",
        i16::from_be_bytes([e0, e1])
    );
    Ok(())
}

/// json-server 0.17 (a real REST app with server-generated ids) on a free port, serving a
/// copy of `db_json` (its contents, not a path) from the test dir.
pub struct JsonServer {
    pub port: u16,
    pub proc: Proc,
}

impl JsonServer {
    pub fn start(dir: &TestDir, name: &str, db_json: &str) -> Result<JsonServer> {
        let port = free_port()?;
        let db = dir.write(format!("{name}.db.json"), db_json)?;
        let mut cmd = Command::new(json_server_bin()?);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--quiet",
        ])
        .arg(&db)
        .current_dir(dir.path());
        let mut proc = Proc::spawn(dir, name, cmd)?;
        proc.wait_tcp(port, Duration::from_secs(20))
            .with_context(|| format!("json-server {}", Path::new(&db).display()))?;
        Ok(JsonServer { port, proc })
    }
}

/// Starts a native workspace binary (`geomesh-bridge`, `geomesh-agent`, ...; see
/// [`crate::paths::native_bin`]) with `args`. The caller waits for readiness, e.g.
/// `proc.wait_tcp(port, timeout)`.
pub fn spawn_native(dir: &TestDir, bin: &str, name: &str, args: &[String]) -> Result<Proc> {
    let mut cmd = Command::new(native_bin(bin)?);
    cmd.args(args);
    Proc::spawn(dir, name, cmd)
}
