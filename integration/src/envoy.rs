//! Envoy: config builders (YAML via serde values) and a running Envoy process.
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
use serde_json::{json, Value};

use crate::paths::{envoy_bin, repo_root};
use crate::ports::free_port;
use crate::process::{http_get, wait_for, Proc, TestDir};

pub const WASM_NETWORK_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
pub const WASM_HTTP_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const TYPED_EXTENSION_CONFIG_TYPE: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const V8: &str = "envoy.wasm.runtime.v8";

/// One Proxy-Wasm plugin: which `.wasm`, which root context, which configuration string.
#[derive(Clone, Debug)]
pub struct WasmPlugin {
    /// Plugin name (also the log prefix Envoy prints: `wasm log <name> <root_id>: ...`).
    pub name: String,
    pub root_id: String,
    /// Path of the `.wasm`; a relative path resolves against Envoy's working directory (the
    /// repository root for processes started by this harness and for `examples/` validation).
    pub wasm: PathBuf,
    /// Passed as `google.protobuf.StringValue` and read by `get_plugin_configuration()`.
    pub configuration: String,
    /// Default [`V8`].
    pub runtime: String,
    /// Default empty (one VM per plugin config); plugins with the same non-empty `vm_id` and code
    /// share a VM and its shared data.
    pub vm_id: String,
}

impl WasmPlugin {
    pub fn new(
        name: impl Into<String>,
        root_id: impl Into<String>,
        wasm: impl Into<PathBuf>,
        configuration: impl Into<String>,
    ) -> Self {
        WasmPlugin {
            name: name.into(),
            root_id: root_id.into(),
            wasm: wasm.into(),
            configuration: configuration.into(),
            runtime: V8.to_string(),
            vm_id: String::new(),
        }
    }

    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = runtime.into();
        self
    }

    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.vm_id = vm_id.into();
        self
    }

    /// `envoy.extensions.wasm.v3.PluginConfig`.
    pub fn plugin_config(&self) -> Value {
        json!({
            "name": self.name,
            "root_id": self.root_id,
            "configuration": { "@type": STRING_VALUE_TYPE, "value": self.configuration },
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": self.runtime,
                "code": { "local": { "filename": self.wasm.to_string_lossy() } },
            },
        })
    }
}

/// `typed_config` of `envoy.filters.network.wasm` (also the ECDS resource body).
pub fn wasm_network_typed_config(p: &WasmPlugin) -> Value {
    json!({ "@type": WASM_NETWORK_TYPE, "config": p.plugin_config() })
}

/// `typed_config` of `envoy.filters.http.wasm` (also the ECDS resource body).
pub fn wasm_http_typed_config(p: &WasmPlugin) -> Value {
    json!({ "@type": WASM_HTTP_TYPE, "config": p.plugin_config() })
}

/// A network filter entry `envoy.filters.network.wasm`.
pub fn wasm_network_filter(p: &WasmPlugin) -> Value {
    json!({ "name": "envoy.filters.network.wasm", "typed_config": wasm_network_typed_config(p) })
}

/// An HTTP filter entry `envoy.filters.http.wasm`.
pub fn wasm_http_filter(p: &WasmPlugin) -> Value {
    json!({ "name": "envoy.filters.http.wasm", "typed_config": wasm_http_typed_config(p) })
}

/// The terminal `tcp_proxy` network filter to `cluster`.
pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": { "@type": TCP_PROXY_TYPE, "stat_prefix": stat_prefix, "cluster": cluster },
    })
}

/// A listener on 127.0.0.1:`port` with one filter chain made of `filters` (in order).
pub fn tcp_listener(name: &str, port: u16, filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [ { "filters": filters } ],
    })
}

/// This Envoy's certificate and key, and the CA the other side must chain to (PEM files).
fn common_tls(cert: &Path, key: &Path, ca: &Path) -> Value {
    json!({
        "tls_certificates": [ {
            "certificate_chain": { "filename": cert.to_string_lossy() },
            "private_key": { "filename": key.to_string_lossy() },
        } ],
        "validation_context": { "trusted_ca": { "filename": ca.to_string_lossy() } },
    })
}

/// Istio-style mTLS between two Envoys, from PEM files (`cert`, `key`, `ca`): `cluster` dials
/// its endpoints over TLS with this client certificate, the server checked against `ca` and
/// named `sni`.
pub fn mtls_upstream(mut cluster: Value, cert: &Path, key: &Path, ca: &Path, sni: &str) -> Value {
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": common_tls(cert, key, ca),
        },
    });
    cluster
}

/// The other end of [`mtls_upstream`]: `listener`'s (first) filter chain terminates TLS and
/// requires a client certificate `ca` signed.
pub fn mtls_downstream(mut listener: Value, cert: &Path, key: &Path, ca: &Path) -> Value {
    listener["filter_chains"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": common_tls(cert, key, ca),
        },
    });
    listener
}

/// A listener with `envoy.filters.network.wasm` followed by `tcp_proxy` to `cluster`.
pub fn wasm_tcp_listener(name: &str, port: u16, plugin: &WasmPlugin, cluster: &str) -> Value {
    tcp_listener(
        name,
        port,
        vec![wasm_network_filter(plugin), tcp_proxy_filter(name, cluster)],
    )
}

/// An HTTP listener: `http_filters` (in order) then the router, every path routed to `cluster`.
pub fn http_listener(name: &str, port: u16, http_filters: Vec<Value>, cluster: &str) -> Value {
    let mut filters = http_filters;
    filters.push(
        json!({ "name": "envoy.filters.http.router", "typed_config": { "@type": ROUTER_TYPE } }),
    );
    let hcm = json!({
        "@type": HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {
            "name": name,
            "virtual_hosts": [ {
                "name": name,
                "domains": ["*"],
                "routes": [ { "match": { "prefix": "/" }, "route": { "cluster": cluster } } ],
            } ],
        },
        "http_filters": filters,
        // As an Istio sidecar does: WebSocket upgrades pass (Envoy answers 403 otherwise).
        "upgrade_configs": [ { "upgrade_type": "websocket" } ],
    });
    tcp_listener(
        name,
        port,
        vec![
            json!({ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }),
        ],
    )
}

/// An HTTP listener with one Wasm HTTP filter then the router to `cluster`.
pub fn wasm_http_listener(name: &str, port: u16, plugin: &WasmPlugin, cluster: &str) -> Value {
    http_listener(name, port, vec![wasm_http_filter(plugin)], cluster)
}

/// A STATIC cluster with endpoints on 127.0.0.1 (round robin, 1 s connect timeout).
pub fn static_cluster(name: &str, ports: &[u16]) -> Value {
    let addrs: Vec<(String, u16)> = ports
        .iter()
        .map(|p| ("127.0.0.1".to_string(), *p))
        .collect();
    static_cluster_addrs(name, &addrs)
}

/// A STATIC cluster with explicit (ip, port) endpoints.
pub fn static_cluster_addrs(name: &str, addrs: &[(String, u16)]) -> Value {
    let lb: Vec<Value> = addrs
        .iter()
        .map(|(ip, port)| {
            json!({ "endpoint": { "address": { "socket_address": { "address": ip, "port_value": port } } } })
        })
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": lb } ] },
    })
}

/// Makes a cluster speak HTTP/2 upstream (gRPC).
pub fn http2(mut cluster: Value) -> Value {
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        }
    });
    cluster
}

fn ecds_config_discovery(ecds_file: &Path, type_url: &str) -> Value {
    let dir = ecds_file.parent().unwrap_or_else(|| Path::new("."));
    json!({
        "config_source": {
            "path_config_source": {
                "path": ecds_file.to_string_lossy(),
                "watched_directory": { "path": dir.to_string_lossy() },
            },
        },
        "type_urls": [type_url],
    })
}

/// A network filter whose config comes from ECDS, read from `ecds_file` (written with
/// [`write_ecds`]; Envoy watches its directory for renames). `type_url` is usually
/// [`WASM_NETWORK_TYPE`]. The resource in the file must be named `name`.
pub fn ecds_network_filter(name: &str, ecds_file: &Path, type_url: &str) -> Value {
    json!({ "name": name, "config_discovery": ecds_config_discovery(ecds_file, type_url) })
}

/// An HTTP filter whose config comes from ECDS (see [`ecds_network_filter`]); `type_url` is
/// usually [`WASM_HTTP_TYPE`].
pub fn ecds_http_filter(name: &str, ecds_file: &Path, type_url: &str) -> Value {
    json!({ "name": name, "config_discovery": ecds_config_discovery(ecds_file, type_url) })
}

/// Writes the ECDS file atomically (temp file in the same directory, then rename), with one
/// `TypedExtensionConfig` resource named `name` holding `typed_config` (e.g.
/// [`wasm_network_typed_config`]). Safe to call while Envoy watches the directory.
pub fn write_ecds(ecds_file: &Path, name: &str, typed_config: &Value) -> Result<()> {
    let doc = json!({
        "resources": [ { "@type": TYPED_EXTENSION_CONFIG_TYPE, "name": name, "typed_config": typed_config } ],
    });
    let yaml = serde_yaml_ng::to_string(&doc)?;
    let dir = ecds_file.parent().unwrap_or_else(|| Path::new("."));
    let file_name = ecds_file
        .file_name()
        .with_context(|| format!("{} has no file name", ecds_file.display()))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    std::fs::write(&tmp, yaml).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, ecds_file)
        .with_context(|| format!("rename {} -> {}", tmp.display(), ecds_file.display()))?;
    Ok(())
}

/// An Envoy bootstrap: node identity, admin on a free loopback port, static listeners and
/// clusters. The node id/cluster are required as soon as any xDS (ECDS included) is used.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    pub admin_port: u16,
    /// `node.id`, default `geomesh-test`.
    pub node_id: String,
    /// `node.cluster`, default `geomesh`.
    pub node_cluster: String,
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// Bootstrap `stats_config` (e.g. [`geomesh_stats_tags`]), if any.
    pub stats_config: Option<Value>,
}

/// The `stats_config` that names geomesh's metrics as Envoy's own (filters/shell/README.md,
/// "Metrics"): `stat_namespace` takes `wasmcustom.` out of the tag-extracted name (so Prometheus
/// shows `envoy_redis_...`), and `envoy.redis_prefix` takes the Redis filter's `stat_prefix` out
/// as native `redis_proxy`'s does: `envoy_redis_command_get_total{envoy_redis_prefix="shop",
/// stat_namespace="wasmcustom"}`.
pub fn geomesh_stats_tags() -> Value {
    json!({ "stats_tags": [
        { "tag_name": "stat_namespace", "regex": "^((wasmcustom)\\.)(?:redis|mqtt|kafka|influxdb|http)\\." },
        { "tag_name": "envoy.redis_prefix", "regex": "^wasmcustom\\.redis\\.((.+?)\\.)" },
    ] })
}

impl EnvoyConfig {
    /// Empty config with the admin interface on a free port.
    pub fn new() -> Result<Self> {
        Ok(EnvoyConfig {
            admin_port: free_port()?,
            node_id: "geomesh-test".into(),
            node_cluster: "geomesh".into(),
            listeners: Vec::new(),
            clusters: Vec::new(),
            stats_config: None,
        })
    }

    pub fn stats_config(mut self, stats_config: Value) -> Self {
        self.stats_config = Some(stats_config);
        self
    }

    pub fn node(mut self, id: impl Into<String>, cluster: impl Into<String>) -> Self {
        self.node_id = id.into();
        self.node_cluster = cluster.into();
        self
    }

    pub fn listener(mut self, l: Value) -> Self {
        self.listeners.push(l);
        self
    }

    pub fn cluster(mut self, c: Value) -> Self {
        self.clusters.push(c);
        self
    }

    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "node": { "id": self.node_id, "cluster": self.node_cluster },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": self.admin_port } } },
            "static_resources": { "listeners": self.listeners, "clusters": self.clusters },
        });
        if let Some(sc) = &self.stats_config {
            v["stats_config"] = sc.clone();
        }
        v
    }

    pub fn to_yaml(&self) -> String {
        // A tree of strings, numbers, arrays and objects always serialises.
        serde_yaml_ng::to_string(&self.to_value()).unwrap_or_default()
    }
}

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
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
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
    fn renders_wasm_tcp_listener() {
        let p = WasmPlugin::new("r", "shard_router", "target/wasm/x.wasm", "a: 1\nb: two");
        let mut cfg = EnvoyConfig::new().unwrap();
        cfg.admin_port = 9901;
        let cfg = cfg
            .listener(wasm_tcp_listener("in", 7000, &p, "up"))
            .cluster(static_cluster("up", &[7001, 7002]));
        let v: Value = serde_yaml_ng::from_str(&cfg.to_yaml()).unwrap();
        let f = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"];
        assert_eq!(f[0]["typed_config"]["@type"], WASM_NETWORK_TYPE);
        assert_eq!(
            f[0]["typed_config"]["config"]["configuration"]["value"],
            "a: 1\nb: two"
        );
        assert_eq!(
            f[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
            "target/wasm/x.wasm"
        );
        assert_eq!(f[1]["typed_config"]["cluster"], "up");
        let eps = &v["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"];
        assert_eq!(
            eps[1]["endpoint"]["address"]["socket_address"]["port_value"],
            7002
        );
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 9901);
    }

    #[test]
    fn escapes_stat_filters() {
        assert_eq!(regex_escape("cluster.a_b.x"), "cluster\\.a_b\\.x");
        assert_eq!(percent_encode("^a\\.b$"), "%5Ea%5C.b%24");
    }
}
