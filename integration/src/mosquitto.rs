//! Real MQTT brokers and clients: `mosquitto` 2.0 (Debian) on free loopback ports, the
//! `mosquitto_pub` / `mosquitto_sub` command-line clients, and `paho-mqtt` (PyPI, installed by
//! `scripts/bootstrap.sh` into `.cache/paho`) for scripted library clients.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::paths::{repo_root, system_bin};
use crate::ports::free_port;
use crate::process::{Proc, TestDir};

/// MQTT protocol versions as `mosquitto_pub -V` names them.
pub const V311: &str = "mqttv311";
pub const V5: &str = "mqttv5";

/// A `mosquitto` broker: anonymous access, no persistence, everything logged to a file in the
/// test dir (mosquitto does not flush a redirected stdout), listening on 127.0.0.1 only.
/// `user root` keeps a broker started as root from switching to the `mosquitto` user (which
/// could not write the test dir); it changes nothing for a broker started by another user.
pub struct Mosquitto {
    pub port: u16,
    pub proc: Proc,
    log: PathBuf,
}

impl Mosquitto {
    /// Starts a broker on a free port and waits until it answers an MQTT CONNECT.
    pub fn start(dir: &TestDir, name: &str) -> Result<Mosquitto> {
        Self::start_with_config(dir, name, "")
    }

    /// As [`Mosquitto::start`], with more configuration lines (e.g. `max_inflight_messages 5`).
    pub fn start_with_config(dir: &TestDir, name: &str, extra: &str) -> Result<Mosquitto> {
        let port = free_port()?;
        let log = dir.join(format!("{name}.mosquitto.log"));
        let conf = dir.write(
            format!("{name}.conf"),
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 persistence false\n\
                 user root\n\
                 log_dest file {}\n\
                 log_type all\n\
                 connection_messages true\n\
                 {extra}\n",
                log.display()
            ),
        )?;
        let mut cmd = Command::new(system_bin("mosquitto")?);
        cmd.arg("-c").arg(&conf);
        let mut proc = Proc::spawn(dir, name, cmd)?;
        proc.wait_until(Duration::from_secs(10), &format!("{name} CONNACK on {port}"), || {
            Ok(mqtt_ping(port).is_ok())
        })?;
        Ok(Mosquitto { port, proc, log })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits until the broker's log holds `n` occurrences of `needle` (e.g. a client's
    /// subscription: `"Received SUBSCRIBE from sub-1"`).
    pub fn wait_log(&self, needle: &str, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                bail!("broker on {} never logged {n}x {needle:?}; log tail:\n{}", self.port, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An MQTT 3.1.1 CONNECT (clean session, keep alive 10 s, client id "probe") answered by an
/// accepting CONNACK.
fn mqtt_ping(port: u16) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(&[0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 5, b'p', b'r', b'o', b'b', b'e'])?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf)?;
    anyhow::ensure!(buf == [0x20, 2, 0, 0], "unexpected CONNACK {buf:02x?}");
    s.write_all(&[0xe0, 0])?;
    Ok(())
}

/// A fresh process name (each gets its own log files in the test dir).
fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `mosquitto_pub` to completion: one message `payload` on `topic` at `port`, protocol
/// `version` ([`V311`] or [`V5`]), with `extra` arguments (`-q 1`, `-r`, `-i id`, ...).
pub fn mosquitto_pub(dir: &TestDir, port: u16, version: &str, topic: &str, payload: &str, extra: &[&str]) -> Result<()> {
    let mut cmd = Command::new(system_bin("mosquitto_pub")?);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version, "-t", topic, "-m", payload]).args(extra);
    let mut proc = Proc::spawn(dir, &unique(&format!("pub-{port}")), cmd)?;
    let status = proc.wait_exit(Duration::from_secs(15))?;
    if !status.success() {
        bail!("mosquitto_pub -t {topic} on {port} failed ({status}):\n{}", proc.log_tail(20));
    }
    Ok(())
}

/// A running `mosquitto_sub -v` (one line per message: topic, space, payload).
pub struct MosquittoSub {
    proc: Proc,
    /// The client identifier it connected with (`-i`), to find its SUBSCRIBE in broker logs.
    pub client_id: String,
}

impl MosquittoSub {
    /// Subscribes to `filter` at `port` and exits after `count` messages or `timeout_s`
    /// seconds without one (`-C`, `-W`); `extra` as for [`mosquitto_pub`].
    pub fn start(
        dir: &TestDir,
        port: u16,
        version: &str,
        filter: &str,
        count: usize,
        timeout_s: u32,
        extra: &[&str],
    ) -> Result<MosquittoSub> {
        let client_id = unique(&format!("sub-{port}"));
        let mut cmd = Command::new(system_bin("mosquitto_sub")?);
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version, "-t", filter, "-v"])
            .args(["-i", &client_id, "-C", &count.to_string(), "-W", &timeout_s.to_string()])
            .args(extra);
        let proc = Proc::spawn(dir, &client_id, cmd)?;
        Ok(MosquittoSub { proc, client_id })
    }

    /// Waits for it to exit and returns the (topic, payload) pairs it printed; a timeout
    /// (`-W`) ends it too, with what it had.
    pub fn messages(mut self, timeout: Duration) -> Result<Vec<(String, String)>> {
        self.proc.wait_exit(timeout)?;
        let (out, _) = self.proc.logs();
        Ok(out
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((t, p)) => (t.to_owned(), p.to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect())
    }
}

/// Where `scripts/bootstrap.sh` puts paho-mqtt (`pip install --target`).
pub fn paho_path() -> Result<PathBuf> {
    let p = repo_root().join(".cache/paho");
    if !p.join("paho/mqtt/client.py").is_file() {
        bail!("paho-mqtt not installed in {}: run scripts/bootstrap.sh", p.display());
    }
    Ok(p)
}

/// Runs a Python `script` with paho-mqtt importable, arguments `args`; returns its stdout.
pub fn run_paho(dir: &TestDir, name: &str, script: &str, args: &[String]) -> Result<String> {
    let file = dir.write(format!("{name}.py"), script)?;
    let mut cmd = Command::new(system_bin("python3")?);
    cmd.arg(&file).args(args).env("PYTHONPATH", paho_path()?);
    let mut proc = Proc::spawn(dir, &unique(name), cmd)?;
    let status = proc.wait_exit(Duration::from_secs(30)).with_context(|| format!("{name}.py"))?;
    let (out, err) = proc.logs();
    if !status.success() {
        bail!("{name}.py failed ({status}):\n{out}\n{err}");
    }
    Ok(out)
}
