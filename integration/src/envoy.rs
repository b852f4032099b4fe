//! Envoy: a running Envoy process; the bootstrap builders (YAML via serde values) are in
//! `envoy/config.rs`, re-exported here.
//!
//! Config pieces are `serde_json::Value`s so a test can adjust any field before rendering;
//! [`EnvoyConfig::to_yaml`] renders the bootstrap. Typical use:
//!
//! ```no_run
//! use geomesh_integration::envoy::*;
//! use geomesh_integration::{free_port, TestDir, paths};
//! # fn main() -> anyhow::Result<()> {
//! let dir = TestDir::new("example")?;
//! let (listen, upstream) = (free_port()?, free_port()?);
//! let plugin = WasmPlugin::new("redis", "shard_router", paths::wasm_path("geomesh_redis_filter")?, "workload_type: redis");
//! let cfg = EnvoyConfig::new()?
//!     .listener(wasm_tcp_listener("redis_in", listen, &plugin, "redis"))
//!     .cluster(static_cluster("redis", &[upstream]));
//! let envoy = Envoy::start(&dir, "envoy", &cfg)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::paths::{envoy_bin, repo_root};
use crate::process::{http_get, wait_for, Proc, TestDir};

mod config;
pub use config::*;

/// How to run Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`), default 1: one Wasm VM per worker.
    pub concurrency: u32,
    /// `-l`, default `info` (Proxy-Wasm `info!` logs show).
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug,connection:trace`.
    pub component_log_level: Option<String>,
    /// How long [`Envoy::start`] waits for `/ready`, default 30 s (V8 compiles each .wasm).
    pub ready_timeout: Duration,
    pub extra_args: Vec<String>,
    /// Environment variables for the Envoy process (e.g. [`crate::native::SEARCH_PATH_ENV`]).
    pub env: Vec<(String, String)>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running Envoy. Stopped (process group killed) on drop; its log tail is printed when the
/// test panics.
pub struct Envoy {
    proc: Proc,
    admin_port: u16,
    config_path: PathBuf,
    /// Log lines containing one of these are not Wasm failures (see [`Envoy::tolerate_wasm_log`]).
    tolerated: Vec<String>,
}

impl Envoy {
    /// Writes `cfg` to `<dir>/<name>.yaml`, starts Envoy and waits for admin `/ready`.
    pub fn start(dir: &TestDir, name: &str, cfg: &EnvoyConfig) -> Result<Envoy> {
        Self::start_with(dir, name, cfg, &EnvoyOptions::default())
    }

    pub fn start_with(
        dir: &TestDir,
        name: &str,
        cfg: &EnvoyConfig,
        opts: &EnvoyOptions,
    ) -> Result<Envoy> {
        let path = dir.write(format!("{name}.yaml"), cfg.to_yaml())?;
        Self::start_file(dir, name, &path, cfg.admin_port, opts)
    }

    /// Starts Envoy on an existing config file whose admin listens on 127.0.0.1:`admin_port`.
    ///
    /// Each Envoy gets `--base-id <admin_port>` (distinct among live Envoys, as the admin port
    /// is bound) and `--disable-hot-restart`, so any number run side by side, also next to
    /// other people's test runs.
    pub fn start_file(
        dir: &TestDir,
        name: &str,
        config: &Path,
        admin_port: u16,
        opts: &EnvoyOptions,
    ) -> Result<Envoy> {
        let mut cmd = Command::new(envoy_bin()?);
        cmd.arg("-c")
            .arg(config)
            .args([
                "--base-id",
                &admin_port.to_string(),
                "--disable-hot-restart",
            ])
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args(["-l", &opts.log_level]);
        if let Some(c) = &opts.component_log_level {
            cmd.args(["--component-log-level", c]);
        }
        cmd.args(&opts.extra_args);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn(dir, name, cmd)?;
        proc.wait_until(
            opts.ready_timeout,
            &format!("{name} admin /ready on {admin_port}"),
            || Ok(http_get(admin_port, "/ready")?.0 == 200),
        )?;
        Ok(Envoy {
            proc,
            admin_port,
            config_path: config.to_path_buf(),
            tolerated: Vec::new(),
        })
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// GET on the admin interface: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.admin_port, path)
    }

    /// POST on the admin interface (e.g. `/reset_counters`, `/drain_listeners`).
    pub fn admin_post(&self, path: &str) -> Result<(u16, String)> {
        crate::process::http_request(self.admin_port, "POST", path, None)
    }

    /// A counter or gauge by exact name (`cluster.redis.upstream_cx_total`); `None` if Envoy
    /// has no such stat.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let filter = format!("^{}$", regex_escape(name));
        let (status, body) =
            self.admin_get(&format!("/stats?filter={}", percent_encode(&filter)))?;
        if status != 200 {
            bail!("/stats returned {status}: {body}");
        }
        for line in body.lines() {
            if let Some((n, v)) = line.split_once(": ") {
                if n == name {
                    return Ok(v.trim().parse().ok());
                }
            }
        }
        Ok(None)
    }

    /// `/stats/prometheus`, parsed (see [`crate::prometheus`]).
    pub fn prometheus(&self) -> Result<crate::prometheus::Scrape> {
        let (status, body) = self.admin_get("/stats/prometheus")?;
        if status != 200 {
            bail!("/stats/prometheus returned {status}: {body}");
        }
        crate::prometheus::Scrape::parse(&body)
    }

    /// Waits until stat `name` satisfies `pred`.
    pub fn wait_stat(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(u64) -> bool,
    ) -> Result<()> {
        wait_for(timeout, &format!("stat {name}"), || {
            Ok(self.stat(name)?.is_some_and(&pred))
        })
    }

    /// Everything Envoy logged so far (stderr).
    pub fn log(&self) -> String {
        self.proc.logs().1
    }

    /// Waits until Envoy's log contains `needle` (e.g. a Proxy-Wasm log line).
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let path = self.proc.stderr_path().to_path_buf();
        self.proc
            .wait_until(timeout, &format!("{needle:?} in Envoy's log"), || {
                Ok(
                    std::fs::read(&path)
                        .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)),
                )
            })
    }

    /// SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) -> Result<()> {
        self.proc.stop()?;
        Ok(())
    }

    /// The first sign in Envoy's log that a Wasm VM panicked or trapped, if any.
    ///
    /// A panic inside a Proxy-Wasm VM aborts the VM and with it every connection of that
    /// worker, so it is never acceptable, whatever a test otherwise checks.
    pub fn wasm_failure(&self) -> Option<String> {
        let log = self.log();
        let kept: Vec<&str> = log
            .lines()
            .filter(|l| !self.tolerated.iter().any(|t| l.contains(t.as_str())))
            .collect();
        wasm_failure_in(&kept.join("\n"))
    }

    /// Log lines containing `needle` no longer count as Wasm failures for this Envoy: for a test
    /// that feeds a configuration the filter must refuse (Envoy then logs
    /// `Wasm VM failed Failed to configure base Wasm plugin`). Panics and traps still count.
    pub fn tolerate_wasm_log(&mut self, needle: impl Into<String>) {
        self.tolerated.push(needle.into());
    }
}

/// Lines that mean a Proxy-Wasm VM panicked, trapped or was failed by Envoy.
pub fn wasm_failure_in(log: &str) -> Option<String> {
    const SIGNS: &[&str] = &["panicked at", "Uncaught RuntimeError", "Wasm VM failed", "wasm_vm.cc"];
    log.lines()
        .find(|l| SIGNS.iter().any(|s| l.contains(s)))
        .map(str::to_owned)
}

impl Drop for Envoy {
    /// Every test that runs Envoy also checks that no Wasm VM died during it.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("GEOMESH_ALLOW_WASM_FAILURE").is_some() {
            return;
        }
        if let Some(line) = self.wasm_failure() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "a Wasm VM failed in Envoy during this test:\n  {line}\n--- Envoy log tail ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// `envoy --mode validate -c <config>` run from the repository root (so relative `.wasm` paths
/// resolve as they do for `examples/`). Ok if Envoy accepts it, else the error carries Envoy's
/// output.
pub fn validate(config: &Path) -> Result<()> {
    let out = Command::new(envoy_bin()?)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(config)
        .current_dir(repo_root())
        .output()
        .context("run envoy --mode validate")?;
    if !out.status.success() {
        bail!(
            "envoy --mode validate -c {} failed ({}):\n{}{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_stat_filters() {
        assert_eq!(regex_escape("cluster.a_b.x"), "cluster\\.a_b\\.x");
        assert_eq!(percent_encode("^a\\.b$"), "%5Ea%5C.b%24");
    }
}
