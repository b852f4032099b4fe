//! Per-test directories and child processes that clean up after themselves.
//!
//! * [`TestDir`]: `<tmp>/geomesh-it/<name>-<pid>-<n>`; configs and logs go there. Removed when
//!   the last handle drops, kept (and its path printed) when the test panicked, or always when
//!   `GEOMESH_KEEP_TEST_DIRS=1`. `<tmp>` is `GEOMESH_TEST_TMP` or the system temp dir.
//! * [`Proc`]: a child in its own process group with stdout/stderr captured to
//!   `<dir>/<name>.stdout|.stderr`. Dropping it sends SIGTERM to the group, then SIGKILL after a
//!   grace period, also while a test unwinds from a panic; during a panic it first prints the tail
//!   of both logs to stderr (the test harness shows it with the failure).
//!
//! A test killed from outside (SIGKILL, timeout) cannot run destructors: its children stay.
//! Tests are expected to fail by panicking (`unwrap`, `assert!`): a test that returns `Err` does
//! not count as panicking, so it neither keeps its directory nor prints logs.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::paths::repo_root;

/// Lines of each log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 40;

struct TestDirInner {
    path: PathBuf,
    keep: AtomicBool,
}

impl Drop for TestDirInner {
    fn drop(&mut self) {
        let keep_env = std::env::var_os("GEOMESH_KEEP_TEST_DIRS").is_some_and(|v| v != "0");
        if std::thread::panicking() || keep_env || self.keep.load(Ordering::Relaxed) {
            eprintln!("[harness] test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A per-test scratch directory (cheap to clone; removed when the last clone drops).
#[derive(Clone)]
pub struct TestDir(Arc<TestDirInner>);

impl TestDir {
    /// Creates `<tmp>/geomesh-it/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> Result<TestDir> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("GEOMESH_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("geomesh-it");
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = base.join(format!(
            "{safe}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(TestDir(Arc::new(TestDirInner {
            path,
            keep: AtomicBool::new(false),
        })))
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// `<dir>/<name>` (not created).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.path.join(name)
    }

    /// Writes `<dir>/<name>` and returns its path.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let p = self.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, contents).with_context(|| format!("write {}", p.display()))?;
        Ok(p)
    }

    /// Keep the directory after the test even if it passes.
    pub fn keep(&self) {
        self.0.keep.store(true, Ordering::Relaxed);
    }
}

/// A child process in its own process group, logs captured in the test dir.
pub struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    grace: Duration,
    exited: Option<ExitStatus>,
    _dir: TestDir,
}

impl Proc {
    /// Spawns `cmd` as `name` (used for the log file names and messages). stdin is null; the
    /// working directory is the repository root unless `cmd` sets one, so relative paths such
    /// as `target/wasm/x.wasm` resolve as in `examples/`.
    pub fn spawn(dir: &TestDir, name: &str, mut cmd: Command) -> Result<Proc> {
        use std::os::unix::process::CommandExt;
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).with_context(|| format!("create {}", stdout.display()))?)
            .stderr(File::create(&stderr).with_context(|| format!("create {}", stderr.display()))?)
            .process_group(0);
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(repo_root());
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name} ({program})"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            grace: Duration::from_secs(5),
            exited: None,
            _dir: dir.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Time between SIGTERM and SIGKILL on stop (default 5 s).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// `Some(status)` once the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some(s);
            }
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// Error (with the log tail) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_exit_status() {
            None => Ok(()),
            Some(s) => Err(anyhow!(
                "{} exited early with {s}\n{}",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            )),
        }
    }

    /// Waits until 127.0.0.1:`port` accepts a TCP connection, failing early if the process dies.
    pub fn wait_tcp(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let name = self.name.clone();
        self.wait_until(timeout, &format!("{name} listening on {addr}"), || {
            Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        })
    }

    /// Polls `ready` every 50 ms until it returns `Ok(true)`, the process exits (error with log
    /// tail) or `timeout` passes (error with log tail).
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()
                .with_context(|| format!("while waiting for {what}"))?;
            if ready().unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself (a client, a one-shot command); error with the
    /// log tail on timeout (the process is then stopped on drop).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit_status() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}\n{}",
                    self.name,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the whole process group (e.g. `libc::SIGSTOP` to freeze a site,
    /// `libc::SIGCONT` to resume it).
    pub fn signal(&self, sig: i32) -> Result<()> {
        if self.exited.is_some() {
            bail!("{} has already exited", self.name);
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created at spawn
        // (process_group(0) makes the child its own group leader); no memory is involved.
        let rc = unsafe { libc::kill(-pgid, sig) };
        if rc != 0 {
            bail!(
                "kill(-{pgid}, {sig}) for {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// SIGTERM to the group, SIGKILL after the grace period; returns the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.try_exit_status() {
            // The leader is gone; make sure nothing else of its group lingers.
            let _ = self.signal_group_unchecked(libc::SIGKILL);
            return Ok(s);
        }
        let _ = self.signal_group_unchecked(libc::SIGCONT);
        let _ = self.signal_group_unchecked(libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_exit_status() {
                let _ = self.signal_group_unchecked(libc::SIGKILL);
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.signal_group_unchecked(libc::SIGKILL);
        let s = self.child.wait().context("wait after SIGKILL")?;
        self.exited = Some(s);
        Ok(s)
    }

    fn signal_group_unchecked(&self, sig: i32) -> std::io::Result<()> {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: see `signal`. A group that no longer exists gives ESRCH, which is ignored.
        let rc = unsafe { libc::kill(-pgid, sig) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stdout and stderr so far.
    pub fn logs(&self) -> (String, String) {
        (read_lossy(&self.stdout), read_lossy(&self.stderr))
    }

    /// The last `n` lines of stdout and of stderr, labelled.
    pub fn log_tail(&self, n: usize) -> String {
        let (out, err) = self.logs();
        let mut s = String::new();
        for (label, text, path) in [("stdout", out, &self.stdout), ("stderr", err, &self.stderr)] {
            if text.trim().is_empty() {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            s.push_str(&format!(
                "----- {} {label} (last {} of {} lines, {}) -----\n",
                self.name,
                lines.len() - from,
                lines.len(),
                path.display()
            ));
            for l in &lines[from..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        if s.is_empty() {
            s = format!("----- {}: no output -----\n", self.name);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprint!("{}", self.log_tail(LOG_TAIL_LINES));
        }
        let _ = self.stop();
    }
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits until 127.0.0.1:`port` accepts a TCP connection (for servers not started as a [`Proc`]).
pub fn wait_tcp(port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 GET to 127.0.0.1:`port` (`Connection: close`, chunked bodies decoded):
/// returns (status, body). Meant for Envoy's admin API and readiness probes, not for the
/// traffic under test (use a real client there).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// A minimal HTTP/1.1 request, see [`http_get`]. `body` is sent with `Content-Type:
/// application/json` when given.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("read response of {method} {path} from {addr}"))?;
    parse_http_response(&raw).with_context(|| format!("{method} {path} on {addr}"))
}

fn parse_http_response(raw: &[u8]) -> Result<(u16, String)> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| anyhow!("bad chunk size {size_str:?}: {e}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Polls `cond` every 50 ms until it returns `Ok(true)` or `timeout` passes.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let (s, b) =
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nLIVE").unwrap();
        assert_eq!((s, b.as_str()), (200, "LIVE"));
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nPRE_\r\n8;x=y\r\nINITIALI\r\n4\r\nZING\r\n0\r\n\r\n";
        let (s, b) = parse_http_response(raw).unwrap();
        assert_eq!((s, b.as_str()), (503, "PRE_INITIALIZING"));
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_http_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        .is_err());
    }

    #[test]
    fn proc_captures_output_and_is_killed_with_its_group() {
        let dir = TestDir::new("proc-selftest").unwrap();
        let mut cmd = Command::new("sh");
        // The shell starts a grandchild; stopping must take the whole group.
        cmd.args([
            "-c",
            "echo hello; echo oops >&2; sleep 300 & echo $! > child.pid; wait",
        ])
        .current_dir(dir.path());
        let mut p = Proc::spawn(&dir, "sh", cmd).unwrap();
        wait_for(Duration::from_secs(5), "child.pid", || {
            Ok(fs::read_to_string(dir.join("child.pid")).is_ok_and(|s| !s.trim().is_empty()))
        })
        .unwrap();
        let grandchild: i32 = fs::read_to_string(dir.join("child.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(p.is_running());
        let (out, err) = p.logs();
        assert_eq!(out, "hello\n");
        assert_eq!(err, "oops\n");
        p.set_grace(Duration::from_secs(2));
        p.stop().unwrap();
        assert!(!p.is_running());
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| r.trim_start().starts_with('Z'))
                })
                .is_some_and(|zombie| !zombie)
        };
        let gone = wait_for(Duration::from_secs(3), "grandchild gone", || Ok(!alive()));
        assert!(gone.is_ok(), "grandchild {grandchild} survived stop()");
    }

    #[test]
    fn wait_tcp_fails_fast_when_the_process_dies() {
        let dir = TestDir::new("proc-dies").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'config error: bad' >&2; exit 3"]);
        let mut p = Proc::spawn(&dir, "dies", cmd).unwrap();
        let port = crate::ports::free_port().unwrap();
        let t = Instant::now();
        let err = p.wait_tcp(port, Duration::from_secs(30)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        let msg = format!("{err:#}");
        assert!(msg.contains("exited early"), "{msg}");
        assert!(msg.contains("config error: bad"), "{msg}");
    }
}
