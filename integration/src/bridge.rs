//! A running `geomesh-bridge` for the integration tests, and the Envoy cluster that reaches it.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::envoy::static_cluster;
use crate::paths::native_bin;
use crate::process::{Proc, TestDir};

/// A running `geomesh-bridge`.
pub struct Bridge {
    pub proc: Proc,
    /// Its filter listener on 127.0.0.1 (0 for a Unix socket).
    pub port: u16,
    /// Its filter listener as its ready line says (`127.0.0.1:port` or `unix:/path`).
    pub listen: String,
}

impl Bridge {
    /// Starts a bridge that knows `clusters` (name, redis port) at this site, on a free port.
    pub fn start(dir: &TestDir, name: &str, clusters: &[(&str, u16)]) -> Result<Bridge> {
        Self::start_on(dir, name, "127.0.0.1:0", clusters)
    }

    /// As [`Bridge::start`], listening on `listen` (`host:port` or `unix:/path`).
    pub fn start_on(
        dir: &TestDir,
        name: &str,
        listen: &str,
        clusters: &[(&str, u16)],
    ) -> Result<Bridge> {
        Self::start_on_threads(dir, name, listen, clusters, 1)
    }

    /// As [`Bridge::start_on`], with `threads` runtime worker threads.
    pub fn start_on_threads(
        dir: &TestDir,
        name: &str,
        listen: &str,
        clusters: &[(&str, u16)],
        threads: usize,
    ) -> Result<Bridge> {
        let mut yaml = format!("site: local\nlisten: {listen}\nclusters:\n");
        for (c, port) in clusters {
            yaml.push_str(&format!("  {c}: {{ address: 127.0.0.1:{port} }}\n"));
        }
        Self::start_config_threads(dir, name, &yaml, threads)
    }

    /// A bridge on the Unix socket `<dir>/<name>.sock` (what Envoy uses on one host: no TCP
    /// stack on the Envoy->bridge hop).
    pub fn start_unix(dir: &TestDir, name: &str, clusters: &[(&str, u16)]) -> Result<Bridge> {
        let listen = format!("unix:{}", dir.join(format!("{name}.sock")).display());
        Self::start_on(dir, name, &listen, clusters)
    }

    /// As [`Bridge::start_unix`], letting filters open more endpoints of some clusters by
    /// address: (cluster name, `host:port` pattern).
    pub fn start_unix_with_endpoints(
        dir: &TestDir,
        name: &str,
        clusters: &[(&str, u16)],
        endpoints: &[(String, String)],
    ) -> Result<Bridge> {
        let listen = format!("unix:{}", dir.join(format!("{name}.sock")).display());
        let mut yaml = format!("site: local\nlisten: {listen}\nclusters:\n");
        for (c, port) in clusters {
            let allowed: Vec<String> = endpoints
                .iter()
                .filter(|(ec, _)| ec == c)
                .map(|(_, p)| format!("\"{p}\""))
                .collect();
            yaml.push_str(&format!(
                "  {c}: {{ address: 127.0.0.1:{port}, endpoints: [{}] }}\n",
                allowed.join(", ")
            ));
        }
        Self::start_config_threads(dir, name, &yaml, 1)
    }

    /// Starts a bridge on a config text whose `listen` is `127.0.0.1:0` (or any address): the
    /// real port is read from its ready line.
    pub fn start_config(dir: &TestDir, name: &str, yaml: &str) -> Result<Bridge> {
        Self::start_config_threads(dir, name, yaml, 1)
    }

    /// As [`Bridge::start_config`], with `threads` runtime worker threads.
    pub fn start_config_threads(
        dir: &TestDir,
        name: &str,
        yaml: &str,
        threads: usize,
    ) -> Result<Bridge> {
        let cfg = dir.write(format!("{name}.yaml"), yaml)?;
        let mut cmd = Command::new(native_bin("geomesh-bridge")?);
        cmd.arg("--config")
            .arg(&cfg)
            .args(["--threads", &threads.max(1).to_string()]);
        cmd.env(
            "RUST_LOG",
            std::env::var("GEOMESH_BRIDGE_LOG").unwrap_or_else(|_| "warn".into()),
        );
        let mut proc = Proc::spawn(dir, name, cmd)?;
        let out = proc.stdout_path().to_path_buf();
        let mut listen = String::new();
        proc.wait_until(
            Duration::from_secs(20),
            &format!("{name} ready line"),
            || {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with("geomesh-bridge ready")) {
                    if let Some(l) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("listen="))
                    {
                        listen = l.to_owned();
                        return Ok(true);
                    }
                }
                Ok(false)
            },
        )?;
        let port = if listen.starts_with("unix:") {
            0
        } else {
            listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("bridge listen={listen}"))?
        };
        Ok(Bridge { proc, port, listen })
    }
}

/// A STATIC Envoy cluster for a bridge: its TCP port, or its Unix socket (`pipe`).
pub fn bridge_cluster(name: &str, bridge: &Bridge) -> serde_json::Value {
    match bridge.listen.strip_prefix("unix:") {
        Some(path) => serde_json::json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": [
                { "endpoint": { "address": { "pipe": { "path": path } } } }
            ] } ] },
        }),
        None => static_cluster(name, &[bridge.port]),
    }
}
