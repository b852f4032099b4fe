//! Real InfluxDB 1.6 (`influxd` from Debian's `influxdb`) on free loopback ports, the `influx`
//! CLI (Debian's `influxdb-client`), and the InfluxDB sharding topology: shards, and an Envoy
//! whose HTTP listener runs `geomesh_filter_influx.wasm` then the router (`cluster_header`).
//!
//! Each `influxd` gets its own directories in the test dir, HTTP on a free port, the RPC bind
//! address on another, the monitor store, retention and shard precreation off (nothing writes
//! but the test).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::envoy::{
    ecds_http_filter, http_listener, static_cluster, wasm_http_filter, wasm_http_typed_config,
    write_ecds, EnvoyConfig, EnvoyOptions, WASM_HTTP_TYPE,
};
use crate::paths::{repo_root, system_bin};
use crate::ports::free_port;
use crate::process::{Proc, TestDir};
use crate::Envoy;

/// The filter's `.wasm`, relative to the repository root (Envoy runs from there).
pub const WASM_REL: &str = "target/wasm/geomesh_filter_influx.wasm";
/// The header the route's `cluster_header` reads (the filter's default `cluster_header`).
pub const CLUSTER_HEADER: &str = "x-geomesh-cluster";
/// Listener buffer limit: bodies are buffered to be routed, up to the filter's `max_body_bytes`.
pub const BUFFER_LIMIT: u64 = 32 << 20;

/// One `influxd`.
pub struct Influxd {
    pub name: String,
    pub port: u16,
    pub proc: Proc,
    dir: TestDir,
    config: PathBuf,
}

impl Influxd {
    /// Starts `influxd` on a free port and waits until `/ping` answers 204.
    pub fn start(dir: &TestDir, name: &str) -> Result<Influxd> {
        let port = free_port()?;
        let rpc = free_port()?;
        let wd = dir.join(name);
        std::fs::create_dir_all(&wd)?;
        let config = dir.write(
            format!("{name}.influxd.conf"),
            format!(
                "reporting-enabled = false\n\
                 bind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{w}/meta\"\n\
                 [data]\n  dir = \"{w}/data\"\n  wal-dir = \"{w}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
                 [retention]\n  enabled = false\n\
                 [shard-precreation]\n  enabled = false\n",
                w = wd.display()
            ),
        )?;
        let proc = spawn(dir, name, &config, port)?;
        Ok(Influxd {
            name: name.to_owned(),
            port,
            proc,
            dir: dir.clone(),
            config,
        })
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (a shard down).
    pub fn stop(&mut self) -> Result<()> {
        self.proc.stop()?;
        Ok(())
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.proc = spawn(
            &self.dir,
            &format!("{}-again", self.name),
            &self.config,
            self.port,
        )?;
        Ok(())
    }

    /// `influx -execute <q> -format <format>` against this server.
    pub fn cli(&self, db: &str, q: &str, format: &str) -> Result<String> {
        influx_cli(self.port, db, q, format)
    }

    /// The measurement names this server holds in `db` (read with the `influx` CLI).
    pub fn measurements(&self, db: &str) -> Result<Vec<String>> {
        let out = self.cli(db, "SHOW MEASUREMENTS", "json")?;
        let doc: Value =
            serde_json::from_str(out.trim()).with_context(|| format!("influx said {out:?}"))?;
        let values = doc["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(values
            .iter()
            .filter_map(|v| v[0].as_str().map(str::to_owned))
            .collect())
    }
}

fn spawn(dir: &TestDir, name: &str, config: &PathBuf, port: u16) -> Result<Proc> {
    let mut cmd = Command::new(system_bin("influxd")?);
    cmd.arg("-config").arg(config);
    let mut proc = Proc::spawn(dir, name, cmd)?;
    proc.wait_until(
        Duration::from_secs(20),
        &format!("{name} /ping on {port}"),
        || {
            Ok(crate::process::http_get(port, "/ping")
                .map(|(s, _)| s == 204)
                .unwrap_or(false))
        },
    )?;
    Ok(proc)
}

/// Runs the `influx` CLI (1.6) to completion against 127.0.0.1:`port`.
pub fn influx_cli(port: u16, db: &str, q: &str, format: &str) -> Result<String> {
    let mut cmd = Command::new(system_bin("influx")?);
    cmd.args([
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-format",
        format,
        "-execute",
        q,
    ]);
    if !db.is_empty() {
        cmd.args(["-database", db]);
    }
    let out = cmd.output().context("run influx")?;
    if !out.status.success() {
        bail!(
            "influx -port {port} -execute {q:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The shards' Envoy cluster names: `influx-a`, `influx-b`, ...
pub fn cluster_name(i: usize) -> String {
    format!("influx-{}", (b'a' + i as u8) as char)
}

/// An Envoy listener on `port` with `http_filters` then the router, routes by
/// [`CLUSTER_HEADER`] (or to `fixed` when given: the plain router of the benchmarks), the body
/// buffer limit raised to [`BUFFER_LIMIT`], and connection failures answered as 503 naming the
/// cluster.
pub fn listener(name: &str, port: u16, http_filters: Vec<Value>, fixed: Option<&str>) -> Value {
    let mut l = http_listener(name, port, http_filters, fixed.unwrap_or("unused"));
    if fixed.is_none() {
        let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
        crate::scope::route_by_cluster_header(
            hcm,
            name,
            "influxdb",
            format!("[%START_TIME%] {name} \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% in=%BYTES_RECEIVED% out=%BYTES_SENT% ms=%DURATION%\n"),
        );
    }
    l["per_connection_buffer_limit_bytes"] = json!(BUFFER_LIMIT);
    l
}

/// `envoy.filters.http.buffer`, which must follow the InfluxDB filter: it holds the request
/// headers until the body is whole (the filter reads bodies to route them; Envoy stops body
/// callbacks too when a Wasm filter pauses at the headers, so the filter lets them on to this).
pub fn buffer_filter() -> Value {
    json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": BUFFER_LIMIT,
        },
    })
}

/// Shards behind an Envoy running the InfluxDB filter.
pub struct InfluxMesh {
    pub dir: TestDir,
    pub shards: Vec<Influxd>,
    pub envoy: Envoy,
    /// The Envoy listener clients use.
    pub port: u16,
    /// The site's `geomesh-agent` with an `influx_replay:` section ([`InfluxMesh::start_with_agent`]).
    pub agent: Option<Proc>,
    /// Its API port (Envoy's cluster [`AGENT_CLUSTER`]).
    pub agent_port: u16,
    /// The ECDS file the filter's configuration is read from ([`MeshOptions::ecds`]).
    pub ecds_file: Option<PathBuf>,
    plugin: crate::WasmPlugin,
}

/// How [`InfluxMesh::start_opts`] builds the topology.
#[derive(Clone, Debug, Default)]
pub struct MeshOptions {
    /// Shards started (clusters `influx-a`, `influx-b`, ...).
    pub shards: usize,
    /// The filter's configuration (YAML).
    pub config: String,
    /// A `geomesh-agent` with `influx_replay:` and these lines added ([`InfluxMesh::start_with_agent`]).
    pub replay: Option<String>,
    /// The filter's configuration delivered by ECDS from a watched file
    /// ([`InfluxMesh::set_filter_config`] replaces it at run time).
    pub ecds: bool,
    /// More Envoy clusters (e.g. a shard at another site, reached through that site's Envoy).
    pub clusters: Vec<Value>,
}

/// The ECDS resource name of the filter.
pub const ECDS_NAME: &str = "geomesh.influx";

/// The Envoy cluster of the agent (the filter's `influxdb.replay_cluster`).
pub const AGENT_CLUSTER: &str = "geomesh_agent";

impl InfluxMesh {
    /// `n` shards (clusters `influx-a`, `influx-b`, ...) and an Envoy with the filter configured
    /// by `config` (a YAML text naming those clusters).
    pub fn start(dir: &TestDir, n: usize, config: &str) -> Result<InfluxMesh> {
        Self::start_with_agent(dir, n, config, None)
    }

    /// [`InfluxMesh::start`], plus (with `replay: Some(lines)`) a real `geomesh-agent` whose
    /// `influx_replay:` section maps every shard's cluster to its URL, with `lines` (indented
    /// YAML: `max_bytes`, ...) added, and an Envoy cluster [`AGENT_CLUSTER`] pointing at it.
    pub fn start_with_agent(
        dir: &TestDir,
        n: usize,
        config: &str,
        replay: Option<&str>,
    ) -> Result<InfluxMesh> {
        Self::start_opts(
            dir,
            MeshOptions {
                shards: n,
                config: config.to_owned(),
                replay: replay.map(str::to_owned),
                ..MeshOptions::default()
            },
        )
    }

    /// The topology `opts` describes.
    pub fn start_opts(dir: &TestDir, opts: MeshOptions) -> Result<InfluxMesh> {
        let (n, config, replay) = (opts.shards, opts.config.as_str(), opts.replay.as_deref());
        if !repo_root().join(WASM_REL).is_file() {
            bail!("{WASM_REL} not found: run `scripts/build-wasm.sh` (or `make build`)");
        }
        let mut shards = Vec::with_capacity(n);
        for i in 0..n {
            shards.push(Influxd::start(dir, &cluster_name(i))?);
        }
        let port = free_port()?;
        let agent_port = free_port()?;
        let agent = match replay {
            None => None,
            Some(extra) => {
                let shard_lines: String = shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("    {}: \"{}\"\n", cluster_name(i), s.url()))
                    .collect();
                let cfg = dir.write(
                    "agent-influx.yaml",
                    format!(
                        "site: A\nlisten: 127.0.0.1:{agent_port}\ninflux_replay:\n  data_dir: {}\n  retry_min_ms: 50\n  retry_max_ms: 500\n{extra}  shards:\n{shard_lines}",
                        dir.join("agent-data").display()
                    ),
                )?;
                let mut cmd = Command::new(crate::paths::native_bin("geomesh-agent")?);
                cmd.arg("--config").arg(&cfg);
                let mut proc = Proc::spawn(dir, "agent-influx", cmd)?;
                proc.wait_until(Duration::from_secs(20), "the agent's /healthz", || {
                    Ok(crate::process::http_get(agent_port, "/healthz")?.0 == 200)
                })?;
                Some(proc)
            }
        };
        let plugin =
            crate::WasmPlugin::new("influx", "geomesh_influx", WASM_REL, config.to_owned());
        let mut ecds_file = None;
        let filter = if opts.ecds {
            std::fs::create_dir_all(dir.join("ecds"))?;
            let f = dir.join("ecds/influx.yaml");
            write_ecds(&f, ECDS_NAME, &wasm_http_typed_config(&plugin))?;
            let v = ecds_http_filter(ECDS_NAME, &f, WASM_HTTP_TYPE);
            ecds_file = Some(f);
            v
        } else {
            wasm_http_filter(&plugin)
        };
        let mut cfg = EnvoyConfig::new()?.listener(listener(
            "influx_in",
            port,
            vec![filter, buffer_filter()],
            None,
        ));
        for (i, s) in shards.iter().enumerate() {
            cfg = cfg.cluster(static_cluster(&cluster_name(i), &[s.port]));
        }
        for c in opts.clusters {
            cfg = cfg.cluster(c);
        }
        if agent.is_some() {
            cfg = cfg.cluster(static_cluster(AGENT_CLUSTER, &[agent_port]));
        }
        let envoy = Envoy::start_with(dir, "envoy-influx", &cfg, &EnvoyOptions::default())?;
        crate::process::wait_tcp(port, Duration::from_secs(10))?;
        Ok(InfluxMesh {
            dir: dir.clone(),
            shards,
            envoy,
            port,
            agent,
            agent_port,
            ecds_file,
            plugin,
        })
    }

    /// Replaces the filter's configuration through ECDS (the mesh must have been started with
    /// [`MeshOptions::ecds`]).
    pub fn set_filter_config(&mut self, config: &str) -> Result<()> {
        let Some(f) = &self.ecds_file else {
            bail!("this mesh was not started with ecds");
        };
        self.plugin.configuration = config.to_owned();
        write_ecds(f, ECDS_NAME, &wasm_http_typed_config(&self.plugin))
    }


    /// `http://127.0.0.1:<envoy port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The agent's `/metrics` sample `name{cluster="<cluster>"}` (`None`: absent).
    pub fn agent_metric(&self, name: &str, cluster: &str) -> Result<Option<f64>> {
        let (status, text) = crate::process::http_get(self.agent_port, "/metrics")?;
        if status != 200 {
            bail!("agent /metrics answered {status}");
        }
        let needle = format!("{name}{{cluster=\"{cluster}\"}} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok()))
    }
}

/// Where `scripts/bootstrap.sh` puts the `influxdb` Python client (PyPI, `pip install --target`).
pub fn influx_py_path() -> Result<PathBuf> {
    let p = repo_root().join(".cache/influx-py");
    if !p.join("influxdb/client.py").is_file() {
        bail!(
            "the influxdb Python client is not installed in {}: run scripts/bootstrap.sh",
            p.display()
        );
    }
    Ok(p)
}

/// Runs a Python `script` with the `influxdb` client (5.3) importable, `args` after it; its
/// stdout, or an error with both outputs when it exits non-zero.
pub fn run_influx_py(dir: &TestDir, name: &str, script: &str, args: &[String]) -> Result<String> {
    let file = dir.write(format!("{name}.py"), script)?;
    let out = Command::new(system_bin("python3")?)
        .arg(&file)
        .args(args)
        .env("PYTHONPATH", influx_py_path()?)
        .output()
        .with_context(|| format!("run {name}.py"))?;
    if !out.status.success() {
        bail!(
            "{name}.py failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
