//! Real backend servers on free loopback ports, and the workspace's own daemons.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::paths::{json_server_bin, native_bin, system_bin};
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
